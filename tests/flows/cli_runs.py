"""`imagegen run ... --json` in this process, for the flow tests (on the session's Prefect harness)."""

from __future__ import annotations

import json
from pathlib import Path

from imagegen_flows.deployments.cli import main as cli_main


def run(capsys, brief: Path, out: Path, *extra: str) -> tuple[int, dict | None, str]:
    """(exit code, the JSON summary or None, stderr)."""
    code = cli_main(["run", str(brief), "--out", str(out), "--json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def run_ok(capsys, brief: Path, out: Path, *extra: str) -> dict:
    """The JSON summary of a run that must exit 0 (its stderr in the failure otherwise)."""
    code, summary, err = run(capsys, brief, out, *extra)
    assert code == 0 and summary is not None, err
    return summary
