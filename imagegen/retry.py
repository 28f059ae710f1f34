"""A small retry helper for code that runs outside Prefect task retries (scripts, tests, the CLI).

Provider clients never loop themselves; inside flows, Prefect task retries do this job.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from imagegen.errors import is_transient

T = TypeVar("T")

logger = logging.getLogger(__name__)


def backoff_delay(attempt: int, base_delay: float, max_delay: float, *, retry_after: float | None = None,
                  rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full-jitter exponential backoff,
    never shorter than a server's Retry-After."""
    ceiling = min(max_delay, base_delay * (2 ** (attempt - 1)))
    delay = ceiling * rng()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def call_with_retries(fn: Callable[[], T], attempts: int = 3, base_delay: float = 1.0, *,
                      max_delay: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                      rng: Callable[[], float] = random.random) -> T:
    """Call `fn` up to `attempts` times, retrying only errors for which `is_transient` is true.

    Waits a jittered exponential delay between attempts, and at least `exc.retry_after` when the
    error carries one (a 429's Retry-After). The last error is re-raised unchanged.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay,
                                  retry_after=getattr(exc, "retry_after", None), rng=rng)
            logger.info("attempt %d/%d failed (%s); retrying in %.2fs", attempt, attempts,
                        type(exc).__name__, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
