"""Interrupts: Ctrl-C (SIGINT to the terminal's process group) and SIGTERM (to the CLI alone) end a run with
one line, exit 130 / 143, no traceback, no process left behind (the temporary Prefect API included), and a
rerun of the same command finishes the set paying only for the masters the interrupted run did not make.

The NVIDIA emulator lets the first generation through and holds the others, so every interrupt lands
while provider calls are in flight and cannot be stopped (the hardest case, and a deterministic one).
These runs use the temporary API (no PREFECT_API_URL): that API dying first from the group's SIGINT was the
cause of the minutes-long hangs. How fast an interrupted run ends is measured in bench/bench_interrupts.py;
the bound here only keeps a regression from hanging the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import BIN, REPO, consistency_problems, summary_from_log, wait_for, write_brief

HANG_GUARD_SECONDS = 60
INTERRUPTED = re.compile(r"^interrupted: (\d+) masters finished, rerun the same command to continue$", re.M)
MASTERS = 4


def temporary_api_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(home), PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1",
               IMAGEGEN_LOCAL_MASTER_SIZE="1024")
    return env


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in found]
    return children + [d for c in children for d in descendants(c)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def brief(tmp_path, nvidia) -> Path:
    nvidia.hold_after = 1  # the first master is made; the other requests hang until released
    return write_brief(tmp_path / "briefs", "interrupts",
                       provider={"name": "nvidia", "model": "black-forest-labs/flux.1-dev"},
                       subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 7, "variations": 2},
                                 {"subject": "a glass teapot by a window", "seed": 8, "variations": 2}])


def start(brief: Path, out: Path, home: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # its own process group: the test plays the terminal
        return subprocess.Popen([str(BIN / "imagegen"), "run", str(brief), "--out", str(out), "--json"], cwd=REPO,
                                env=temporary_api_env(home), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def interrupt_when(process: subprocess.Popen, log: Path, marker: str, send) -> tuple[str, list[int]]:
    wait_for(lambda: marker in log.read_text(errors="replace") or process.poll() is not None, timeout=240,
             what=f"{marker!r} in the run's output")
    assert process.poll() is None, f"the run ended before {marker!r}:\n{log.read_text()[-3000:]}"
    children = descendants(process.pid)
    assert children, "the temporary API should be a child of the run"
    send(process)
    try:
        process.wait(HANG_GUARD_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the interrupted run still ran after {HANG_GUARD_SECONDS} s:\n{log.read_text()[-3000:]}")
    time.sleep(0.5)
    return log.read_text(errors="replace"), [c for c in children if alive(c)]


def assert_ended_cleanly(output: str, survivors: list[int]) -> int:
    assert "Traceback" not in output, output[-4000:]
    lines = INTERRUPTED.findall(output)
    assert len(lines) == 1, f"expected one interrupted line:\n{output[-3000:]}"
    assert not survivors, f"processes left behind: {survivors}"
    return int(lines[0])


def rerun_finishes_the_set(nvidia, brief: Path, out: Path, home: Path, log: Path, finished: int) -> None:
    nvidia.hold_after = None
    nvidia.release()  # what the interrupted run left hanging is refused (503, not spent)
    done = subprocess.run([str(BIN / "imagegen"), "run", str(brief), "--out", str(out), "--json"], cwd=REPO,
                          env=temporary_api_env(home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log.write_text(done.stdout)
    summary = summary_from_log(log)
    assert summary["published"] == MASTERS
    assert summary["provider_calls"] <= MASTERS - finished, "the rerun paid again for a finished master"
    assert nvidia.spent == MASTERS, "every master is paid for exactly once, interrupt or not"
    assert consistency_problems(out, MASTERS) == []


def test_ctrl_c_to_the_process_group_during_generate(nvidia, brief, tmp_path):
    out, home, log = tmp_path / "out", tmp_path / "home", tmp_path / "run.log"
    process = start(brief, out, home, log)
    output, survivors = interrupt_when(process, log, "[generate] 1/", lambda p: os.killpg(p.pid, signal.SIGINT))
    assert process.returncode == 130, output[-3000:]
    finished = assert_ended_cleanly(output, survivors)
    assert finished == 1, "the line counts the masters in the generation ledger"
    rerun_finishes_the_set(nvidia, brief, out, home, tmp_path / "rerun.log", finished)


def test_sigterm_to_the_cli_alone_during_generate(nvidia, brief, tmp_path):
    out, home, log = tmp_path / "out", tmp_path / "home", tmp_path / "run.log"
    process = start(brief, out, home, log)
    output, survivors = interrupt_when(process, log, "[generate] 1/", lambda p: os.kill(p.pid, signal.SIGTERM))
    assert process.returncode == 143, output[-3000:]
    finished = assert_ended_cleanly(output, survivors)
    assert finished == 1
    rerun_finishes_the_set(nvidia, brief, out, home, tmp_path / "rerun.log", finished)
