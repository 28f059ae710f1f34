"""Size-set re-render on this worker's thread pool against Dask LocalClusters of 1 and 2 worker processes.

The campaign flow publishes N masters (the `local` provider, `--side` px) once; then the size-set flow
re-renders the same size set (`social` by default: 9 targets per master, no provider call) from a fresh
copy of that output folder, on the thread pool (no address) and on each cluster (`dask_address=`),
`--repeat` times each, in this one process, the order rotating between repeats. The clusters start
once, before the timed runs; one untimed run per side first warms the imports (the workers import the
render code on their first task). Every run's files are checked to be the same bytes (sha256) on all
sides. The 1-worker cluster tells Dask's own cost from what a second worker adds.

    .venv/bin/python bench/bench_size_set_dask.py                     # 10 masters of 1024 px, social, 2 repeats
    .venv/bin/python bench/bench_size_set_dask.py --masters 12 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LOOKS = [("product", "product", "rule_of_thirds", "elegant"), ("lifestyle", "golden_hour", "leading_lines", "warm"),
         ("minimalist", "studio_high_key", "centered", "calm")]


def write_brief(folder: Path, masters: int, side: int) -> Path:
    import yaml

    subjects = [{"subject": f"a hand-thrown stoneware vase number {i}", "style": LOOKS[i % 3][0],
                 "lighting": LOOKS[i % 3][1], "composition": LOOKS[i % 3][2], "mood": LOOKS[i % 3][3]}
                for i in range(masters)]
    brief = {"campaign": "bench-size-set-dask",
             "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50", "#ffffff"]},
             "subjects": subjects, "size_sets": [],
             "targets": [{"name": "thumb", "platform": "web", "width": 160, "height": 160, "format": "WEBP"}],
             "provider": {"name": "local", "master_width": side, "master_height": side},
             "quality": {"max_edit_attempts": 1}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "brief.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def digests(out: Path, variants: set[str]) -> dict[str, str]:
    """sha256 of each file the run added to the catalog (by asset/variant), read back from disk."""
    with sqlite3.connect(out / "catalog.db") as conn:
        rows = conn.execute("SELECT asset_id, variant, url FROM media_assets").fetchall()
    return {f"{a}/{v}": hashlib.sha256(Path(u.removeprefix("file://")).read_bytes()).hexdigest()
            for a, v, u in rows if v in variants}


def one_run(brief: Path, published: Path, out: Path, size_set: str, address: str | None) -> tuple[float, object]:
    from imagegen_flows.flows.size_sets import size_set_flow

    shutil.copytree(published, out)
    started = time.perf_counter()
    summary = size_set_flow(brief=str(brief), size_sets=[size_set], out_dir=str(out), dask_address=address)
    wall = time.perf_counter() - started
    if summary.failed or not summary.rerendered:
        raise SystemExit(f"run in {out} failed: {summary.lines()}")
    return wall, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masters", type=int, default=10, help="published masters to re-render (default 10)")
    parser.add_argument("--side", type=int, default=1024, help="master side in px (default 1024)")
    parser.add_argument("--size-set", default="social", help="built-in size set to re-render (default social)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per side (default 2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker processes of each LocalCluster (default 1 2)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-size-set-dask-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"))
    for name in [n for n in os.environ if n.startswith("IMAGEGEN_") or n == "PREFECT_API_URL"]:
        os.environ.pop(name)
    from distributed import LocalCluster
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from imagegen.sizes import resolve_targets
    from imagegen_flows.flows.campaign import campaign_flow

    variants = {t.name for t in resolve_targets([args.size_set], [])}
    load_before = os.getloadavg()
    sides: dict[str, str | None] = {"thread pool": None}
    times: dict[str, list[float]] = {"thread pool": []}
    with tempfile.TemporaryDirectory(prefix="bench-size-set-dask-") as tmp, \
            prefect_test_harness(server_startup_timeout=180), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), ExitStack() as clusters:
        folder = Path(tmp)
        brief = write_brief(folder, args.masters, args.side)
        published = folder / "published"
        started = time.perf_counter()
        first = campaign_flow(brief=str(brief), out_dir=str(published))
        print(f"# published {first.published} masters of {args.side} px in {time.perf_counter() - started:.1f} s")
        for workers in args.workers:
            started = time.perf_counter()
            cluster = clusters.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                          dashboard_address=":0"))
            name = f"Dask, {workers} worker{'s' if workers > 1 else ''}"
            sides[name], times[name] = cluster.scheduler_address, []
            print(f"# {name}: LocalCluster started in {time.perf_counter() - started:.1f} s (not in the times)")
        for side, where in sides.items():  # warm-up: imports in this process and in the workers
            one_run(brief, published, folder / f"warm-{len(times[side])}-{side}", args.size_set, where)
        names = list(sides)
        for repeat in range(args.repeat):
            order = names[repeat % len(names):] + names[:repeat % len(names)]  # no side always first
            found = {}
            for index, side in enumerate(order):
                out = folder / f"run{repeat}-{index}"
                wall, summary = one_run(brief, published, out, args.size_set, sides[side])
                times[side].append(wall)
                found[side] = digests(out, variants)
                print(f"# run {repeat + 1} {side}: {wall:.2f} s, {summary.rerendered} masters, "
                      f"{summary.catalog_inserted} new rows")
            if any(d != found["thread pool"] for d in found.values()):
                raise SystemExit(f"run {repeat + 1}: the sides wrote different files")
    load_after = os.getloadavg()

    medians = {side: statistics.median(t) for side, t in times.items()}
    base = medians["thread pool"]
    print(f"\n# size set `{args.size_set}` ({len(variants)} targets) from {args.masters} published masters of "
          f"{args.side} px, {args.repeat} timed runs per side; nproc {os.cpu_count()}; load average (1 min) "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print("| side | runs (s) | median (s) | median / thread pool |")
    print("|---|---|---:|---:|")
    for side, runs in times.items():
        print(f"| {side} | {', '.join(f'{t:.2f}' for t in runs)} | {medians[side]:.2f} | "
              f"**{medians[side] / base:.2f}** |")
    dask_sides = [side for side in times if side != "thread pool"]
    if len(dask_sides) >= 2:
        one, many = dask_sides[0], dask_sides[-1]
        print(f"\n{many} / {one}: {medians[many] / medians[one]:.2f}")
    print("same files (sha256) on every side in every run: yes")
    return 0


if __name__ == "__main__":  # LocalCluster starts its workers with spawn: they import this file
    raise SystemExit(main())
