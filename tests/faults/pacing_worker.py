"""One "machine" calling one NVIDIA account as fast as its pacer lets it: `threads` callers, each sending
inference requests in a loop from `--start-at` (wall clock, shared by the sibling processes) until
`--stop-at`, or until `--requests` of them were answered across the process.

Run by tests/faults/test_fault_shared_pacing.py and bench/bench_many_workers.py as a real OS process:

    python -m tests.faults.pacing_worker --url URL --key KEY --rate 600 --pacing postgres --dsn DSN ...

`--pacing postgres` paces through the catalog's PostgreSQL (imagegen.postgres_pacing, what a run with a
PostgreSQL catalog does), `bucket` through this process's own token bucket (the embedded default),
`prefect` through Prefect's `rate_limit()` on the global concurrency limit `--limit-name`.
Prints one JSON line: answers by status, the grants' wall-clock times and errors by kind.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from contextlib import nullcontext

from imagegen.errors import ProviderError
from imagegen.providers.nvidia import NvidiaClient
from imagegen.ratelimit import pacing_through

PAYLOAD = {"prompt": "a paced teapot", "mode": "base", "width": 1024, "height": 1024, "cfg_scale": 0,
           "samples": 1, "seed": 1, "steps": 4}
MODEL = "black-forest-labs/flux.1-schnell"


class PrefectRateLimit:
    """Prefect's `rate_limit()` on a global concurrency limit, as a RateLimiter (no pause: Prefect has none)."""

    def __init__(self, name: str):
        from prefect.concurrency.sync import rate_limit

        self._rate_limit, self.name = rate_limit, name

    def acquire(self) -> float:
        started = time.monotonic()
        self._rate_limit(self.name)
        return time.monotonic() - started

    def pause_for(self, seconds: float) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the emulator's base URL")
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per minute for the account")
    parser.add_argument("--pacing", choices=("postgres", "bucket", "prefect"), default="postgres")
    parser.add_argument("--dsn", help="PostgreSQL of the shared pacing")
    parser.add_argument("--window", type=float, default=60.0, help="the provider's window in seconds")
    parser.add_argument("--guard", type=float, default=0.5, help="the pacer's sliding-window guard in seconds")
    parser.add_argument("--limit-name", default="imagegen-nvidia-rate")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to begin at")
    parser.add_argument("--stop-at", type=float, default=float("inf"), help="time.time() to stop sending at")
    parser.add_argument("--requests", type=int, default=0, help="stop after this many answers (0: no limit)")
    args = parser.parse_args(argv)

    pacing = None
    if args.pacing == "postgres":
        from imagegen.postgres_pacing import PostgresPacing

        pacing = PostgresPacing(args.dsn, window_seconds=args.window, guard_seconds=args.guard)
    prefect_limit = PrefectRateLimit(args.limit_name) if args.pacing == "prefect" else None
    endpoints = {"base_url": f"{args.url}/v1/genai", "status_url": f"{args.url}/v2/nvcf/pexec/status",
                 "assets_url": f"{args.url}/v2/nvcf/assets"}
    statuses: Counter[str] = Counter()
    grants: list[float] = []
    lock = threading.Lock()
    taken = [0]

    def client() -> NvidiaClient:
        if prefect_limit is not None:
            return NvidiaClient(args.key, limiter=prefect_limit, **endpoints)
        return NvidiaClient.for_account(args.key, rate_per_minute=args.rate, **endpoints)

    def loop() -> None:
        while time.time() < args.stop_at:
            with lock:
                if args.requests and taken[0] >= args.requests:
                    return
                taken[0] += 1
            try:
                result = client().infer(MODEL, PAYLOAD)
                outcome = "200"
                with lock:
                    grants.append(time.time() - result.elapsed_ms / 1000)
            except ProviderError as err:
                outcome = str(err.status or type(err).__name__)
                if args.requests:  # a request refused is one more to make
                    with lock:
                        taken[0] -= 1
            with lock:
                statuses[outcome] += 1

    time.sleep(max(0.0, args.start_at - time.time()))
    with pacing_through(pacing) if pacing is not None else nullcontext():
        threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps({"statuses": dict(statuses), "grants": sorted(grants)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
