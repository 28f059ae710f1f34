"""One retry policy for every task that talks to the outside world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from imagegen.errors import is_transient

# Three retries at ~2 s, 4 s, 8 s (+-50 % jitter): long enough for a 429 storm or a 5xx blip to pass,
# short enough that a real outage reaches the fallback chain quickly.
RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=2)
RETRY_JITTER = 0.5


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry_condition_fn: retry timeouts, transport errors and 408/425/429/5xx, nothing else.

    Retrying a 401, a 422, a content filter or an exhausted quota only burns time and quota.
    """
    exc = state.data if isinstance(state.data, BaseException) else None
    return exc is not None and is_transient(exc)


class RetryOptions(TypedDict):
    """The retry keywords of `@task`, typed so that `**RETRY_OPTIONS` is checked against its signature."""

    retries: int
    retry_delay_seconds: Callable[[int], list[float]]
    retry_jitter_factor: float
    retry_condition_fn: Callable[[Task[..., Any], TaskRun, State[Any]], bool]


RETRY_OPTIONS = RetryOptions(
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=RETRY_JITTER,
    retry_condition_fn=retry_if_transient,
)
