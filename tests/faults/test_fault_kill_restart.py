"""A run killed with SIGKILL mid-way and started again with the same brief loses nothing and repeats
nothing: every master ends published or quarantined exactly once, no provider call is repeated for an
image that was finished, and no file is left without its row (or row without its file)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from imagegen.files import STALE_TEMP_AGE_SECONDS
from tests.faults.conftest import (
    BIN,
    REPO,
    catalog_rows,
    consistency_problems,
    generation_records,
    imagegen_env,
    kill_group,
    master_files,
    spawn_run,
    stored_files,
    summary_from_log,
    tail,
    wait_for,
    write_brief,
)

pytestmark = pytest.mark.prefect


def rerun(brief, out, env, log) -> tuple[int, dict | None]:
    with open(log, "w") as fh:
        done = subprocess.run([str(BIN / "imagegen"), "run", str(brief), "--out", str(out), "--json"], cwd=REPO,
                              env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=180)
    return done.returncode, summary_from_log(log)


def test_killed_while_generating_then_rerun_spends_nothing_twice(api_url, nvidia, tmp_path):
    """Kill -9 once 2 of 4 masters are finished (file written, cache record committed) and the other
    two requests are waiting at the provider; the rerun makes exactly the two that were missing. The
    policy asks for 2000 px, so all four end quarantined (the publish test covers published ones)."""
    nvidia.faults.slow = 0.3
    nvidia.hold_after = 2  # the 3rd and 4th inference requests wait at the provider until the kill
    brief = write_brief(tmp_path, "kill-generate", provider={"name": "nvidia"},
                        subjects=[{"subject": "a glass teapot", "seed": 4242, "variations": 4}],
                        quality={"min_width": 2000, "min_height": 2000})
    out, home = tmp_path / "out", tmp_path / "home"
    env = imagegen_env(api_url, home)
    first_log = tmp_path / "first.log"
    process = spawn_run(brief, out, env, first_log)
    try:
        wait_for(lambda: len(master_files(out)) >= 2 and len(generation_records(home)) >= 2 and nvidia.held >= 2,
                 90, "2 finished masters and 2 held requests", diagnostics=lambda: tail(first_log))
    finally:
        kill_group(process)
    assert catalog_rows(out) == [], "the catalog was written before the kill: the kill came too late"
    assert nvidia.spent == 2
    nvidia.release()
    nvidia.hold_after = None

    code, summary = rerun(brief, out, env, tmp_path / "second.log")
    assert code == 0, tail(tmp_path / "second.log")
    assert nvidia.spent == 4, "a finished image was paid for twice"
    assert summary["provider_calls"] == 2 and summary["generated"] == 4 and summary["quarantined"] == 4
    assert consistency_problems(out, masters=4) == []
    assert len(master_files(out)) == 4, "duplicate or missing master files"


def incoming_files(out) -> list[Path]:
    """Temp files named as earlier versions named them (`.incoming-*`: no writer to ask, swept by age)."""
    return [path for path in map(Path, stored_files(out)[1]) if path.name.startswith(".incoming-")]


def test_killed_while_publishing_then_rerun_leaves_no_orphan(api_url, nvidia, tmp_path):
    """Kill -9 once the first published file exists but before the catalog is written: files without
    rows exist until the rerun, which re-publishes nothing new (same bytes), writes every row and calls
    the provider zero times.

    A kill between a store's temp write and its rename may leave a temp file named for the killed
    process, which the rerun removes at once (imagegen.files). Temp files named as earlier versions did
    (`.incoming-*`) have no writer to ask: the rerun only sweeps those older than STALE_TEMP_AGE_SECONDS
    (10 minutes: a younger one may be a concurrent writer's). So the test plants one aged leftover (as
    if the rerun came 11 minutes later) plus one fresh temp file (a concurrent writer's); the rerun
    must remove the aged one and whatever the kill left, and keep the fresh one."""
    brief = write_brief(tmp_path, "kill-publish", provider={"name": "nvidia"}, size_sets=["social"], targets=[],
                        subjects=[{"subject": "a glass teapot", "seed": 777, "variations": 3}])
    out, home = tmp_path / "out", tmp_path / "home"
    env = imagegen_env(api_url, home)
    first_log = tmp_path / "first.log"
    process = spawn_run(brief, out, env, first_log)
    try:
        wait_for(lambda: stored_files(out)[0], 120, "a first published file", interval=0.02,
                 diagnostics=lambda: tail(first_log))
    finally:
        kill_group(process)
    assert catalog_rows(out) == [], "the catalog was written before the kill: the kill came too late"
    assert stored_files(out)[0], "the kill left no published file: it came too early to test orphans"
    spent = nvidia.spent
    assert spent == 3
    campaign_folder = out / "assets" / "kill-publish"
    aged = [*incoming_files(out), campaign_folder / ".incoming-planted-by-test"]
    aged[-1].write_bytes(b"half a file")
    eleven_minutes_ago = time.time() - STALE_TEMP_AGE_SECONDS - 60
    for path in aged:
        os.utime(path, (eleven_minutes_ago, eleven_minutes_ago))
    in_flight = campaign_folder / ".incoming-concurrent-writer"
    in_flight.write_bytes(b"being written")

    code, summary = rerun(brief, out, env, tmp_path / "second.log")
    assert code == 0, tail(tmp_path / "second.log")
    assert nvidia.spent == spent and summary["provider_calls"] == 0
    assert consistency_problems(out, masters=3) == []
    assert incoming_files(out) == [in_flight], "aged leftovers must be swept, a fresh temp file kept"
    assert stored_files(out)[1] == [str(in_flight)], "the killed run's temp files must be swept"
    assert summary["published"] == 3 and summary["catalog_inserted"] == 3 * 10  # master + 9 social targets
    # the killed run's scratch folder (renders waiting to be stored) was swept by the rerun
    assert list((out / ".work").iterdir()) == []
