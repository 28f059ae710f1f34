"""Provider-bound throughput: N masters through the whole campaign flow against a rate-limited NVIDIA.

The NVIDIA emulator (tests/emulators/nvidia.py, served in-process by tests/emulators/serve.py) enforces
`rate` inference requests per 60 s window (answering 429 beyond it) and answers each after `latency`
seconds; IMAGEGEN_NVIDIA_RATE_PER_MINUTE is set to the same rate. The flow runs in this process
against a temporary Prefect API (prefect_test_harness, its own PREFECT_HOME, analytics off, flow
heartbeats off). One warm-up run (2 masters, not timed) pays for imports and the first GX context.

Reported per N: the bound N/rate; the generate span (first provider request to last answer) and the
flow's wall time against it; the 429s the emulator sent; and where the rest of the wall time went:
the tail after the last master (gate, publish, catalog), and Prefect's share, i.e. wall time during
which none of our instrumented code (provider calls, limiter waits, pixel work, GX, stores, catalog,
gallery) was running in any thread: orchestration (task runs, state changes, API calls) and idling.

    .venv/bin/python bench/bench_throughput.py          # quick: N=20 at 120/min, 0.5 s latency (bound 10 s)
    .venv/bin/python bench/bench_throughput.py --full   # the issue's N=20 and N=100 at 40/min, 1 s latency
    .venv/bin/python bench/bench_throughput.py --n 50 --rate 600 --latency 2
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEY = "nvapi-bench-key"
LENIENT = {"min_width": 64, "min_height": 64, "max_edit_attempts": 0, "check_brand_colors": False,
           "min_sharpness": 0, "max_noise_sigma": 50, "max_clipped_fraction": 1.0, "max_blockiness": 50,
           "duplicate_max_distance": 0}


# --------------------------------------------------------------------------- instrumentation

class Recorder:
    """Intervals (kind, start, end) of instrumented calls, from every thread."""

    def __init__(self):
        self.intervals: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()

    def clear(self):
        with self._lock:
            self.intervals = []

    def wrap(self, owner, name: str, kind: str) -> bool:
        original = getattr(owner, name, None)
        if original is None:
            return False

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.intervals.append((kind, started, time.perf_counter()))

        setattr(owner, name, wrapper)
        return True

    def of(self, *kinds: str) -> list[tuple[float, float]]:
        return sorted((s, e) for k, s, e in self.intervals if k in kinds)


def union_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of intervals, clipped to [lo, hi]."""
    total, end = 0.0, lo
    for start, stop in sorted(intervals):
        start, stop = max(start, end, lo), min(stop, hi)
        if stop > start:
            total += stop - start
            end = stop
    return total


WORK = ("plan", "quota", "provider", "limiter", "measure", "gx", "render", "store", "catalog", "gallery")
PHASES = ("providers_with_quota", "generate_all", "gate_and_edit", "publish_and_catalog", "record_run")


def instrument(recorder: Recorder) -> list[str]:
    """Wrap the leaf work (our code doing I/O or pixels) and the flow's phases; return what was not found."""
    import imagegen.catalog.sqlite
    import imagegen.providers.nvidia
    import imagegen.publishing
    import imagegen.ratelimit
    import imagegen_flows.flows.campaign
    import imagegen_flows.flows.reporting
    import imagegen_flows.tasks.gate
    import imagegen_flows.tasks.providers
    import imagegen_flows.tasks.publish

    points = [
        (imagegen_flows.flows.campaign, "load_settings", "flow body"),  # the flow function's first call
        (imagegen_flows.flows.campaign, "plan_member", "plan"),
        (imagegen_flows.tasks.providers.check_quota, "fn", "quota"),
        (imagegen.providers.nvidia.NvidiaGenerator, "generate", "provider"),  # HTTP + verify + save
        (imagegen.ratelimit.TokenBucket, "acquire", "limiter"),  # inside provider: waiting for a token
        (imagegen_flows.tasks.gate, "measure_image", "measure"),
        (imagegen_flows.tasks.gate, "validate_rows", "gx"),
        (imagegen.publishing, "render_variants", "render"),
        (imagegen_flows.tasks.publish, "store_variant", "store"),
        (imagegen.catalog.sqlite.SqliteCatalog, "upsert", "catalog"),
        (imagegen_flows.flows.reporting, "write_gallery", "gallery"),
        *[(imagegen_flows.flows.campaign, phase, phase) for phase in PHASES],
    ]
    return [f"{getattr(o, '__name__', type(o).__name__)}.{n}" for o, n, k in points if not recorder.wrap(o, n, k)]


def span_of(intervals: list[tuple[float, float]]) -> tuple[float, float] | None:
    return (min(s for s, _ in intervals), max(e for _, e in intervals)) if intervals else None


# --------------------------------------------------------------------------- one measured run

