"""The `image_analytics` record builder and the run report's figures, page and markdown."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from imagegen.analytics import ProviderTimes, analytics_record, build_report, gate_outcomes
from imagegen.analytics_report import report_markdown, write_report_page
from imagegen.catalog.base import CatalogRow

SVG = "{http://www.w3.org/2000/svg}"


def row(asset_id: str = "hero", variant: str = "square", *, status: str = "published", platform: str = "instagram",
        provider: str = "nvidia", generation_ms: int = 1500, bytes_: int = 2048, gates: dict | None = None,
        **changes) -> CatalogRow:
    data = dict(campaign="spring", asset_id=asset_id, variant=variant, url=f"https://cdn.example/{variant}.jpg",
                store="supabase", store_key=f"spring/{asset_id}/{variant}.jpg", width=1080, height=1350,
                format="JPEG", bytes=bytes_, sha256="ab" * 32, prompt="a red bicycle, golden hour", provider=provider,
                model="flux.1-dev", seed=7, generation_ms=generation_ms,
                gates=gates if gates is not None else {"passed": True, "failures": [], "checked": ["exposure", "sharpness"]},
                status=status, metadata={"platform": platform})
    data.update(changes)
    return CatalogRow(**data)


def plots_of(html: str) -> dict[str, dict[str, float]]:
    """Each inline SVG of a page, by its title: the label and value of every mark."""
    plots = {}
    for chunk in html.split("<svg ")[1:]:
        svg = ET.fromstring("<svg " + chunk.split("</svg>")[0] + "</svg>")
        plots[svg.find(f"{SVG}title").text] = {r.get("data-label"): float(r.get("data-value"))
                                               for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"}
    return plots


def test_the_record_has_the_seeds_fields_filled_from_the_row():
    record = analytics_record(row(bytes_=46551, generation_ms=2702))
    assert record.model_dump() == {
        "campaign": "spring", "asset_id": "hero", "variant": "square", "filename": "square.jpg",
        "size_kb": 46551 / 1024, "dimensions": "1080x1350", "format": "JPEG", "generation_time": 2.702,
        "prompt_length": len("a red bicycle, golden hour"), "model": "flux.1-dev", "provider": "nvidia",
        "platform": "instagram", "status": "published", "bytes": 46551}
    assert analytics_record(row(store_key="no-folder.png", metadata={})).model_dump(
        include={"filename", "platform"}) == {"filename": "no-folder.png", "platform": ""}


def test_gate_outcomes_tell_passed_fixed_and_failed_apart():
    gates = {"passed": False, "checked": ["exposure", "resolution", "sharpness"],
             "failures": [{"gate": "resolution", "reason": "too small"}],
             "history": [{"round": 0, "failures": [{"gate": "sharpness"}, {"gate": "resolution"}]},
                         {"round": 1, "failures": [{"gate": "resolution"}]}, {"round": 1, "edit_error": "boom"}]}
    assert gate_outcomes(gates) == {"exposure": "passed", "resolution": "failed", "sharpness": "fixed"}
    assert gate_outcomes({"failures": [{"gate": "format"}]}) == {"format": "failed"}  # no `checked`: what failed


def example_rows() -> list[CatalogRow]:
    fixed = {"passed": True, "checked": ["exposure", "sharpness"], "failures": [],
             "history": [{"round": 0, "failures": [{"gate": "sharpness"}]}]}
    failed = {"passed": False, "checked": ["exposure", "sharpness"], "failures": [{"gate": "exposure"}]}
    return [
        row("a", "master", platform="master", bytes_=4000, generation_ms=1000),
        row("a", "square", bytes_=1000, generation_ms=1000),
        row("a", "story", bytes_=1500, generation_ms=1000),
        row("b", "master", platform="master", bytes_=5000, generation_ms=3000, gates=fixed),
        row("b", "square", bytes_=500, generation_ms=3000, gates=fixed),
        row("c", "master", platform="master", provider="neuroflash", bytes_=9000, generation_ms=2000, status="quarantined",
            gates=failed),
    ]


def example_report():
    rows = example_rows()
    return build_report("spring", rows, provider_calls=5, calls_by_provider={"nvidia": 3, "vlm": 2},
                        earlier_calls=[4, 0])


def test_report_figures():
    report = example_report()
    assert (report.published, report.quarantined, report.files, report.published_bytes) == (2, 1, 5, 12000)
    # one time per asset (its master's), whatever the number of its files
    assert [(t.provider, t.seconds) for t in report.times] == [("neuroflash", [2.0]), ("nvidia", [1.0, 3.0])]
    assert [(p.platform, p.bytes, p.files) for p in report.platforms] == [("master", 9000, 2), ("instagram", 3000, 3)]
    assert [(g.gate, g.passed, g.fixed, g.failed) for g in report.gates] == [("exposure", 2, 0, 1),
                                                                             ("sharpness", 2, 1, 0)]
    assert (report.campaign_calls, report.campaign_runs) == (9, 3)
    assert report.calls_per_published(report.provider_calls) == 2.5
    assert report.model_copy(update={"published": 0}).calls_per_published(5) is None


@pytest.mark.parametrize(("seconds", "median", "p90"), [([4.0], 4.0, 4.0), ([1.0, 2.0, 3.0, 10.0], 2.5, 10.0),
                                                         ([float(i) for i in range(1, 21)], 10.5, 18.0)])
def test_median_and_nearest_rank_p90(seconds, median, p90):
    times = ProviderTimes(provider="p", seconds=seconds)
    assert (times.median, times.p90) == (median, p90)


def test_report_page_shows_four_plots_of_the_figures(tmp_path: Path):
    page = write_report_page(example_report(), tmp_path / "report.html", gallery_href="gallery.html",
                             index_href="../../../index.html")
    html = page.read_text()
    assert 'href="gallery.html"' in html and 'href="../../../index.html"' in html
    plots = plots_of(html)
    assert list(plots) == ["Generation time per master, by provider", "Provider calls per published asset",
                           "Gate outcomes per master, by gate", "Published bytes per platform"]
    latency, cost, gates, platforms = plots.values()
    assert sum(latency.values()) == 3  # masters
    assert cost == {"nvidia": 1.5, "vlm": 1.0, "this run, all providers": 2.5, "campaign so far (3 runs)": 4.5}
    assert gates == {"exposure passed": 2, "exposure failed": 1, "sharpness passed": 2, "sharpness fixed by an edit": 1}
    assert platforms == {"master": 9000, "instagram": 3000}


def test_markdown_artifact_lists_the_key_figures_and_where_the_plots_are(tmp_path: Path):
    text = report_markdown(example_report(), tmp_path / "report.html")
    assert "| provider calls, this run | 5 (nvidia 3, vlm 2) |" in text
    assert "| provider calls per published asset, campaign so far (3 runs) | 4.50 |" in text
    assert "| gate exposure | 2 passed, 0 fixed by an edit, 1 failed |" in text
    assert "| bytes, instagram | 2.9 KB in 3 file(s) |" in text
    assert str(tmp_path / "report.html") in text


def test_nothing_published_says_so_instead_of_dividing_by_zero(tmp_path: Path):
    rows = [row("c", "master", status="quarantined", platform="master")]
    report = build_report("spring", rows, provider_calls=3, calls_by_provider={"nvidia": 3}, earlier_calls=[])
    html = write_report_page(report, tmp_path / "report.html", gallery_href="g", index_href="i").read_text()
    assert "no published asset to share 3 provider call(s)" in html and "no file published in this run" in html
    assert "| provider calls per published asset, this run | no published asset |" in report_markdown(
        report, tmp_path / "report.html")
