"""Interrupts: a run ends within seconds of Ctrl-C, SIGTERM or a cancel, whatever its task threads are doing.

Prefect records an interrupted flow run's end and then joins the run's task threads; a thread inside a
provider call or an encode cannot be stopped and may take a minute. So the first interrupt arms a
watchdog that ends the process GRACE_SECONDS later, through the finisher the entry point registered
(the CLI prints one line and stops its temporary API). Ending mid-write is safe: files are written to a
temporary name and renamed, a paid master is in the ledger before anything uses it, and a rerun of the
same brief finishes what is missing without paying again.
"""

from __future__ import annotations

import logging
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
_pending_code: int | None = None  # the exit code of the interrupt under way, once one has arrived


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of the interrupt under way or that `exc` is (130 for Ctrl-C, 143 for SIGTERM and a
    worker's cancel); None when nothing interrupted the run.

    An interrupt that lands inside Prefect's own bookkeeping can come out of the flow as another
    exception (seen: "Task run is not set" from a task run being created), so once an interrupt has
    arrived, whatever ends the run is reported as that interrupt.
    """
    if _pending_code is not None:
        return _pending_code
    if isinstance(exc, (Terminated, TerminationSignal)):
        return EXIT_SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    return None


def pending_interrupt() -> int | None:
    """The exit code of the interrupt under way, or None."""
    return _pending_code


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
    global _watchdog, _pending_code

    def expire() -> None:
        time.sleep(grace)
        end_process(code)

    with _watchdog_lock:
        if _watchdog is None:
            _pending_code = code
            _watchdog = threading.Thread(target=expire, name="imagegen-interrupt-watchdog", daemon=True)
            _watchdog.start()


@contextmanager
def ending_promptly() -> Iterator[None]:
    """Around a flow body: an interrupt still propagates (Prefect records the run as crashed or cancelled),
    and the process ends within GRACE_SECONDS even if task threads are still busy."""
    quiet_tracebacks_once_interrupted()
    try:
        yield
    except (KeyboardInterrupt, TerminationSignal) as exc:
        arm_watchdog(exit_code_for(exc) or EXIT_SIGINT)
        raise


class _NoTracebackOnceInterrupted(logging.Filter):
    """Once an interrupt is under way, log records keep their message but lose their traceback: what the
    interrupt broke inside Prefect's bookkeeping is not news to the person who pressed Ctrl-C."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pending_code is not None and record.exc_info:
            record.exc_info, record.exc_text = None, None
        return True


def quiet_tracebacks_once_interrupted() -> None:
    """Put that filter on every handler Prefect's logging set up (idempotent)."""
    loggers = [logging.getLogger(), *(logger for name, logger in logging.root.manager.loggerDict.items()
                                      if name.startswith("prefect") and isinstance(logger, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, _NoTracebackOnceInterrupted) for f in handler.filters):
                handler.addFilter(_NoTracebackOnceInterrupted())


def raise_interrupt(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM handler for a command's main thread: arm the watchdog at once (cleanup on the way out,
    such as waiting for renders in flight, must not hold the exit up), then unwind as KeyboardInterrupt.
    Prefect replaces the SIGTERM handler with its own while a flow runs; `ending_promptly` covers that."""
    arm_watchdog(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