def write_brief(folder: Path, campaign: str, n: int, seed: int) -> Path:
    import yaml

    subjects, left, index = [], n, 0
    while left > 0:
        take = min(20, left)  # a subject makes at most 20 variations
        subjects.append({"subject": f"a glass teapot number {index}", "seed": seed + 1000 * index, "variations": take})
        left -= take
        index += 1
    brief = {"campaign": campaign, "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#2c3e50"]},
             "subjects": subjects, "size_sets": [],
             "targets": [{"name": "feed_square", "platform": "web", "width": 320, "height": 320, "format": "JPEG"}],
             "provider": {"name": "nvidia"}, "quality": LENIENT}
    path = folder / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def measured_run(n: int, rate: float, latency: float, folder: Path, switch, recorder: Recorder, tag: str) -> dict:
    from imagegen_flows.flows.campaign import campaign_flow
    from tests.emulators.nvidia import NvidiaEmulator

    emulator = NvidiaEmulator(api_key=KEY)
    emulator.faults.rate_limit, emulator.faults.rate_window, emulator.faults.slow = int(rate), 60.0, latency
    switch.target = emulator
    brief = write_brief(folder, f"bench-{tag}", n, seed=10_000 + int(time.time()) % 100_000)
    recorder.clear()
    started = time.perf_counter()
    summary = campaign_flow(brief=str(brief), out_dir=str(folder / f"out-{tag}"))
    ended = time.perf_counter()
    provider = recorder.of("provider")
    first, last = span_of(provider) or (started, started)
    wall = ended - started
    work = union_seconds(recorder.of(*WORK), started, ended)
    at = {}  # the flow's timeline, seconds from the call
    for kind in ("flow body", *PHASES):
        found = span_of(recorder.of(kind))
        if found:
            at[kind] = (found[0] - started, found[1] - started)
    return {
        "n": n, "rate": rate, "latency": latency, "bound": n * 60.0 / rate,
        "published": summary.published, "failed": len(summary.failed), "provider_calls": summary.provider_calls,
        "wall": wall, "span": last - first, "before_first": first - started, "tail": ended - last,
        "429": emulator.statuses[429], "answers": dict(emulator.statuses), "spent": emulator.spent,
        "limiter_wait_mean": (sum(e - s for s, e in recorder.of("limiter")) / max(1, len(provider))),
        "pixel_union": union_seconds(recorder.of("measure", "gx", "render", "store", "catalog", "gallery"),
                                     started, ended),
        "timeline": at, "orchestration": wall - work,
    }


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N=20 at 120/min, 0.5 s latency (default)")
    mode.add_argument("--full", action="store_true", help="N=20 and N=100 at 40/min, 1 s latency")
    parser.add_argument("--n", type=int, nargs="+")
    parser.add_argument("--rate", type=float, help="requests per minute (emulator limit and client pacing)")
    parser.add_argument("--latency", type=float, help="seconds the emulator takes per image")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args(argv)
    ns = args.n or ([20, 100] if args.full else [20])
    rate = args.rate or (40.0 if args.full else 120.0)
    latency = args.latency if args.latency is not None else (1.0 if args.full else 0.5)

    home = Path(tempfile.mkdtemp(prefix="bench-throughput-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"))
    for name in [n for n in os.environ if n.startswith("IMAGEGEN_") or n == "PREFECT_API_URL"]:
        os.environ.pop(name)

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from tests.emulators.serve import serve_asgi

    class Switch:
        target = None

        async def __call__(self, scope, receive, send):
            await self.target.app(scope, receive, send)

    switch, recorder = Switch(), Recorder()
    missing = instrument(recorder)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp, serve_asgi(switch) as url, \
            prefect_test_harness(server_startup_timeout=180), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        os.environ.update(NVIDIA_API_KEY=KEY, IMAGEGEN_NVIDIA_BASE_URL=f"{url}/v1/genai",
                          IMAGEGEN_NVCF_STATUS_URL=f"{url}/v2/nvcf/pexec/status",
                          IMAGEGEN_NVIDIA_RATE_PER_MINUTE=f"{rate:g}")
        folder = Path(tmp)
        measured_run(2, rate, latency, folder, switch, recorder, "warmup")
        time.sleep(60.0 / rate)  # let the client's token bucket refill
        for n in ns:
            results.append(measured_run(n, rate, latency, folder, switch, recorder, f"n{n}"))
            if n != ns[-1]:
                time.sleep(60.0 / rate)  # each run gets a fresh emulator (its own window); let the bucket refill

    print(f"# provider-bound throughput: rate {rate:g}/min, latency {latency:g} s, nproc {os.cpu_count()}")
    print("| N | bound N/rate (s) | generate span (s) | span/bound | flow wall (s) | wall/bound | 429s | "
          "before 1st call (s) | tail after last master (s) | Prefect share of wall |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']} | {r['bound']:.1f} | {r['span']:.1f} | {r['span'] / r['bound']:.3f} | {r['wall']:.1f} | "
              f"**{r['wall'] / r['bound']:.3f}** | {r['429']} | {r['before_first']:.2f} | {r['tail']:.2f} | "
              f"{r['orchestration']:.2f} s ({100 * r['orchestration'] / r['wall']:.1f} %) |")
    print("\n| N | published | emulator answers | mean limiter wait/call (s) | wall with pixel/GX/store/catalog "
          "work running (s) | flow timeline, s from the call: phase start-end |")
    print("|---:|---:|---|---:|---:|---|")
    for r in results:
        timeline = "; ".join(f"{k} {a:.2f}-{b:.2f}" for k, (a, b) in r["timeline"].items())
        print(f"| {r['n']} | {r['published']}/{r['n']} | {r['answers']} | {r['limiter_wait_mean']:.2f} | "
              f"{r['pixel_union']:.2f} | {timeline} |")
    print("\ntarget: wall <= 1.05 x bound and zero 429s")
    if missing:
        print(f"(not instrumented, not found: {', '.join(missing)})")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
