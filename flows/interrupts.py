"""Interrupts: a run ends within seconds of Ctrl-C, SIGTERM or a cancel, whatever its task threads are doing.

Prefect records an interrupted flow run's end and then joins the run's task threads; a thread inside a
provider call or an encode cannot be stopped and may take a minute. So the first interrupt arms a
watchdog that ends the process GRACE_SECONDS later, through the finisher the entry point registered
(the CLI prints one line and stops its temporary API). Ending mid-write is safe: files are written to a
temporary name and renamed, a paid master is in the ledger before anything uses it, and a rerun of the
same brief finishes what is missing without paying again.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect.exceptions import TerminationSignal

GRACE_SECONDS = 2.0
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM  # 130, 143: what shells report


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a flow run (where Prefect's own handler is not installed), raised in the main thread."""


_finisher: Callable[[int], None] | None = None
_watchdog_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def exit_code_for(exc: BaseException) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM and a worker's cancel."""
    return EXIT_SIGTERM if isinstance(exc, (Terminated, TerminationSignal)) else EXIT_SIGINT


def set_finisher(finisher: Callable[[int], None] | None) -> None:
    """What ends the process on an interrupt (it must not return); None: flush and exit."""
    global _finisher
    _finisher = finisher


def end_process(code: int) -> None:
    """End the process now with `code`, through the registered finisher."""
    if _finisher is not None:
        _finisher(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)  # not sys.exit: interpreter shutdown would join the task threads again


def arm_watchdog(code: int, grace: float = GRACE_SECONDS) -> None:
    """End the process `grace` seconds from now unless it has ended by then (armed once per process)."""
    global _watchdog

    def expire() -> None:
        time.sleep(grace)
        end_process(code)

    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = threading.Thread(target=expire, name="imagegen-interrupt-watchdog", daemon=True)
            _watchdog.start()


@contextmanager
def ending_promptly() -> Iterator[None]:
    """Around a flow body: an interrupt still propagates (Prefect records the run as crashed or cancelled),
    and the process ends within GRACE_SECONDS even if task threads are still busy."""
    try:
        yield
    except (KeyboardInterrupt, TerminationSignal) as exc:
        arm_watchdog(exit_code_for(exc))
        raise


def raise_interrupt(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM handler for a command's main thread: arm the watchdog at once (cleanup on the way out,
    such as waiting for renders in flight, must not hold the exit up), then unwind as KeyboardInterrupt.
    Prefect replaces the SIGTERM handler with its own while a flow runs; `ending_promptly` covers that."""
    arm_watchdog(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
