"""Every paid call is paid once: an unchanged rerun of a brief whose masters went through regeneration,
a provider edit, VLM reviews and outpainting makes no provider request, writes no file and changes no
catalog row; a master whose bytes no longer match the ledger is reported, never paid for again."""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

import pytest

from tests.faults.conftest import catalog_rows, consistency_problems, write_brief
from tests.flows.cli_runs import run

pytestmark = pytest.mark.prefect

# The run's own record, written by every run on purpose (they say what this run did and when): the
# latest run's summary file and gallery page, the index of runs, each run's own folder under runs/, and
# the Great Expectations data docs.
RECORD_FILES = ("run-summary.json", "gallery.html", "index.html")
RECORD_FOLDERS = ("gx-report", "runs")

MUG_REVIEW = '{"verdict": "fail", "reasons": ["the mug handle is missing"], "alt_text": "A mug"}'


def files_under(out: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (inode, mtime_ns, size) of every file under `out` but the run's own record."""
    found = {}
    for path in out.rglob("*"):
        relative = path.relative_to(out)
        if not path.is_file() or relative.as_posix() in RECORD_FILES or relative.parts[0] in RECORD_FOLDERS:
            continue
        stat = path.stat()
        found[relative.as_posix()] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


def picky_reviews(nvidia) -> None:
    """The VLM fails every image of the mug (its handle is "missing") and passes the teapot."""
    answer = nvidia._chat_completion

    def chat_completion(model: str, instruction: str) -> dict:
        reply = answer(model, instruction)
        if "mug" in instruction:
            reply["choices"][0]["message"]["content"] = MUG_REVIEW
        return reply

    nvidia._chat_completion = chat_completion


def every_remedy_brief(folder: Path, campaign: str) -> Path:
    """Two subjects, each outpainted to 16:9; FLUX.1-dev's 1024 px squares fail min_width (regenerated),
    the mug's 16:9 master fails its VLM review (edited with Kontext), the teapot's 16:9 master passes."""
    return write_brief(folder, campaign, provider={"name": "nvidia"},
                       # seeds of its own: Prefect's cache of generations is shared by every test of the session
                       subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 1 + zlib.crc32(campaign.encode()) % 10**6},
                                 {"subject": "a glass teapot on a wooden table", "seed": 2 + zlib.crc32(campaign.encode()) % 10**6}],
                       targets=[{"name": "feed_square", "platform": "web", "width": 320, "height": 320,
                                 "format": "JPEG"},
                                {"name": "hero_wide", "platform": "web", "width": 640, "height": 360,
                                 "format": "WEBP"}],
                       quality={"min_width": 1100, "min_height": 700, "max_edit_attempts": 1, "vlm_review": True},
                       publish={"outpaint": {"enabled": True, "min_crop": 0.25}})


def first_run(nvidia, capsys, folder: Path, campaign: str) -> tuple[Path, Path, list[dict]]:
    """The brief's first run: 4 masters; 14 paid calls (2 generations, 2 outpaints, 2 regenerations,
    1 Kontext edit and 7 VLM reviews); the teapot's 16:9 master published, the other three quarantined."""
    picky_reviews(nvidia)
    brief, out = every_remedy_brief(folder, campaign), folder / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0 and summary is not None, err
    assert (nvidia.calls["genai"], nvidia.calls["chat"], summary["provider_calls"]) == (7, 7, 14)
    kinds = [r["model"].rsplit("/", 1)[-1] for r in nvidia.requests if "text" not in r["body"]]
    assert sorted(kinds) == ["flux.1-dev"] * 4 + ["flux.1-kontext-dev"] * 3  # 2 + 2 regenerated; 2 outpaints + 1 edit
    rows = catalog_rows(out)
    assert {(r["asset_id"].split("-")[1], r["asset_id"].endswith("16x9"), r["variant"], r["status"]) for r in rows} == {
        ("ceramic", False, "master", "quarantined"), ("ceramic", True, "master", "quarantined"),
        ("glass", False, "master", "quarantined"), ("glass", True, "master", "published"),
        ("glass", True, "hero_wide", "published")}
    return brief, out, rows


