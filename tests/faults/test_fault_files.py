"""The files an `imagegen run` leaves: modes that follow the umask, no temp file after a write that
failed midway, and the temp files of a killed writer swept by the next run while a live writer's stay.

Published files, masters, the gallery, run-summary.json and catalog.db are read by other users (a
web server) as the umask allows: 0644 in 0755 folders under umask 022. Writes go through
imagegen.files, whose temp files name their writer's pid: a sweep removes those of a dead writer at
once and keeps those of a live one (another run on the same out folder may be writing right now).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from imagegen import files
from imagegen.files import STALE_TEMP_AGE_SECONDS
from imagegen_flows.deployments.cli import main as cli_main
from tests.faults.conftest import (
    BIN,
    REPO,
    TEMP_FILE,
    consistency_problems,
    imagegen_env,
    master_files,
    summary_from_log,
    tail,
    write_brief,
)
from tests.unit.test_files import umask

pytestmark = pytest.mark.prefect

SMALL_LOCAL = {"name": "local", "master_width": 256, "master_height": 256}
SMALL_TARGET = [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"}]
QUARANTINE_ALL = {"min_width": 2000, "min_height": 2000}  # the local provider's 256 px masters fail it


def run(capsys, brief, out) -> tuple[int, dict | None, str]:
    code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def run_process(brief, out, env, log) -> tuple[int, dict | None]:
    """`imagegen run` as a process of its own: a new run, as after a crash."""
    with open(log, "w") as fh:
        done = subprocess.run([str(BIN / "imagegen"), "run", str(brief), "--out", str(out), "--json"], cwd=REPO,
                              env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180)
    return done.returncode, summary_from_log(log)


def temp_files(out: Path) -> list[str]:
    """Every temp file under `out`, whoever wrote it and whatever its naming."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and (TEMP_FILE.match(p.name) or p.name.endswith((".tmp", ".part"))))


# --------------------------------------------------------------------------- modes

@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)],
                         ids=["umask-022", "umask-027"])
def test_every_file_and_folder_of_a_run_follows_the_umask(prefect_harness, tmp_path, capsys, mask, file_mode,
                                                          dir_mode):
    published = write_brief(tmp_path, "modes", provider=SMALL_LOCAL, targets=SMALL_TARGET)
    quarantined = write_brief(tmp_path, "modes-held", provider=SMALL_LOCAL, targets=SMALL_TARGET,
                              quality=QUARANTINE_ALL)
    out = tmp_path / "out"
    with umask(mask):
        for brief in (published, quarantined):
            code, summary, err = run(capsys, brief, out)
            assert code == 0, err
    assert summary is not None and summary["quarantined"] == 2

    every = [out, *out.rglob("*")]
    kinds = {p.relative_to(out).parts[0] if p != out else "." for p in every}
    assert {"assets", "quarantine", "masters", "gallery.html", "run-summary.json", "catalog.db"} <= kinds
    assert master_files(out) and any(p.name == "reasons.json" for p in every)
    wrong = [f"{p.relative_to(out)}: {oct(p.stat().st_mode & 0o777)}" for p in every
             if p.stat().st_mode & 0o777 != (dir_mode if p.is_dir() else file_mode)]
    assert wrong == [], f"expected files {oct(file_mode)}, folders {oct(dir_mode)} under umask {oct(mask)}"
    assert consistency_problems(out, masters=4) == []
    assert temp_files(out) == []


# --------------------------------------------------------------------------- a write that fails midway

def full_disk_for(file_name: str):
    """A stand-in for the shutil module imagegen.files copies with: a copy to `file_name` writes a few
    bytes, then the disk is full."""

    def copyfileobj(source, target, length=0):
        if f".{file_name}." in os.readlink(f"/proc/self/fd/{target.fileno()}"):  # its temp file's name
            target.write(source.read(10))
            target.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        shutil.copyfileobj(source, target, length)

    return types.SimpleNamespace(copyfileobj=copyfileobj)


