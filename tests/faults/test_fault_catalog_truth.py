"""The catalog tells the truth about the files, whatever happened to them between runs.

- One asset, one status: a master whose status changes between runs (a stricter policy) takes all
  its rows and files with it: quarantined, it keeps no published variant row and no file in the
  public store; published again, it gets its variants back and leaves nothing in the quarantine.
- A canonical key holds the bytes its row names: a rerun that renders new bytes replaces them in
  place (no `-<sha12>` copy beside a stale file), and a published file that was overwritten,
  truncated or deleted on disk is found by its sha256 on the next run, reported, and rewritten.

Every scenario ends with the project's consistency check (rows vs files) finding nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import yaml

from imagegen_flows.deployments.cli import main as cli_main
from tests.faults.conftest import catalog_rows, consistency_problems, write_brief

pytestmark = pytest.mark.prefect

SMALL_LOCAL = {"name": "local", "master_width": 256, "master_height": 256}
TARGETS = [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"},
           {"name": "banner", "platform": "web", "width": 240, "height": 80, "format": "PNG"}]
QUARANTINE_ALL = {"min_width": 2000, "min_height": 2000}  # the local provider's 256 px masters fail it


def run(capsys, brief: Path, out: Path) -> dict:
    code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def statuses(out: Path) -> dict[str, set[tuple[str, str]]]:
    """asset id -> {(variant, status)}"""
    found: dict[str, set[tuple[str, str]]] = {}
    for row in catalog_rows(out):
        found.setdefault(row["asset_id"], set()).add((row["variant"], row["status"]))
    return found


def test_a_status_change_takes_every_row_and_file_of_the_asset_with_it(prefect_harness, tmp_path, capsys):
    published = write_brief(tmp_path / "published", "flip", provider=SMALL_LOCAL, targets=TARGETS)
    stricter = write_brief(tmp_path / "stricter", "flip", provider=SMALL_LOCAL, targets=TARGETS,
                           quality=QUARANTINE_ALL)
    out = tmp_path / "out"

    summary = run(capsys, published, out)
    assert summary["published"] == 2 and summary["files_removed"] == 0
    assert consistency_problems(out, masters=2) == []
    public_files = files_under(out / "assets")
    assert len(public_files) == 2 * 3  # master, thumb, banner per asset

    # published -> quarantined: variant rows deleted in the catalog step, every public file removed
    summary = run(capsys, stricter, out)
    assert summary["quarantined"] == 2 and summary["provider_calls"] == 0
    assert summary["catalog_deleted"] == 2 * 2 and summary["files_removed"] == 2 * 3
    assert files_under(out / "assets") == set(), "a quarantined master left files in the public store"
    assert {aid: rows for aid, rows in statuses(out).items()} == {
        aid: {("master", "quarantined")} for aid in statuses(out)}
    assert consistency_problems(out, masters=2) == []

    # quarantined -> published: the variants come back, the quarantine (master and reasons) empties
    summary = run(capsys, published, out)
    assert summary["published"] == 2 and summary["provider_calls"] == 0
    assert files_under(out / "assets") == public_files
    assert files_under(out / "quarantine") == set(), "the quarantined copy and its reasons.json stay behind"
    assert all(rows == {("master", "published"), ("thumb", "published"), ("banner", "published")}
               for rows in statuses(out).values())
    assert consistency_problems(out, masters=2) == []

    # and an unchanged rerun of that state touches nothing
    summary = run(capsys, published, out)
    assert (summary["files_written"], summary["files_removed"], summary["catalog_updated"],
            summary["catalog_deleted"]) == (0, 0, 0, 0)


def test_new_bytes_for_a_key_replace_the_old_ones_in_place(prefect_harness, tmp_path, capsys):
    """A brand grade added between runs changes every file's bytes (the variants' pixels, the master's
    XMP): each canonical key gets the new bytes; no `-<sha12>` copy, no stale file, nothing 'repaired'."""
    brief = write_brief(tmp_path, "regraded", provider=SMALL_LOCAL, targets=TARGETS)
    out = tmp_path / "out"
    run(capsys, brief, out)
    before = {r["store_key"]: r["sha256"] for r in catalog_rows(out)}

    data = yaml.safe_load(brief.read_text())
    data["brand"]["grade"] = "warm"
    brief.write_text(yaml.safe_dump(data))
    summary = run(capsys, brief, out)

    after = {r["store_key"]: r["sha256"] for r in catalog_rows(out)}
    assert set(after) == set(before), "rows moved off their canonical keys"
    assert all(after[key] != before[key] for key in after)
    assert summary["files_written"] == len(after) and summary["catalog_updated"] == len(after)
    assert summary["repaired"] == [] and summary["files_removed"] == 0
    assert consistency_problems(out, masters=2) == []


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_changed_on_disk_are_found_reported_and_rewritten(prefect_harness, tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING)
    published = write_brief(tmp_path / "published", "tampered", provider=SMALL_LOCAL, targets=TARGETS)
    held = write_brief(tmp_path / "held", "tampered-held", provider=SMALL_LOCAL, targets=TARGETS,
                       quality=QUARANTINE_ALL)
    out = tmp_path / "out"
    run(capsys, published, out)
    run(capsys, held, out)
    rows = {(r["campaign"], r["asset_id"], r["variant"]): r for r in catalog_rows(out)}
    public = sorted(k for k in rows if k[0] == "tampered")
    quarantined = sorted(k for k in rows if k[0] == "tampered-held")

    def path_of(key) -> Path:
        row = rows[key]
        return out / ("assets" if row["store"] == "local" else "quarantine") / row["store_key"]

    overwritten, truncated, deleted = path_of(public[0]), path_of(public[1]), path_of(public[2])
    overwritten.write_bytes(b"not the published image")
    truncated.write_bytes(truncated.read_bytes()[:100])
    deleted.unlink()
    held_master = path_of(quarantined[0])
    held_master.write_bytes(held_master.read_bytes()[:-10])

    summary = run(capsys, published, out)
    problems = {r["location"]: r for r in summary["repaired"]}
    assert {problems[f"local:{rows[k]['store_key']}"]["problem"] for k in public[:2]} == {"changed"}
    assert problems[f"local:{rows[public[2]]['store_key']}"]["problem"] == "missing"
    assert problems[f"local:{rows[public[0]]['store_key']}"]["expected_sha256"] == rows[public[0]]["sha256"]
    assert len(problems) == 3
    assert "held other bytes" in caplog.text and "was missing" in caplog.text, "the repairs are not in the log"
    assert any(line.startswith("- repaired: ") for line in run_summary_lines(out))

    summary = run(capsys, held, out)
    assert [r["location"] for r in summary["repaired"]] == [f"quarantine:{rows[quarantined[0]]['store_key']}"]

    for key in [*public[:3], quarantined[0]]:
        assert sha256(path_of(key)) == rows[key]["sha256"], f"{key} was not rewritten from the master"
    assert catalog_rows(out) and consistency_problems(out, masters=4) == []
    summary = run(capsys, published, out)
    assert summary["repaired"] == [] and summary["files_written"] == 0


def run_summary_lines(out: Path) -> list[str]:
    """The summary as the CLI prints it and the run's markdown artifact shows it."""
    from imagegen.summary import RunSummary

    summary = RunSummary.model_validate_json((out / "run-summary.json").read_text())
    return [f"- {line}" for line in summary.lines()]


def test_a_target_named_like_the_pipelines_own_files_exits_2_before_anything_is_written(tmp_path, capsys):
    targets = [*TARGETS, {"name": "master", "platform": "web", "width": 64, "height": 64, "format": "JPEG"}]
    brief = write_brief(tmp_path, "reserved", provider=SMALL_LOCAL, targets=targets)
    out = tmp_path / "out"
    code = cli_main(["run", str(brief), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "targets[2].name: 'master' collides with the master variant" in err and "Traceback" not in err
    assert not out.exists()
