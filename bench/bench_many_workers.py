"""Several worker processes on one provider account at 120/min: who keeps the account's pace.

Part 1, pacing: 3 OS processes x 4 callers (tests/faults/pacing_worker.py) send NVIDIA inference
requests in a loop for `--seconds`, against the NVIDIA emulator, which allows `rate` requests in any
60 s (429 beyond) and answers after 0.2 s. Side by side, in one run:
- Prefect's `rate_limit()` on a global concurrency limit as `imagegen setup` makes it (limit = rate,
  slot decay = rate/60 per second), and on one without a burst (limit 1, same decay);
- each process's own TokenBucket (the embedded default: each keeps the rate, together 3x it);
- the shared pacer in the catalog's PostgreSQL (imagegen.postgres_pacing).
Reported: requests sent, 429s, the most requests in any 60 s, and the steady rate (after the first 5 s).

Part 2, the issue's N masters: 3 `imagegen run` processes (own PREFECT_HOME and --out, one Prefect API,
one PostgreSQL catalog) split N = 100 masters (34/33/33) on one account at 120/min, 0.5 s latency.
Reported: the aggregate generate span (the first provider request of any run to the last answer)
against N/rate, the 429s, and each run's wall time.

Needs PostgreSQL: IMAGEGEN_TEST_POSTGRES_DSN, else a throwaway cluster from the server binaries
(tests/stores/conftest.py). A temporary Prefect API (prefect_test_harness) is started for both parts.

    .venv/bin/python bench/bench_many_workers.py                 # ~7 min
    .venv/bin/python bench/bench_many_workers.py --seconds 45 --masters 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY = "nvapi-bench-many-workers"
PROCESSES, THREADS = 3, 4
BURST_SECONDS = 5.0  # left out of the steady rate: a limit's free slots go at once
START_DELAY = 8.0  # seconds for the worker processes to start and import before they begin together


def fresh_schema(dsn: str) -> str:
    """`dsn` with a search_path of a new schema: each measurement starts from empty tables."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


def steady_rate(arrivals: list[float]) -> float:
    after = [t for t in arrivals if t >= arrivals[0] + BURST_SECONDS] if arrivals else []
    return (len(after) - 1) / (after[-1] - after[0]) * 60 if len(after) > 1 else 0.0


