"""Pacing at 40/min: Prefect's rate_limit() on a global concurrency limit against our client-side TokenBucket.

Why the providers are paced by `imagegen.ratelimit.TokenBucket` and not by the global concurrency limits
`imagegen setup` creates: this measures the rate each delivers. The limit is the one `imagegen setup`
makes (`limit` = rate, slot decay = rate/60 per second) on a temporary Prefect API (prefect_test_harness,
its own PREFECT_HOME); `threads` callers acquire in a loop for `seconds` each, first through
`prefect.concurrency.sync.rate_limit`, then through one TokenBucket with the flows' sliding-window guard.
The steady-state rate leaves out the first 5 s (the limit's `rate` free slots go at once).

    .venv/bin/python bench/bench_rate_limit.py                 # 40/min, 4 threads, 150 s each (~6 min)
    .venv/bin/python bench/bench_rate_limit.py --seconds 90
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BURST_SECONDS = 5.0  # left out of the steady state: the limit's free slots are all granted at once


def grants_of(acquire: Callable[[], object], threads: int, seconds: float) -> list[float]:
    """Seconds from the start at which `acquire` returned, in any of `threads` looping callers."""
    grants: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop = started + seconds

    def loop() -> None:
        while time.monotonic() < stop:
            acquire()
            with lock:
                grants.append(time.monotonic() - started)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(grants)


def steady_rate(grants: list[float]) -> float:
    """Grants per minute between the first and the last grant after the burst."""
    after = [g for g in grants if g >= BURST_SECONDS]
    return (len(after) - 1) / (after[-1] - after[0]) * 60 if len(after) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=40, help="requests per minute (default 40)")
    parser.add_argument("--threads", type=int, default=4, help="callers acquiring in a loop (default 4)")
    parser.add_argument("--seconds", type=float, default=150.0, help="per limiter (default 150)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-rate-limit-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING")
    os.environ.pop("PREFECT_API_URL", None)

    import prefect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import rate_limit
    from prefect.testing.utilities import prefect_test_harness

    from imagegen.ratelimit import WINDOW_SECONDS, TokenBucket

    rows = []
    with prefect_test_harness(server_startup_timeout=180):
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                name="bench-rate", limit=args.rate, slot_decay_per_second=args.rate / 60))
        grants = grants_of(lambda: rate_limit("bench-rate"), args.threads, args.seconds)
        rows.append((f"Prefect {prefect.__version__} `rate_limit()` (limit {args.rate}, decay {args.rate / 60:.4f}/s)",
                     grants))
    bucket = TokenBucket(args.rate, window_seconds=WINDOW_SECONDS)
    rows.append((f"`TokenBucket` ({WINDOW_SECONDS:g} s window guard)", grants_of(bucket.acquire, args.threads,
                                                                                 args.seconds)))

    print(f"# pacing at {args.rate}/min: {args.threads} threads, {args.seconds:g} s per limiter, nproc {os.cpu_count()}")
    print("| limiter | grants | steady state (/min) | of the rate |")
    print("|---|---:|---:|---:|")
    for name, grants in rows:
        rate = steady_rate(grants)
        print(f"| {name} | {len(grants)} | {rate:.1f} | {rate / args.rate:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
