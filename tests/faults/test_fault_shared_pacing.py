"""One NVIDIA account, three OS processes calling it as fast as their pacers let them, and a provider
(the emulator) that answers 429 over `rate` requests in any sliding window: paced through the catalog's
PostgreSQL, the processes together stay inside the window (0 x 429, every request served); each
paced by its own token bucket (the embedded default, one process's view), they do not.

The provider's minute is scaled down so a test takes seconds: 60 requests per 6 s window (600/min),
and the pacers are told that window (`--window 6`, the same 0.5 s guard as at 60 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.conftest import NVIDIA_KEY, REPO
from tests.stores import conftest as store_fixtures

postgres_server_dsn = store_fixtures.postgres_server_dsn
postgres_dsn = store_fixtures.postgres_dsn

RATE, WINDOW, LIMIT = 600, 6.0, 60  # per minute; the provider's window (s) and what it allows in it
PROCESSES, THREADS = 3, 4


def hammer(url: str, pacing: str, seconds: float, tmp_path: Path, dsn: str | None = None) -> list[dict]:
    """PROCESSES pacing_worker processes x THREADS callers, sending from one instant for `seconds`."""
    start = time.time() + 3.0  # every process is up and imported by then
    command = [sys.executable, "-m", "tests.faults.pacing_worker", "--url", url, "--key", NVIDIA_KEY,
               "--rate", str(RATE), "--window", str(WINDOW), "--pacing", pacing, "--threads", str(THREADS),
               "--start-at", str(start), "--stop-at", str(start + seconds)] + (["--dsn", dsn] if dsn else [])
    logs = [tmp_path / f"{pacing}-{i}.log" for i in range(PROCESSES)]
    workers = []
    for log in logs:
        with open(log, "w") as fh:
            workers.append(subprocess.Popen(command, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT))
    codes = [worker.wait(timeout=120) for worker in workers]
    outputs = [log.read_text() for log in logs]
    assert codes == [0] * PROCESSES, "\n".join(outputs)
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def test_three_processes_paced_through_postgres_stay_inside_the_provider_window(nvidia, nvidia_loopback,
                                                                              postgres_dsn, tmp_path):
    nvidia.faults.rate_limit, nvidia.faults.rate_window = LIMIT, WINDOW
    results = hammer(nvidia_loopback[1], "postgres", 10.0, tmp_path, postgres_dsn)

    served = [r["statuses"].get("200", 0) for r in results]
    refused = {status: n for r in results for status, n in r["statuses"].items() if status != "200"}
    assert refused == {} and nvidia.statuses[429] == 0, f"answers other than 200: {refused}"
    assert sum(served) == nvidia.statuses[200] == nvidia.spent == len(nvidia.arrivals)
    assert all(n > 0 for n in served), f"a process never got a turn: {served}"
    # what the provider saw: never more than its limit in any window, and the window really filled up
    # (over 10 s, 3 x 4 callers queue far more than the limit: the pacers, not the callers, set the pace)
    assert nvidia.max_in_window(WINDOW) <= LIMIT
    assert nvidia.max_in_window(WINDOW) > LIMIT // 2, nvidia.max_in_window(WINDOW)


def test_three_processes_each_with_its_own_bucket_overrun_the_window(nvidia, nvidia_loopback, tmp_path):
    """The same load with today's per-process pacing: each process keeps the rate, together they are 3x
    over it and the provider answers 429 (what the shared schedule prevents)."""
    nvidia.faults.rate_limit, nvidia.faults.rate_window = LIMIT, WINDOW
    results = hammer(nvidia_loopback[1], "bucket", 5.0, tmp_path)
    assert sum(r["statuses"].get("429", 0) for r in results) == nvidia.statuses[429] > 0
    assert nvidia.max_in_window(WINDOW) > LIMIT
