"""Waiting on subprocesses and servers in tests, and showing their logs when a wait times out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.1,
             diagnostics: Callable[[], str] = lambda: "") -> Any:
    """Poll `condition` until it returns something truthy; on timeout fail with `diagnostics()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnostics()}")
        time.sleep(interval)


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file, for assertion messages."""
    if not path.exists():
        return ""
    return f"--- last lines of {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