def test_a_store_write_that_fails_midway_fails_its_asset_and_leaves_no_temp_file(prefect_harness, tmp_path, capsys,
                                                                               monkeypatch, caplog):
    """The master is stored, then the disk fills while the thumbnail is copied: the run fails (exit 1)
    naming the asset, the thumbnail's temp file is gone, and so is the stored master (no file without
    its row). One master only: with two, what happens to the other one's files depends on which publish
    task ends first, which is not this test's subject (tests/flows/test_publish_to_stores.py covers it)."""
    brief = write_brief(tmp_path, "full-disk", provider=SMALL_LOCAL, targets=SMALL_TARGET,
                        subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 11, "variations": 1}])
    out = tmp_path / "out"
    monkeypatch.setattr(files, "shutil", full_disk_for("thumb.jpg"))
    code, summary, err = run(capsys, brief, out)

    assert code == 1 and summary is not None, err
    assert [(f["stage"], f["reason"]) for f in summary["failed"]] == [("publish", "OSError")]
    # Prefect's console handler writes to the stderr it found at import, not to capsys: read the records
    assert "No space left on device" in caplog.text, "the write error itself reaches the log"
    assert summary["published"] == 0
    assert temp_files(out) == []
    assert not [p for p in (out / "assets").rglob("*") if p.is_file()], "the stored master is removed again"
    assert consistency_problems(out, masters=0) == []


# --------------------------------------------------------------------------- leftovers of a killed writer

WRITER = """
import contextlib, sys, time
from pathlib import Path
from imagegen.files import open_atomically
with contextlib.ExitStack() as stack:
    for target in sys.argv[1:]:
        stack.enter_context(open_atomically(Path(target))).write(b"half a file")
    print("writing", flush=True)
    time.sleep(600)
"""


def start_writer(*targets: Path) -> subprocess.Popen:
    """A process in the middle of writing `targets` (its temp files exist, the renames have not happened)."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, targets)], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "writing"
    return process


def kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
    process.wait(10)


def aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"half a file")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_killed_writers_temp_files_go_at_the_next_run_and_a_live_writers_stay(api_url, tmp_path):
    brief = write_brief(tmp_path, "leftovers", provider=SMALL_LOCAL, targets=SMALL_TARGET)
    out = tmp_path / "out"
    env = imagegen_env(api_url, tmp_path / "home")
    code, _ = run_process(brief, out, env, tmp_path / "first.log")
    assert code == 0, tail(tmp_path / "first.log")
    [asset_folder, _] = sorted((out / "assets" / "leftovers").iterdir())
    # where a run writes: the gallery's folder, masters, the generation ledger, a store's folder
    targets = [out / "gallery.html", out / "masters" / f"{'e' * 64}.png",
               out / "masters" / ".ledger" / f"{'f' * 64}.json", asset_folder / "thumb.jpg"]

    live = start_writer(*targets)  # another run writing into the same out folder right now
    try:
        live_leftovers = temp_files(out)
        assert len(live_leftovers) == 4
        killed = start_writer(*targets)
        kill(killed)  # kill -9 mid-write: nothing removes its temp files
        dead_leftovers = sorted(set(temp_files(out)) - set(live_leftovers))
        assert len(dead_leftovers) == 4 and all(f".{killed.pid}." in name for name in dead_leftovers)
        old_names = [aged(out / "gallery.tmp", STALE_TEMP_AGE_SECONDS + 60),  # what earlier versions left
                     aged(out / "masters" / f"{'a' * 64}.part", STALE_TEMP_AGE_SECONDS + 60),
                     aged(asset_folder / ".incoming-k9kill", STALE_TEMP_AGE_SECONDS + 60)]
        fresh_old_name = aged(asset_folder / ".incoming-concurrent", 5)  # another writer's, by its age

        code, summary = run_process(brief, out, env, tmp_path / "second.log")
        assert code == 0, tail(tmp_path / "second.log")
        assert summary is not None and summary["published"] == 2
        assert temp_files(out) == sorted([*live_leftovers, str(fresh_old_name.relative_to(out))]), \
            "a dead writer's temp files and old leftovers go; a live writer's stay"
        assert all(not p.exists() for p in old_names)
        assert consistency_problems(out, masters=2) == []
    finally:
        kill(live)
