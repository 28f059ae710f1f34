"""Full campaign runs through the NVIDIA and neuroflash emulators: the provider actually used per asset,
NVCF 202 polling, cached reruns, the quota check before any spend, the fallback chain, the per-run
budget, the VLM review gate and its alt text, and sentinel secrets that never leave their blocks."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest
import yaml

from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.nvidia import NvidiaEmulator
from tests.emulators.serve import serve_asgi
from tests.flows.cli_runs import run

pytestmark = pytest.mark.prefect

NVIDIA_KEY = "nvapi-SENTINEL-flow-key"
NF_ID, NF_SECRET = "nf-flow-client", "nf-SENTINEL-flow-secret"
# The emulators draw simple test images: this suite is about providers, so the gate accepts them.
LENIENT = {"max_edit_attempts": 0, "check_brand_colors": False, "min_sharpness": 0, "max_noise_sigma": 50,
           "max_clipped_fraction": 1.0, "max_blockiness": 50, "duplicate_max_distance": 0}


class _Switch:
    """One loopback server; each test plugs in a fresh emulator."""

    target = None

    async def __call__(self, scope, receive, send):
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def loopback():
    switch = _Switch()
    with serve_asgi(switch) as url:
        yield switch, url


@pytest.fixture
def nvidia(loopback, monkeypatch):
    switch, url = loopback
    switch.target = emulator = NvidiaEmulator(api_key=NVIDIA_KEY)
    monkeypatch.setenv("NVIDIA_API_KEY", NVIDIA_KEY)
    monkeypatch.setenv("IMAGEGEN_NVIDIA_BASE_URL", f"{url}/v1/genai")
    monkeypatch.setenv("IMAGEGEN_NVCF_STATUS_URL", f"{url}/v2/nvcf/pexec/status")
    monkeypatch.setenv("IMAGEGEN_VLM_BASE_URL", f"{url}/v1")
    monkeypatch.setenv("IMAGEGEN_NVIDIA_RATE_PER_MINUTE", "6000")
    return emulator


@pytest.fixture
def neuroflash(loopback, monkeypatch):
    switch, url = loopback
    switch.target = emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=1024)
    emulator.base_url = url
    for name, value in emulator.run_environment(url).items():
        monkeypatch.setenv(name, value)
    return emulator


def brief_file(tmp_path: Path, provider, campaign: str, **quality) -> Path:
    brief = {
        "campaign": campaign,
        "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#2c3e50"]},
        # a seed per campaign: the generation cache is shared by every brief with the same prompt and seed
        "subjects": [{"subject": "a ceramic mug on a wooden table", "seed": 1 + zlib.crc32(campaign.encode()) % 10**6,
                      "variations": 2}],
        "size_sets": [],
        "targets": [{"name": "feed_square", "platform": "web", "width": 640, "height": 640, "format": "JPEG"},
                    {"name": "wide_webp", "platform": "web", "width": 960, "height": 540, "format": "WEBP"}],
        "provider": provider,
        "quality": {**LENIENT, **quality},
    }
    path = tmp_path / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def catalog(out: Path) -> list[dict]:
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets")]


def assert_no_secret(out: Path, *texts: str, secrets: tuple[str, ...]) -> None:
    record = "\n".join(texts) + json.dumps(catalog(out) if (out / "catalog.db").exists() else [])
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".html"}:
            record += path.read_text(errors="ignore")
    for secret in secrets:
        assert secret not in record


def test_nvidia_campaign_polls_202_publishes_and_reruns_from_cache(prefect_harness, nvidia, tmp_path, capsys):
    nvidia.faults.accept_202 = True
    brief, out = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-e2e"), tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["provider_calls"] == 2 and summary["published"] == 2 and nvidia.spent == 2
    assert nvidia.calls["status"] >= 2  # the 202s were polled to completion
    rows = catalog(out)
    assert {(r["provider"], r["model"]) for r in rows} == {("nvidia", "black-forest-labs/flux.1-dev")}
    assert {r["width"] for r in rows if r["variant"] == "master"} == {1024}
    assert all(json.loads(r["metadata"])["negatives_handling"] == "folded" for r in rows)

    code, summary, err2 = run(capsys, brief, out)
    assert code == 0 and summary["provider_calls"] == 0 and nvidia.spent == 2
    assert_no_secret(out, err, err2, secrets=(NVIDIA_KEY,))


def test_content_filtered_generation_is_a_failure_not_an_image(prefect_harness, nvidia, tmp_path, capsys):
    nvidia.faults.content_filtered = 1
    brief, out = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-filtered"), tmp_path / "out"
    code, summary, _ = run(capsys, brief, out)
    assert code == 1
    assert [f["stage"] for f in summary["failed"]] == ["generate"]
    assert "ContentFiltered" in summary["failed"][0]["reason"]
    assert summary["published"] == 1 and summary["provider_calls"] == 2  # filtered answers are not retried


def test_vlm_review_gates_and_writes_alt_text(prefect_harness, nvidia, tmp_path, capsys):
    brief = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-vlm", vlm_review=True)
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert nvidia.calls["chat"] == 2 and summary["provider_calls"] == 4  # 2 images + 2 reviews
    rows = catalog(out)
    assert {r["alt_text"] for r in rows} == {"Colorful overlapping circles on a flat background"}
    assert all("vlm_review" in json.loads(r["gates"])["checked"] for r in rows)


def test_vlm_rejection_quarantines_with_the_models_reasons(prefect_harness, nvidia, tmp_path, capsys):
    nvidia.faults.chat_reply = '{"verdict": "fail", "reasons": ["logo is cut off"], "alt_text": "A mug"}'
    brief = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-vlm-fail", vlm_review=True)
    out = tmp_path / "out"
    code, summary, _ = run(capsys, brief, out)
    assert code == 0 and summary["quarantined"] == 2
    failures = json.loads(catalog(out)[0]["gates"])["failures"]
    assert any(f["gate"] == "vlm_review" and "logo is cut off" in f["reason"] for f in failures)


def test_neuroflash_campaign_plans_aspects_checks_quota_reports_usage(prefect_harness, neuroflash, tmp_path,
                                                                      capsys):
    brief, out = brief_file(tmp_path, {"name": "neuroflash"}, "nf-e2e"), tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    # a 1:1 and a 16:9 target: one master per native aspect ratio and variation, each cut to its own target
    assert (summary["published"], neuroflash.calls["generate"]) == (4, 4), summary
    rows = catalog(out)
    masters = {r["asset_id"]: (r["width"], r["height"]) for r in rows if r["variant"] == "master"}
    assert sorted(aid.rsplit("-", 1)[1] for aid in masters) == ["16x9", "16x9", "1x1", "1x1"]
    for aid, (width, height) in masters.items():
        assert (width > height) == aid.endswith("16x9")
        variants = {r["variant"] for r in rows if r["asset_id"] == aid} - {"master"}
        assert variants == ({"wide_webp"} if aid.endswith("16x9") else {"feed_square"})
    usage = summary["provider_usage"]["neuroflash"]
    assert usage["before"]["available"] - usage["after"]["available"] == 4
    assert {r["provider"] for r in rows} == {"neuroflash"}
    assert_no_secret(out, err, secrets=(NF_SECRET,))


def test_not_enough_quota_stops_before_the_first_generation(prefect_harness, neuroflash, tmp_path, capsys):
    neuroflash.set_quota(available=1)
    brief, out = brief_file(tmp_path, {"name": "neuroflash"}, "nf-quota"), tmp_path / "out"
    code, _, err = run(capsys, brief, out)
    assert code == 1
    assert "need 4" in err and "1 left" in err
    assert neuroflash.calls["generate"] == 0


def test_exhausted_quota_falls_back_to_the_next_provider(prefect_harness, neuroflash, tmp_path, capsys):
    neuroflash.set_quota(available=0)
    brief = brief_file(tmp_path, {"name": "neuroflash", "fallback": ["local"], "master_width": 1024,
                                  "master_height": 1024}, "nf-fallback")
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["providers_used"] == {"local": 2} and neuroflash.calls["generate"] == 0
    assert summary["providers_skipped"]["neuroflash"].startswith("QuotaExhausted: neuroflash: need 2 images")
    assert {r["provider"] for r in catalog(out)} == {"local"}


def test_budget_stops_spending_cleanly(prefect_harness, tmp_path, capsys):
    brief = brief_file(tmp_path, {"name": "local", "master_width": 1024, "master_height": 1024}, "budget")
    out = tmp_path / "out"
    code, summary, _ = run(capsys, brief, out, "--max-provider-calls", "1")
    assert code == 1
    assert summary["provider_calls"] == 1 and summary["published"] == 1
    assert [f["stage"] for f in summary["failed"]] == ["budget"]


def test_self_hosted_nim_campaign(prefect_harness, loopback, monkeypatch, tmp_path, capsys):
    switch, url = loopback
    switch.target = emulator = NvidiaEmulator(api_key=NVIDIA_KEY)
    monkeypatch.setenv("IMAGEGEN_NIM_URL", url)
    brief, out = brief_file(tmp_path, {"name": "nim"}, "nim-e2e"), tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["published"] == 2 and emulator.calls["infer"] == 2
    assert {r["provider"] for r in catalog(out)} == {"nim"}


def test_vlm_rejection_is_edited_with_kontext_then_kept_with_its_history(prefect_harness, nvidia, tmp_path, capsys):
    nvidia.faults.chat_reply = '{"verdict": "fail", "reasons": ["the mug handle is missing"], "alt_text": "A mug"}'
    brief = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-kontext", vlm_review=True, max_edit_attempts=1)
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    # 2 generations + 2 reviews, then 2 Kontext edits + 2 reviews of the edited images
    assert summary["provider_calls"] == 8 and summary["quarantined"] == 2
    row = catalog(out)[0]
    edits = json.loads(row["metadata"])["edits"]
    assert edits and edits[0]["kind"] == "provider_edit" and "mug handle is missing" in edits[0]["instruction"]
    assert len(json.loads(row["gates"])["history"]) == 2
    assert len([p for p in (out / "masters").iterdir() if p.is_file()]) == 4  # originals and edits, all kept


def test_outpainting_extends_masters_to_wide_and_tall_targets_with_kontext(prefect_harness, nvidia, tmp_path,
                                                                           capsys):
    """A square master would lose 44 % of itself to a 16:9 or 9:16 crop: with publish.outpaint on, it
    is extended to those aspects by a Kontext edit instead, and those targets are cut from the result."""
    brief_path = brief_file(tmp_path, {"name": "nvidia"}, "nvidia-outpaint")
    brief = yaml.safe_load(brief_path.read_text())
    brief["targets"] = [{"name": "feed_square", "platform": "web", "width": 640, "height": 640, "format": "JPEG"},
                        {"name": "feed_portrait", "platform": "web", "width": 640, "height": 800, "format": "JPEG"},
                        {"name": "hero_wide", "platform": "web", "width": 1600, "height": 900, "format": "WEBP"},
                        {"name": "story_tall", "platform": "web", "width": 540, "height": 960, "format": "JPEG"}]
    brief["publish"] = {"outpaint": {"enabled": True, "min_crop": 0.25}}
    brief_path.write_text(yaml.safe_dump(brief))
    out = tmp_path / "out"

    code, summary, err = run(capsys, brief_path, out)
    assert code == 0, err
    # 2 generations, then 2 x (16:9 + 9:16) outpaints; 4:5 loses 20 %: cropped from the square master
    assert summary["provider_calls"] == 6 and nvidia.spent == 6 and summary["published"] == 6
    kontext = [r for r in nvidia.requests if r["model"].endswith("flux.1-kontext-dev")]
    assert len(kontext) == 4 and all("Extend" in r["body"]["prompt"] or "extend" in r["body"]["prompt"]
                                     for r in kontext)
    rows = catalog(out)
    by_asset: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_asset.setdefault(row["asset_id"], {})[row["variant"]] = row
    bases = sorted(a for a in by_asset if not a.endswith(("-16x9", "-9x16")))
    assert len(bases) == 2
    for base in bases:
        assert set(by_asset[base]) == {"master", "feed_square", "feed_portrait"}
        assert set(by_asset[f"{base}-16x9"]) == {"master", "hero_wide"}
        assert set(by_asset[f"{base}-9x16"]) == {"master", "story_tall"}
        wide = by_asset[f"{base}-16x9"]["master"]
        assert abs(wide["width"] / wide["height"] - 16 / 9) < 0.1  # Kontext snaps to its sizes: 1392x752
        tall = by_asset[f"{base}-9x16"]["master"]
        assert abs(tall["width"] / tall["height"] - 9 / 16) < 0.1
        edits = json.loads(wide["metadata"])["edits"]
        assert edits[-1]["kind"] == "outpaint" and edits[-1]["ratio"] == "16:9"
        assert edits[-1]["source_sha256"] == json.loads(by_asset[base]["master"]["metadata"])["master_sha256"]
        assert json.loads(by_asset[f"{base}-16x9"]["hero_wide"]["gates"])["passed"]

    code, summary, err = run(capsys, brief_path, out)
    assert code == 0 and summary["provider_calls"] == 0 and nvidia.spent == 6, err
    assert summary["files_written"] == 0