def pacing_row(label: str, pacing: str, args, switch, url: str, env: dict[str, str], dsn: str | None = None,
               limit_name: str | None = None) -> dict:
    from tests.emulators.nvidia import NvidiaEmulator

    emulator = NvidiaEmulator(api_key=KEY)
    emulator.faults.rate_limit, emulator.faults.rate_window, emulator.faults.slow = args.rate, 60.0, 0.2
    switch.target = emulator
    start = time.time() + START_DELAY
    command = [sys.executable, "-m", "tests.faults.pacing_worker", "--url", url, "--key", KEY,
               "--rate", str(args.rate), "--pacing", pacing, "--threads", str(THREADS),
               "--start-at", str(start), "--stop-at", str(start + args.seconds)]
    command += (["--dsn", dsn] if dsn else []) + (["--limit-name", limit_name] if limit_name else [])
    workers = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(PROCESSES)]
    outputs = [worker.communicate(timeout=args.seconds + 300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        if worker.returncode != 0:
            raise SystemExit(f"{label}: a worker failed:\n{err[-2000:]}")
    arrivals = sorted(emulator.arrivals)
    return {"label": label, "sent": len(arrivals), "ok": emulator.statuses[200], "429": emulator.statuses[429],
            "max_60s": emulator.max_in_window(60.0), "steady": steady_rate(arrivals)}


def masters_row(args, switch, url: str, api_url: str, dsn: str, folder: Path) -> dict:
    from tests.emulators.nvidia import NvidiaEmulator
    from tests.faults.conftest import imagegen_env, kill_group, spawn_run, summary_from_log, write_brief

    emulator = NvidiaEmulator(api_key=KEY)
    emulator.faults.rate_limit, emulator.faults.rate_window, emulator.faults.slow = args.rate, 60.0, 0.5
    switch.target = emulator
    shares = [args.masters // PROCESSES + (1 if i < args.masters % PROCESSES else 0) for i in range(PROCESSES)]
    catalog = fresh_schema(dsn)
    runs, logs = [], []
    started = time.monotonic()
    for i, share in enumerate(shares):
        subjects, left, index = [], share, 0
        while left > 0:  # a subject makes at most 20 variations
            take = min(20, left)
            subjects.append({"subject": f"a glass teapot {i}-{index}", "seed": 9000 + 100 * i + index,
                             "variations": take})
            left, index = left - take, index + 1
        brief = write_brief(folder / f"brief-{i}", f"many-{i}", provider={"name": "nvidia"}, subjects=subjects)
        env = imagegen_env(api_url, folder / f"home-{i}", IMAGEGEN_CATALOG_URL=catalog, NVIDIA_API_KEY=KEY,
                           IMAGEGEN_NVIDIA_BASE_URL=f"{url}/v1/genai",
                           IMAGEGEN_NVCF_STATUS_URL=f"{url}/v2/nvcf/pexec/status",
                           IMAGEGEN_NVIDIA_RATE_PER_MINUTE=str(args.rate), PREFECT_LOGGING_LEVEL="WARNING")
        logs.append(folder / f"run-{i}.log")
        runs.append(spawn_run(brief, folder / f"out-{i}", env, logs[-1]))
    try:
        codes = []
        for run in runs:
            codes.append(run.wait(timeout=900))
    finally:
        for run in runs:
            kill_group(run)
    ended = time.monotonic()
    for code, log in zip(codes, logs):
        if code != 0:
            print(f"a run exited {code}:\n{log.read_text()[-3000:]}", file=sys.stderr)
    summaries = [summary_from_log(log) or {} for log in logs]
    arrivals = sorted(emulator.arrivals)
    span = arrivals[-1] - arrivals[0] + emulator.faults.slow if arrivals else 0.0
    return {"masters": args.masters, "shares": shares, "codes": codes, "bound": args.masters * 60.0 / args.rate,
            "span": span, "429": emulator.statuses[429], "spent": emulator.spent,
            "generated": [s.get("generated") for s in summaries], "wall": ended - started,
            "run_walls": [s.get("seconds") for s in summaries]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=120, help="the account's requests per minute (default 120)")
    parser.add_argument("--seconds", type=float, default=60.0, help="part 1: seconds per pacer (default 60; 0: skip)")
    parser.add_argument("--masters", type=int, default=100, help="part 2: N masters over 3 runs (0: skip)")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-many-workers-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING")
    for name in [n for n in os.environ if n.startswith("IMAGEGEN_") and n != "IMAGEGEN_TEST_POSTGRES_DSN"
                 or n == "PREFECT_API_URL"]:
        os.environ.pop(name)

    import prefect
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from tests.emulators.serve import serve_asgi
    from tests.stores.conftest import _postgres_bin_dir, _ThrowawayCluster

    class Switch:
        target = None

        async def __call__(self, scope, receive, send):
            await self.target.app(scope, receive, send)

    cluster = None
    dsn = os.environ.get("IMAGEGEN_TEST_POSTGRES_DSN")
    if not dsn:
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            raise SystemExit("PostgreSQL is needed: install the server binaries or set IMAGEGEN_TEST_POSTGRES_DSN")
        cluster = _ThrowawayCluster(bin_dir)
        dsn = cluster.start()
    switch = Switch()
    rows, many = [], None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-many-workers-") as tmp, serve_asgi(switch) as url, \
                prefect_test_harness(server_startup_timeout=180):
            api_url = PREFECT_API_URL.value()
            with get_client(sync_client=True) as client:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                    name="bench-setup-rate", limit=args.rate, slot_decay_per_second=args.rate / 60))
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                    name="bench-no-burst-rate", limit=1, slot_decay_per_second=args.rate / 60))
            env = {k: v for k, v in os.environ.items()}
            env.update(PREFECT_API_URL=api_url, PYTHONUNBUFFERED="1")
            version = prefect.__version__
            pacers = [
                (f"Prefect {version} `rate_limit()`, limit {args.rate}, decay {args.rate / 60:g}/s "
                 "(as `imagegen setup` makes it)", "prefect", {"limit_name": "bench-setup-rate"}),
                (f"Prefect {version} `rate_limit()`, limit 1, decay {args.rate / 60:g}/s (no burst)", "prefect",
                 {"limit_name": "bench-no-burst-rate"}),
                ("a `TokenBucket` per process (embedded default)", "bucket", {}),
                ("shared pacer in PostgreSQL (`imagegen_pacing`)", "postgres", {"dsn": fresh_schema(dsn)}),
            ]
            for label, pacing, options in pacers if args.seconds > 0 else []:
                rows.append(pacing_row(label, pacing, args, switch, url, env, **options))
            if args.masters:
                many = masters_row(args, switch, url, api_url, dsn, Path(tmp))
    finally:
        if cluster is not None:
            cluster.stop()

    load = os.getloadavg()[0]
    print(f"# one account at {args.rate}/min, {PROCESSES} processes x {THREADS} callers, {args.seconds:g} s per pacer, "
          f"nproc {os.cpu_count()}, load {load:.1f}")
    print("| pacer | requests | 429s | most in any 60 s | steady rate (/min) | of the rate |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['sent']} | {r['429']} | {r['max_60s']} | {r['steady']:.1f} | "
              f"{r['steady'] / args.rate:.3f} |")
    if many:
        print(f"\n# N = {many['masters']} masters over {PROCESSES} `imagegen run` processes ({many['shares']}), "
              f"one account at {args.rate}/min, PostgreSQL catalog")
        print("| bound N/rate (s) | generate span (s) | span/bound | 429s | paid | generated per run | exit codes | "
              "run walls (s) | first start to last exit (s) |")
        print("|---:|---:|---:|---:|---:|---|---|---|---:|")
        walls = ", ".join(f"{w:.1f}" if isinstance(w, (int, float)) else "?" for w in many["run_walls"])
        print(f"| {many['bound']:.1f} | {many['span']:.1f} | **{many['span'] / many['bound']:.3f}** | {many['429']} | "
              f"{many['spent']} | {many['generated']} | {many['codes']} | {walls} | {many['wall']:.1f} |")
        print("\ntarget: span <= 1.10 x N/rate and zero 429s")
    if args.json:
        print(json.dumps({"pacing": rows, "masters": many}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
