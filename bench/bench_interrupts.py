"""How fast an interrupted `imagegen run` ends: Ctrl-C to its process group, SIGTERM to it alone.

Each scenario starts the real command on the embedded defaults (temporary Prefect API, `local` provider),
waits for a marker in its output (the first master generated, or the first master published), sends the
signal and times the exit. Target (issue #16): within 5 s, exit 130 / 143, one line, no traceback, no
process left. Before the fix the same scenarios took 79-219 s (the temporary API died first from the
group's SIGINT and the run retried its API calls).

    .venv/bin/python bench/bench_interrupts.py            # 2 repeats per scenario
    .venv/bin/python bench/bench_interrupts.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCENARIOS = [  # (name, marker in the output, signal, to the whole group?)
    ("Ctrl-C (group) during generate", "[generate] 1/", signal.SIGINT, True),
    ("SIGTERM (CLI) during generate", "[generate] 1/", signal.SIGTERM, False),
    ("Ctrl-C (group) during publish", "[publish] 1/", signal.SIGINT, True),
    ("SIGTERM (group) during publish", "[publish] 1/", signal.SIGTERM, True),
]


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found] + [d for p in found for d in descendants(int(p))]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one(marker: str, sig: int, group: bool, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(work / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([str(BIN / "imagegen"), "run", str(REPO / "examples" / "spring-launch.yaml"),
                                "--out", str(work / "out")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    output = bytearray()
    reader = threading.Thread(target=lambda: [output.extend(c) for c in iter(lambda: process.stdout.read1(65536), b"")],
                              daemon=True)
    reader.start()
    while marker.encode() not in output and process.poll() is None:
        time.sleep(0.05)
    if process.poll() is not None:
        return {"error": f"ended before {marker!r}"}
    children = descendants(process.pid)
    sent = time.monotonic()
    os.killpg(process.pid, sig) if group else os.kill(process.pid, sig)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    seconds = time.monotonic() - sent
    reader.join(5)
    text = output.decode(errors="replace")
    left = [c for c in children if alive(c)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return {"seconds": seconds, "code": process.returncode, "traceback": "Traceback" in text,
            "line": text.count("interrupted: "), "left": len(left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{'scenario':34} {'median s':>9} {'max s':>7} {'exit':>6} {'lines':>6} {'tracebacks':>10} {'left':>5}")
    for name, marker, sig, group in SCENARIOS:
        results = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-interrupts-") as work:
                results.append(one(marker, sig, group, Path(work)))
        done = [r for r in results if "seconds" in r]
        if not done:
            print(f"{name:34} {results[0]['error']}")
            continue
        times = [r["seconds"] for r in done]
        print(f"{name:34} {statistics.median(times):9.1f} {max(times):7.1f} "
              f"{'/'.join(sorted({str(r['code']) for r in done})):>6} {sum(r['line'] for r in done):>6} "
              f"{sum(r['traceback'] for r in done):>10} {sum(r['left'] for r in done):>5}")


if __name__ == "__main__":
    main()
