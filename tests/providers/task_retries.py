"""Task retries without Prefect: call a provider again while its error is transient, as the tasks do.

The real policy is `imagegen_flows.tasks.retrying.retry_if_transient` (Prefect task retries on
`is_transient`); provider tests use this stand-in to show that a transient failure recovers on a
retry and that a non-transient one is never repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from imagegen.errors import is_transient

T = TypeVar("T")


def retry_while_transient(call: Callable[[], T], attempts: int = 3) -> T:
    """`call()` up to `attempts` times while it raises a transient error; the last error is re-raised."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
    raise AssertionError("unreachable")
