"""How long `imagegen run` takes to start: process start to the first provider request and the first published file.

The README's command on the example brief (`imagegen run examples/spring-launch.yaml --out <tmp>`, the
`local` provider, no PREFECT_API_URL, so the run starts its temporary Prefect API), with a fresh
PREFECT_HOME (an empty folder) and with a warm one (the same home a second time). Everything the
headline figures use is observed from outside the process:

- first provider request: the first claim file in `<out>/masters/.ledger/` (a paid call claims its key
  there right before it asks the provider, `imagegen/ledger.py`);
- first published file: the first file under `<out>/assets/` (temp files, named `.*`, do not count);
- the temporary API: its uvicorn process appearing among the run's children, and its /api/health answering;
- flow start: Prefect's "Beginning flow run" line.

The process is the CLI's `main()` started by this file in probe mode (what the `imagegen` console script
does, plus timestamps around a few functions: the flow modules' imports and the pre-flight checks of
`validate()`, the wait for the temporary API); those give the breakdown. Each run gets its own result
storage (PREFECT_LOCAL_STORAGE_PATH), so the warm run is not served from the fresh run's task cache and
asks the provider again, as the fresh run did.

    .venv/bin/python bench/bench_fast_start.py                       # this checkout, 3 fresh + 3 warm runs
    .venv/bin/python bench/bench_fast_start.py --compare ../wt-main  # runs alternate with other checkouts' runs
    .venv/bin/python bench/bench_fast_start.py --components          # + the parts alone: API start, imports

`--compare DIR` takes a checkout with its own `.venv` (e.g. `git worktree add ../wt-main main` and the
README's install there): its runs alternate with this checkout's, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BRIEF = "examples/spring-launch.yaml"
# What `validate()` imports first (old and new code alike); timed apart from the checks themselves.
FLOW_MODULES = ["imagegen.brief_source", "imagegen.fallbacks", "imagegen.settings", "imagegen_flows.blocks.preflight",
                "imagegen_flows.blocks.resolve", "imagegen_flows.flows.campaign", "imagegen_flows.flows.generate_stage"]
# Functions timed inside the CLI process when its code has them: (module, name, label).
TIMED = [("imagegen_flows.deployments.temporary_api", "prepare_temporary_api", "api_prepare"),
         ("imagegen_flows.deployments.temporary_api", "launch_temporary_api", "api_launch"),
         ("imagegen_flows.deployments.temporary_api", "detach_temporary_api", "api_detach"),
         ("imagegen_flows.deployments.temporary_api", "start_temporary_api", "api_wait"),
         ("imagegen_flows.deployments.temporary_api", "await_temporary_api", "api_wait")]


# ---------------------------------------------------------------- probe mode: runs inside the CLI process

def probe(marks_path: str, argv: list[str]) -> int:
    marks: list[tuple[str, float]] = [("main", time.time())]

    def mark(name: str) -> None:
        marks.append((name, time.time()))

    def on_audit(event: str, args: tuple) -> None:  # the temporary API's process being started, whoever starts it
        if event == "subprocess.Popen" and "uvicorn" in str(args[1]):
            mark("api_popen")

    sys.addaudithook(on_audit)
    import importlib

    from imagegen_flows.deployments import cli

    def timed(function, label: str, before=None):
        def wrapper(*args, **kwargs):
            if before:
                before()
            mark(label + "_start")
            try:
                return function(*args, **kwargs)
            finally:
                mark(label + "_end")
        return wrapper

    def import_flow_modules() -> None:
        mark("imports_start")
        for name in FLOW_MODULES:
            importlib.import_module(name)
        mark("imports_end")

    cli.validate = timed(cli.validate, "preflight", before=import_flow_modules)
    for module_name, name, label in TIMED:
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            setattr(module, name, timed(getattr(module, name), label))
    try:
        return cli.main(argv)
    finally:
        Path(marks_path).write_text(json.dumps(marks))


# ---------------------------------------------------------------- one run, watched from outside

def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def api_child(pid: int) -> int | None:
    """The run's temporary API process: Prefect's uvicorn command, or the process that imports it ahead."""
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"uvicorn" in cmdline or b"api_process" in cmdline:
            return child
    return None


def listening_port(pid: int) -> int | None:
    """The TCP port `pid` listens on, from /proc (its sockets' inodes in /proc/net/tcp, state LISTEN)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            return int(fields[1].split(":")[1], 16)
    return None


def healthy(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=0.5) as answer:
            return answer.status == 200
    except OSError:
        return False


def first_file(folder: Path) -> bool:
    for _, _, files in os.walk(folder):
        if any(not name.startswith(".") for name in files):
            return True
    return False


def one_run(checkout: Path, home: Path, work: Path) -> dict:
    """One `imagegen run` of the example brief with `home` as PREFECT_HOME; seconds from process start."""
    out, storage, marks_path = work / "out", work / "storage", work / "marks.json"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL" and not k.startswith("IMAGEGEN_")}
    env.update(PREFECT_HOME=str(home), PREFECT_LOCAL_STORAGE_PATH=str(storage), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1")
    python = checkout / ".venv" / "bin" / "python"
    started_wall, started = time.time(), time.monotonic()
    process = subprocess.Popen([str(python), __file__, "--probe", str(marks_path), "run", BRIEF, "--out", str(out)],
                               cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    seen: dict[str, float] = {}
    lines: list[str] = []
    patterns = {"flow_start": "Beginning flow run", "prompt_line": "[prompt]"}

    def read() -> None:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace")
            lines.append(line)
            for key, text in patterns.items():
                if key not in seen and text in line:
                    seen[key] = time.monotonic() - started

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    api, port = None, None
    while process.poll() is None:
        now = time.monotonic() - started
        if api is None and (api := api_child(process.pid)) is not None:
            seen["api_spawned"] = now
        if api is not None and port is None:
            port = listening_port(api)
        if port is not None and "api_healthy" not in seen and healthy(port):
            seen["api_healthy"] = time.monotonic() - started
        ledger = out / "masters" / ".ledger"
        if "provider_request" not in seen and ledger.is_dir() and any(n.endswith(".lock") for n in os.listdir(ledger)):
            seen["provider_request"] = now
        if "published" not in seen and (out / "assets").is_dir() and first_file(out / "assets"):
            seen["published"] = now
        time.sleep(0.01)
    seen["exit"] = time.monotonic() - started
    reader.join(5)
    if process.returncode != 0:
        sys.exit(f"run failed (exit {process.returncode}) in {checkout}:\n{''.join(lines)[-3000:]}")
    marks = dict(json.loads(marks_path.read_text())) if marks_path.exists() else {}
    seen.update({name: at - started_wall for name, at in marks.items()})
    return seen


# ---------------------------------------------------------------- the parts alone

SERVER_PHASES = r"""
import sys, time, os
t0 = float(sys.argv[1]); port = int(sys.argv[2])
def mark(what): print(f"{what} {time.time() - t0:.3f}", flush=True)
mark("python")
import prefect.server.api.server as srv
mark("import")
from prefect.server.database import interface
from prefect.server.models import block_registration
migrate, register = interface.PrefectDBInterface.run_migrations_upgrade, block_registration.run_block_auto_registration
async def timed_migrate(self):
    mark("migrations_start"); await migrate(self); mark("migrations_end")
async def timed_register(*a, **k):
    mark("blocks_start"); await register(*a, **k); mark("blocks_end")
interface.PrefectDBInterface.run_migrations_upgrade = timed_migrate
block_registration.run_block_auto_registration = timed_register
import uvicorn
app = srv.create_app(ephemeral=True, final=True)
class Ready(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        mark("ready"); self.should_exit = True
Ready(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")).run()
"""


def server_phases(python: Path, home: Path) -> dict[str, float]:
    """The temporary API's start alone, as Prefect runs it (ephemeral, no UI): import, migrations, block types."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="0",
               PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1")
    done = subprocess.run([str(python), "-c", SERVER_PHASES, str(time.time()), str(free_port())], env=env,
                          capture_output=True, text=True, timeout=300)
    return {k: float(v) for k, v in (line.split() for line in done.stdout.splitlines() if line.count(" ") == 1)}


def import_seconds(checkout: Path, modules: str, after: str = "sys") -> float:
    """Seconds to import `modules` in a fresh interpreter of `checkout` (in its folder: `imagegen` is found
    there first), once `after` is imported."""
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run([str(python), "-c", f"import time, {after}; t = time.perf_counter(); import {modules}; "
                           "print(time.perf_counter() - t)"], capture_output=True, text=True, cwd=checkout,
                          timeout=120)
    return float(done.stdout.strip())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- tables

COLUMNS = [("api_spawned", "API process"), ("api_healthy", "API answers"), ("flow_start", "flow start"),
           ("provider_request", "1st provider request"), ("published", "1st published file"), ("exit", "exit")]
PHASES = [  # (label, from, to): the CLI process's critical path, then the API beside it
    ("interpreter + CLI module", None, "main"),
    ("prefect import, CLI set-up", "main", "imports_start"),
    ("  of which: the API's process started", "api_prepare_start", "api_prepare_end"),
    ("  of which: the API told to serve", "api_launch_start", "api_launch_end"),
    ("flow modules import", "imports_start", "imports_end"),
    ("pre-flight checks", "preflight_start", "preflight_end"),
    ("detach (imports prefect.server)", "api_detach_start", "api_detach_end"),
    ("waiting for the API", "api_wait_start", "api_wait_end"),
    ("API ready -> flow start", "api_wait_end", "flow_start"),
    ("flow start -> 1st provider request", "flow_start", "provider_request"),
    ("(beside) API process start -> answers", "api_spawned", "api_healthy"),
]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report(runs: dict[tuple[str, str], list[dict]], names: list[str]) -> None:
    print("\nseconds from process start: median (min-max)\n")
    print("| checkout | home | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for name in names:
        for home in ("fresh", "warm"):
            rows = runs[(name, home)]
            print(f"| {name} | {home} | " + " | ".join(spread([r[k] for r in rows if k in r]) for k, _ in COLUMNS) + " |")
    for other in names[1:]:
        print(f"\nratio of medians, {names[0]} / {other}:")
        for home in ("fresh", "warm"):
            ratios = []
            for key, label in COLUMNS[3:5]:
                a, b = ([r[key] for r in runs[(n, home)] if key in r] for n in (names[0], other))
                ratios.append(f"{label} {statistics.median(a) / statistics.median(b):.2f}x" if a and b else "-")
            print(f"  {home}: " + ", ".join(ratios))
    print("\nbreakdown, seconds (median): the CLI's critical path, then the API started beside it\n")
    print("| phase | " + " | ".join(f"{n} {h}" for n in names for h in ("fresh", "warm")) + " |")
    print("|---|" + "---:|" * (2 * len(names)))
    for label, start, end in PHASES:
        cells = []
        for name in names:
            for home in ("fresh", "warm"):
                values = [r[end] - r.get(start, 0.0) for r in runs[(name, home)]
                          if end in r and (start is None or start in r)]
                cells.append(f"{statistics.median(values):.2f}" if values else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")


def components(checkouts: dict[str, Path], repeat: int) -> None:
    print("\nthe parts alone (each in a fresh interpreter), seconds: median (min-max)\n")
    for name, checkout in checkouts.items():
        python = checkout / ".venv" / "bin" / "python"
        phases: dict[str, dict[str, list[float]]] = {"fresh": {}, "warm": {}}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="fast-start-api-") as tmp:
                for home in ("fresh", "warm"):
                    marks = server_phases(python, Path(tmp))
                    steps = {"python start": marks.get("python"), "import prefect.server": marks["import"] - marks["python"],
                             "migrations": marks["migrations_end"] - marks["migrations_start"],
                             "block types": marks.get("blocks_end", 0) - marks.get("blocks_start", 0),
                             "start -> ready": marks["ready"]}
                    for step, value in steps.items():
                        phases[home].setdefault(step, []).append(value or 0.0)
        print(f"{name}: the temporary API alone (Prefect's command, ephemeral, no UI)")
        for home in ("fresh", "warm"):
            print(f"  {home}: " + ", ".join(f"{k} {spread(v)}" for k, v in phases[home].items()))
        imports = {"prefect": ("prefect", "sys"), "prefect.server.api.server": ("prefect.server.api.server", "prefect"),
                   "flow modules (after prefect)": (", ".join(FLOW_MODULES), "prefect.exceptions, prefect.context"),
                   "great_expectations + pandas": ("great_expectations, pandas", "sys")}
        for label, (modules, after) in imports.items():
            print(f"  import {label}: {spread([import_seconds(checkout, modules, after) for _ in range(repeat)])}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        sys.exit(probe(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh + warm runs per checkout (default 3)")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another checkout with its own .venv, run alternately (may be given more than once)")
    parser.add_argument("--components", action="store_true", help="also time the parts alone")
    parser.add_argument("--no-runs", action="store_true", help="only the parts alone (with --components)")
    args = parser.parse_args()
    checkouts = {f"this ({git_head(REPO)})": REPO}
    for other in args.compare:
        checkouts[f"{other.resolve().name} ({git_head(other)})"] = other.resolve()
    names = list(checkouts)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, nproc {os.cpu_count()}")
    runs: dict[tuple[str, str], list[dict]] = {(n, h): [] for n in names for h in ("fresh", "warm")}
    for rep in range(0 if args.no_runs else args.repeat):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # each checkout leads in turn
            with tempfile.TemporaryDirectory(prefix="fast-start-") as tmp:
                home = Path(tmp) / "home"
                home.mkdir()
                for state in ("fresh", "warm"):
                    work = Path(tmp) / state
                    work.mkdir()
                    result = one_run(checkouts[name], home, work)
                    runs[(name, state)].append(result)
                    print(f"  {name} {state}: " + ", ".join(f"{label} {result[k]:.2f}" for k, label in COLUMNS
                                                           if k in result), flush=True)
                    shutil.rmtree(work / "out", ignore_errors=True)
    if not args.no_runs:
        report(runs, names)
    if args.components:
        components(checkouts, args.repeat)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def git_head(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


if __name__ == "__main__":
    main()
