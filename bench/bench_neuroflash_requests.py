"""HTTP requests per neuroflash endpoint for one `imagegen run examples/spring-launch.yaml --provider neuroflash`.

The run goes through the CLI in this process against the neuroflash emulator (tests/emulators/neuroflash.py,
served on a loopback port) and a temporary Prefect API (prefect_test_harness, its own PREFECT_HOME,
analytics off). The emulator counts every request it answers, by endpoint; an image is a paid call
(a generation or an edit). Target (issue 11): token requests <= 1 and HTTP requests <= 2 per image
+ 6 per run. With `--rerun` the same command runs a second time on the same output folder (cached
masters: no paid call) and its requests are counted apart; what the process shares per account (token,
workspace, model list) is forgotten first, since a second `imagegen run` is a new process.

    .venv/bin/python bench/bench_neuroflash_requests.py            # ~1-2 min
    .venv/bin/python bench/bench_neuroflash_requests.py --rerun
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIENT_ID, CLIENT_SECRET = "nf-bench-client", "nf-bench-secret"
BRIEF = REPO / "examples" / "spring-launch.yaml"
# Endpoints in the order a run meets them; paid ones make images.
ENDPOINTS = ("token", "workspaces", "models", "quotas", "generate", "edit", "storage", "view", "history", "delete")
PAID = ("generate", "edit")


def run_once(out: Path) -> tuple[int, dict | None, str]:
    """The CLI's exit code, its JSON summary and its stderr."""
    from imagegen_flows.deployments.cli import main as cli_main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli_main(["run", str(BRIEF), "--provider", "neuroflash", "--out", str(out), "--json"])
    text = stdout.getvalue().strip()
    return code, (json.loads(text) if text else None), stderr.getvalue()


def table(counts: Counter, label: str) -> list[str]:
    images = sum(counts[e] for e in PAID)
    total = sum(counts.values())
    bound = 2 * images + 6
    lines = [f"### {label}", "", "| endpoint | requests |", "|---|---:|"]
    lines += [f"| {e} | {counts[e]} |" for e in ENDPOINTS if counts[e]]
    lines += [f"| {e} (other) | {n} |" for e, n in sorted(counts.items()) if e not in ENDPOINTS]
    lines += [f"| **total** | **{total}** |", "",
              f"images (paid calls): {images}; token requests: {counts['token']} (target <= 1); "
              f"total {total} vs target 2 x {images} + 6 = {bound}: {'met' if total <= bound else 'NOT met'}", ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rerun", action="store_true", help="run the same command again and count it apart")
    parser.add_argument("--long-side", type=int, default=2048,
                        help="long side of the emulator's images (2048 passes the brief's 1024 px minimum)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-neuroflash-home-"))
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL="WARNING", PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"))
    for name in [n for n in os.environ if n.startswith(("IMAGEGEN_", "NEUROFLASH_")) or n == "PREFECT_API_URL"]:
        os.environ.pop(name)

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from imagegen.providers.neuroflash_account import forget_accounts
    from tests.emulators.neuroflash import NeuroflashEmulator
    from tests.emulators.serve import serve_asgi

    emulator = NeuroflashEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, image_long_side=args.long_side,
                                  available=1000, limit=1000, limit_daily=None)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-neuroflash-") as tmp, serve_asgi(emulator.app) as url, \
            prefect_test_harness(server_startup_timeout=180), \
            temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        os.environ.update(NEUROFLASH_CLIENT_ID=CLIENT_ID, NEUROFLASH_CLIENT_SECRET=CLIENT_SECRET,
                          IMAGEGEN_NEUROFLASH_API_URL=f"{url}/api",
                          IMAGEGEN_NEUROFLASH_TOKEN_URL=f"{url}/oauth/v2/token",
                          IMAGEGEN_NEUROFLASH_RATE_PER_MINUTE="6000")
        out = Path(tmp) / "out"
        for label in ("first run", "rerun (same command, same --out, a new process)")[: 2 if args.rerun else 1]:
            forget_accounts()
            emulator.calls.clear()
            code, summary, err = run_once(out)
            if summary is None:
                print(f"run failed (exit {code}):\n{err[-2000:]}", file=sys.stderr)
                return 1
            lines += table(Counter(emulator.calls), label)
            lines.append(f"exit {code}; masters {summary['masters']}, published {summary['published']}, "
                         f"quarantined {summary['quarantined']}, provider calls {summary['provider_calls']}")
            lines.append("")
    print(f"# neuroflash requests, {BRIEF.relative_to(REPO)} --provider neuroflash "
          f"(emulator images {args.long_side} px on the long side)\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