def test_unchanged_rerun_after_every_paid_remedy_spends_and_writes_nothing(prefect_harness, nvidia, tmp_path,
                                                                            capsys):
    brief, out, rows = first_run(nvidia, capsys, tmp_path, "paid-once")
    before, requests = files_under(out), sum(nvidia.calls.values())

    code, summary, err = run(capsys, brief, out)
    assert code == 0 and summary is not None, err
    assert sum(nvidia.calls.values()) == requests and summary["provider_calls"] == 0
    after = files_under(out)
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == []
    assert catalog_rows(out) == rows and summary["catalog_unchanged"] == len(rows) == 5
    assert summary["files_written"] == 0 and consistency_problems(out, 4) == []


def test_a_truncated_master_is_reported_never_paid_for_again(prefect_harness, nvidia, tmp_path, capsys, caplog):
    """Two masters truncated on disk: the mug's regenerated master (its remedy reads the ledger) and the
    teapot's generated one (Prefect's cache returns it). The rerun pays nothing, names both files and
    their ledger entries, and publishes no other bytes in their place; restored, they are trusted again."""
    brief, out, rows = first_run(nvidia, capsys, tmp_path, "paid-truncated")
    by_asset = {(r["asset_id"], r["variant"]): r for r in rows}
    mug = next(r for (aid, variant), r in by_asset.items() if "ceramic" in aid and not aid.endswith("16x9"))
    teapot_wide = next(r for (aid, variant), r in by_asset.items() if "glass" in aid and aid.endswith("16x9")
                       and variant == "master")
    teapot_generated = json.loads(teapot_wide["metadata"])["edits"][-1]["source_sha256"]
    damaged = {sha: next((out / "masters").glob(f"{sha}.*")) for sha in (mug["sha256"], teapot_generated)}
    intact = {sha: path.read_bytes() for sha, path in damaged.items()}
    for path in damaged.values():
        path.write_bytes(path.read_bytes()[:1000])
    before, requests = files_under(out), sum(nvidia.calls.values())
    caplog.clear()

    code, summary, err = run(capsys, brief, out)
    assert code == 1 and summary is not None, err
    assert sum(nvidia.calls.values()) == requests and summary["provider_calls"] == 0
    reasons = {f["asset_id"]: (f["stage"], f["reason"]) for f in summary["failed"]}
    for asset, stage, sha in ((mug["asset_id"], "edit", mug["sha256"]),
                              (teapot_wide["asset_id"][: -len("-16x9")], "generate", teapot_generated)):
        expected = (f"MasterChanged: masters/{damaged[sha].name}: bytes differ from the ledger's sha256 {sha[:12]}; "
                    f"restore the file or delete the ledger entry {out / 'masters' / '.ledger'}/")
        assert reasons[asset][0] == stage and reasons[asset][1].startswith(expected), reasons
        assert reasons[asset][1].endswith(".json to pay for a new one")
        # one warning line each (Prefect also records the failed task run, as for any failed task)
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and damaged[sha].name in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].endswith(reasons[asset][1]), warnings
    assert reasons[teapot_wide["asset_id"]] == ("outpaint", f"its master {teapot_wide['asset_id'][:-5]} was not made")
    after = files_under(out)
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == []
    assert catalog_rows(out) == rows and consistency_problems(out, 4) == []

    for sha, path in damaged.items():
        path.write_bytes(intact[sha])
    code, summary, err = run(capsys, brief, out)
    assert code == 0 and summary is not None and summary["failed"] == [], err
    assert sum(nvidia.calls.values()) == requests and summary["catalog_unchanged"] == len(rows)
    assert catalog_rows(out) == rows
