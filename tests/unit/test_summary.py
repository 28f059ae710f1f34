"""The run summary's wording: what the CLI prints is exact, so people and scripts can read it."""

from imagegen.summary import FailedAsset, RunSummary


def test_campaign_summary_counts_provider_calls_and_masters_by_provider_separately():
    summary = RunSummary(campaign="spring", out_dir="/o", masters=4, generated=4, published=3, quarantined=1,
                         provider_calls=2, providers_used={"nvidia": 2, "local": 2}, gallery="/o/gallery.html")
    lines = summary.lines()
    assert lines[0] == "campaign spring: 4 masters planned, 4 generated, 3 published, 1 quarantined"
    assert lines[2] == "provider calls: 2; masters by provider: local 2, nvidia 2"


def test_cached_rerun_says_zero_calls_without_a_misleading_bracket():
    lines = RunSummary(campaign="c", out_dir="/o", masters=1, generated=1, provider_calls=0,
                       providers_used={"local": 1}).lines()
    assert "provider calls: 0; masters by provider: local 1" in lines
    assert not any("(local: 1)" in line for line in lines)


def test_size_set_summary_says_rerendered_and_no_provider_call():
    summary = RunSummary(campaign="c", out_dir="/o", masters=4, rerendered=3, published=3, provider_calls=0,
                         failed=[FailedAsset(asset_id="a4", stage="fetch", reason="unreachable")])
    lines = summary.lines()
    assert lines[0] == "campaign c: re-rendered 3 published masters, 0 provider calls; 3 published, 0 quarantined, 1 failed"
    assert not any("planned" in line or "generated" in line for line in lines)
    assert not any(line.startswith("provider calls") for line in lines)
