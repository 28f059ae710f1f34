"""Peak memory of one campaign run against the number of masters: it should stay flat.

Each N runs in its own subprocess (a fresh interpreter, so one run's high-water mark cannot hide
another's): the whole campaign flow on the offline `local` provider with small masters (384 px) and
two small targets, against one temporary Prefect API started by this parent process (the API
server's own memory is not counted: it is a separate process). The child reports its peak RSS
(resource.getrusage(RUSAGE_SELF).ru_maxrss, psutil is not installed) after imports and after the run.

    .venv/bin/python bench/bench_memory.py           # quick: N = 10, 50
    .venv/bin/python bench/bench_memory.py --full    # N = 10, 100, 1000 (the 1000 run takes a while)
    .venv/bin/python bench/bench_memory.py --n 10 200 --side 512 --phases   # peak RSS per flow phase
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LENIENT = {"min_width": 64, "min_height": 64, "max_edit_attempts": 0, "check_brand_colors": False,
           "min_sharpness": 0, "max_noise_sigma": 50, "max_clipped_fraction": 1.0, "max_blockiness": 50,
           "duplicate_max_distance": 0}


def write_brief(folder: Path, n: int, side: int) -> Path:
    import yaml

    subjects, left, index = [], n, 0
    while left > 0:
        take = min(20, left)
        subjects.append({"subject": f"a ceramic teapot number {index}", "seed": 500 + 1000 * index,
                         "variations": take})
        left -= take
        index += 1
    brief = {"campaign": f"memory-{n}", "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#2c3e50"]},
             "subjects": subjects, "size_sets": [],
             "targets": [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"},
                         {"name": "strip", "platform": "web", "width": 200, "height": 96, "format": "WEBP"}],
             "provider": {"name": "local", "master_width": side, "master_height": side}, "quality": LENIENT}
    path = folder / f"memory-{n}.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


PHASES = ("providers_with_quota", "generate_all", "gate_and_edit", "publish_and_catalog", "record_run")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def watch_phases() -> dict[str, float]:
    """Peak RSS (MB, sampled every 50 ms) while each phase of the campaign flow runs."""
    import threading

    import imagegen_flows.flows.campaign

    peaks: dict[str, float] = {}
    current: list[str] = ["flow start"]

    def sample():
        while True:
            peaks[current[-1]] = max(peaks.get(current[-1], 0.0), _rss_mb())
            time.sleep(0.05)

    for phase in PHASES:
        original = getattr(imagegen_flows.flows.campaign, phase)

        def wrapper(*args, __original=original, __phase=phase, **kwargs):
            current.append(__phase)
            try:
                return __original(*args, **kwargs)
            finally:
                current.append("between phases")

        setattr(imagegen_flows.flows.campaign, phase, wrapper)
    threading.Thread(target=sample, daemon=True).start()
    return peaks


def child(n: int, side: int, folder: Path, phases: bool = False) -> int:
    """One run in this process; prints {"n", "rss_after_imports_mb", "peak_rss_mb", ...} as JSON."""
    import great_expectations  # noqa: F401 - the gate imports it lazily; count it in the baseline
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from imagegen_flows.flows.campaign import campaign_flow

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    brief = write_brief(folder, n, side)
    peaks = watch_phases() if phases else {}
    started = time.perf_counter()
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        summary = campaign_flow(brief=str(brief), out_dir=str(folder / f"out-{n}"))
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "rss_after_imports_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
                      "wall_s": round(wall, 1), "published": summary.published, "quarantined": summary.quarantined,
                      "failed": len(summary.failed),
                      "files": summary.files_stored,
                      "phase_peaks_mb": {k: round(v) for k, v in peaks.items()}}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N = 10, 50 (default)")
    mode.add_argument("--full", action="store_true", help="N = 10, 100, 1000")
    parser.add_argument("--n", type=int, nargs="+")
    parser.add_argument("--side", type=int, default=384, help="master side in px (default 384)")
    parser.add_argument("--phases", action="store_true", help="also report the peak RSS within each flow phase")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.child, args.side, Path(args.folder), args.phases)
    ns = args.n or ([10, 100, 1000] if args.full else [10, 50])

    home = Path(tempfile.mkdtemp(prefix="bench-memory-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"))
    for name in [n for n in os.environ if n.startswith("IMAGEGEN_") or n == "PREFECT_API_URL"]:
        os.environ.pop(name)
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, prefect_test_harness(server_startup_timeout=180):
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        for n in ns:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            done = subprocess.run([sys.executable, __file__, "--child", str(n), "--side", str(args.side),
                                   "--folder", str(folder), *(["--phases"] if args.phases else [])],
                                  env=env, capture_output=True, text=True, cwd=REPO)
            line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
            if done.returncode != 0 or line is None:
                print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"child N={n} failed with {done.returncode}")
            results.append(json.loads(line))
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    smallest = results[0]["peak_rss_mb"]
    print(f"# peak RSS of one campaign run (local provider, {args.side} px masters, 2 small targets), "
          f"nproc {os.cpu_count()}")
    print("| N masters | RSS after imports (MB) | peak RSS (MB) | vs smallest N | run (s) | published / quarantined / "
          "failed | files |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['n']} | {r['rss_after_imports_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{100 * (r['peak_rss_mb'] / smallest - 1):+.0f} % | {r['wall_s']:.1f} | "
              f"{r['published']} / {r['quarantined']} / {r['failed']} | "
              f"{r['files']} |")
    growth = max(r["peak_rss_mb"] for r in results) / smallest - 1
    if args.phases:
        print("\n| N | peak RSS within each phase of the flow (MB) |\n|---:|---|")
        for r in results:
            print(f"| {r['n']} | " + "; ".join(f"{k} {v}" for k, v in r["phase_peaks_mb"].items()) + " |")
    workers = os.environ.get("PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS")
    if workers:
        print(f"\n(PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS={workers})")
    print(f"\ntarget: flat within 20 % -> {'met' if growth <= 0.20 else 'MISSED'} ({100 * growth:+.0f} %); "
          f"largest child by RUSAGE_CHILDREN (incl. the API server): {children_peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
