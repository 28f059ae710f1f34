"""The size-set flow re-renders new size sets for masters already in the catalog, with no provider call.

In-process, on the session's Prefect test harness (no real server needed).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from imagegen.providers.local import LocalGenerator
from imagegen_flows.flows.campaign import campaign_flow
from imagegen_flows.flows.size_sets import size_set_flow
from tests.deployments.conftest import _write_brief

pytestmark = pytest.mark.prefect


def write_brief(folder: Path, subjects: tuple[str, str]) -> Path:
    """Two 1024 px masters, one small target. Subjects differ per test: generated masters are cached
    by prompt for the whole session, and these tests count provider calls."""
    return _write_brief(folder, "size-set-test", subjects=[
        {"subject": subjects[0], "style": "product", "lighting": "product", "composition": "rule_of_thirds",
         "mood": "elegant"},
        {"subject": subjects[1], "style": "lifestyle", "lighting": "golden_hour", "composition": "leading_lines",
         "mood": "energetic"}])


def rows(out: Path) -> list[dict]:
    with sqlite3.connect(out / "catalog.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM media_assets ORDER BY asset_id, variant")]


@pytest.fixture
def count_provider_calls(monkeypatch):
    calls: list[str] = []
    real_generate, real_edit = LocalGenerator.generate, LocalGenerator.edit

    def generate(self, *args, **kwargs):
        calls.append("generate")
        return real_generate(self, *args, **kwargs)

    def edit(self, *args, **kwargs):
        calls.append("edit")
        return real_edit(self, *args, **kwargs)

    monkeypatch.setattr(LocalGenerator, "generate", generate)
    monkeypatch.setattr(LocalGenerator, "edit", edit)
    return calls


def test_new_size_set_from_catalog_calls_no_provider(prefect_harness, tmp_path, count_provider_calls):
    brief = write_brief(tmp_path, ("a brass desk lamp on a walnut desk", "a pair of hiking boots on a rock"))
    out = tmp_path / "out"
    first = campaign_flow(brief=str(brief), out_dir=str(out))
    assert first.published == 2 and first.provider_calls == 2
    assert len(count_provider_calls) == 2
    before = rows(out)
    assert {r["variant"] for r in before} == {"master", "square_webp"}
    masters = {r["asset_id"]: r for r in before if r["variant"] == "master"}
    master_files = {p: p.stat().st_mtime_ns for p in (out / "masters").rglob("*") if p.is_file()}
    count_provider_calls.clear()

    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out), from_catalog=True)

    assert count_provider_calls == []
    assert summary.provider_calls == 0 and not summary.failed
    assert summary.masters == 2 and summary.published == 2
    assert summary.lines()[0] == ("campaign size-set-test: re-rendered 2 published masters, 0 provider calls; "
                                  "2 published, 0 quarantined")
    assert summary.catalog_inserted == 2  # one pinterest_pin per published master, nothing else
    gallery = Path(summary.gallery)  # the size-set run's own page shows what it rendered
    assert gallery.is_file() and gallery.parent.parent == out / "runs" / "size-set-test"
    assert gallery.read_text().count("<figure") == 2 and "pinterest_pin" in gallery.read_text()
    after = rows(out)
    new = [r for r in after if r["variant"] == "pinterest_pin"]
    assert {r["asset_id"] for r in new} == set(masters)
    for row in new:
        master = masters[row["asset_id"]]
        assert (row["width"], row["height"]) == (1000, 1500)
        assert row["status"] == "published" and row["provider"] == "local"
        assert (row["seed"], row["prompt"]) == (master["seed"], master["prompt"])
        path = Path(row["url"].removeprefix("file://"))
        assert path.is_file()
    # the earlier rows are untouched and no master was made again
    assert [r for r in after if r["variant"] != "pinterest_pin"] == before
    assert {p: p.stat().st_mtime_ns for p in master_files} == master_files
    assert (out / "gallery.html").read_text().count("<figure") == 2  # the latest run's page: what it rendered


def test_without_published_masters_runs_the_campaign_for_the_size_set(prefect_harness, tmp_path,
                                                                      count_provider_calls):
    brief = write_brief(tmp_path, ("a ceramic teapot on a linen cloth", "a leather backpack on a park bench"))
    out = tmp_path / "out"
    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out))
    assert summary.published == 2 and summary.provider_calls == 2
    assert len(count_provider_calls) == 2
    # the brief's own targets are replaced by the size set
    assert {r["variant"] for r in rows(out)} == {"master", "pinterest_pin"}


def test_masters_published_under_an_out_path_with_spaces_and_non_ascii_are_found(prefect_harness, tmp_path,
                                                                                 count_provider_calls):
    folder = tmp_path / "Kampagne Frühling" / "out dir ü"
    brief = _write_brief(folder, "size-set-umlaut", subjects=[
        {"subject": "a copper kettle on a gas stove", "style": "product", "lighting": "product",
         "composition": "centered", "mood": "warm"}])
    out = folder / "out"
    assert campaign_flow(brief=str(brief), out_dir=str(out)).published == 1
    master = next(r for r in rows(out) if r["variant"] == "master")
    assert "%20" in master["url"] and "%C3%BC" in master["url"]  # the catalog holds the encoded file:// URL
    count_provider_calls.clear()

    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out))

    assert not summary.failed and summary.published == 1 and count_provider_calls == []
    assert {r["variant"] for r in rows(out)} == {"master", "square_webp", "pinterest_pin"}


def test_a_master_changed_since_it_was_cataloged_is_reported_with_both_hashes(prefect_harness, tmp_path,
                                                                             count_provider_calls):
    brief = write_brief(tmp_path, ("a glass carafe on a marble counter", "a wool scarf on a coat hook"))
    out = tmp_path / "out"
    assert campaign_flow(brief=str(brief), out_dir=str(out)).published == 2
    master = next(r for r in rows(out) if r["variant"] == "master")
    published = Path(master["url"].removeprefix("file://"))
    published.write_bytes(published.read_bytes()[:-10])  # truncated on disk after publishing
    for stale in (out / "masters").glob(f"{master['sha256']}.*"):
        stale.unlink()  # the run's own copy is gone too: the size set must read the published file

    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out))

    assert [(f.asset_id, f.stage) for f in summary.failed] == [(master["asset_id"], "fetch")]
    reason = summary.failed[0].reason
    assert reason.startswith(f"StoreError: master {master['asset_id']}: the bytes read from store 'local'")
    assert f"but the catalog recorded {master['sha256']}" in reason
    assert summary.published == 1  # the other master goes on
    assert not list((out / "masters").glob(f"{master['sha256']}.*"))


def test_a_size_set_of_a_brief_that_removes_the_background_republishes_the_cut_outs(prefect_harness, tmp_path,
                                                                                    count_provider_calls):
    import json

    import yaml
    from PIL import Image

    brief = write_brief(tmp_path, ("a frosted perfume bottle on a plinth", "a serum jar on a plinth"))
    spec = yaml.safe_load(brief.read_text())
    for subject in spec["subjects"]:  # packshots on plain backdrops: plausible cut-outs
        subject.update(style="product", lighting="product", composition="centered")
    spec["publish"] = {"background": "remove"}
    brief.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert campaign_flow(brief=str(brief), out_dir=str(out)).published == 2
    cutouts = {r["asset_id"]: r for r in rows(out) if r["variant"] == "cutout"}
    assert len(cutouts) == 2
    for row in cutouts.values():  # gone from the store: the size-set run has to make them again
        Path(row["url"].removeprefix("file://")).unlink()
    count_provider_calls.clear()

    summary = size_set_flow(brief=str(brief), size_sets=["pinterest"], out_dir=str(out))

    assert summary.published == 2 and not summary.failed and count_provider_calls == []
    after = rows(out)
    assert {r["asset_id"]: r for r in after if r["variant"] == "cutout"} == cutouts  # the same bytes, catalogued
    for row in cutouts.values():
        with Image.open(Path(row["url"].removeprefix("file://"))) as im:
            assert im.mode == "RGBA" and im.getchannel("A").getextrema() == (0, 255)
    pins = [r for r in after if r["variant"] == "pinterest_pin"]
    assert len(pins) == 2
    for row in pins:  # JPEG has no alpha: the subject on white, as the brief's own JPEG targets
        assert row["format"] == "JPEG" and json.loads(row["metadata"])["background"] == "#ffffff"
        with Image.open(Path(row["url"].removeprefix("file://"))) as im:
            assert min(im.convert("RGB").getpixel((2, 2))) >= 245
