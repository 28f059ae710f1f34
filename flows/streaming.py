"""Task streaming for the flows: submit tasks in a bounded window and take them back as they finish.

It also holds what a long batch needs to keep Prefect's per-run bookkeeping flat (lineage records
and cancel events of finished tasks), and reading a finished future's exception without raising.
These reach into Prefect internals (FlowRunContext.run_results, the thread pool's cancel events), so
they live in one place, away from the stage logic.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable
from typing import Any, cast

from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from imagegen.pixelwork import return_free_memory

# separately by imagegen.pixelwork.PIXEL_SLOTS, so memory stays flat as a batch grows.
TASK_THREADS = 48
# Submitted-but-unstarted tasks cost ~90 KB each (future, task run, copied context): keep at most this
# many in flight, so a 1000-master batch holds no more of them than a 100-master one.
STREAM_WINDOW = 2 * TASK_THREADS



def thread_pool() -> TaskRunner[PrefectFuture[Any]]:
    """The flows' task runner: TASK_THREADS threads in this process."""
    # Prefect types TaskRunner as invariant in its future type, so its own documented
    # `task_runner=ThreadPoolTaskRunner(...)` fails a type check although the runner is one.
    return cast("TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=TASK_THREADS))


def future_exception(future: PrefectFuture) -> BaseException | None:
    """The exception the task raised, or None when it completed (waits for it to finish)."""
    future.wait()
    state = future.state
    if state.is_completed():
        return None
    if isinstance(state.data, BaseException):
        return state.data
    try:
        state.result()
    except BaseException as exc:  # Prefect re-raises the task's own exception
        return exc
    return RuntimeError(f"task ended in state {state.name}")


class TaskStream:
    """Submit tasks with at most `window` of them in flight; hand them back in the order they finish.

    The flow reacts to each master as it arrives (measure it, render it) instead of waiting for the
    whole stage, so the pixel work overlaps the provider's rate-limited calls.
    """

    def __init__(self, window: int = STREAM_WINDOW):
        self.window = window
        self.in_flight = 0
        self._finished: queue.Queue = queue.Queue()
        self._settle: dict[int, Callable[[PrefectFuture], None]] = {}

    def has_room(self) -> bool:
        return self.in_flight < self.window

    def submit(self, key: Any, task, *args, **kwargs) -> PrefectFuture:
        future = task.submit(*args, **kwargs)
        self.in_flight += 1
        future.add_done_callback(lambda f: self._finished.put((key, f)))
        return future

    def on_finished(self, future: PrefectFuture, settle: Callable[[PrefectFuture], None]) -> None:
        """Run `settle(future)` in the flow's thread when `future` comes out of next_finished()."""
        self._settle[id(future)] = settle

    def next_finished(self) -> tuple[Any, PrefectFuture]:
        key, future = self._finished.get()
        self.in_flight -= 1
        forget_cancel_events([future.task_run_id])
        if (settle := self._settle.pop(id(future), None)) is not None:
            settle(future)
        return key, future


def forget_finished_results() -> int:
    """Drop Prefect's lineage records of task results that are gone or untrackable; return how many.

    Prefect keeps, for every task result and each object one level inside it, an entry (with a copy
    of the task's final state) in FlowRunContext.run_results until the flow run ends, so it can draw
    an edge when that object is passed to another task. Measured: ~110 KB per master (four tasks),
    +34 % peak RSS at 1000 masters. Entries whose object has died, or that name plain values
    (strings, lists: tracked by id() alone), are no use to us: our tasks pass the models on.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return 0
    stale = [key for key, (_, _, ref) in list(context.run_results.items()) if ref is None or ref() is None]
    for key in stale:
        context.run_results.pop(key, None)
    return len(stale)


def forget_cancel_events(task_run_ids: Iterable[Any]) -> int:
    """Drop the cancel events Prefect's ThreadPoolTaskRunner keeps for these finished task runs.

    The runner keeps a threading.Event per submitted task (to cancel it while it runs) until the
    flow run ends: ~1 KB each, four or more per master. A finished task has nothing to cancel.
    """
    from prefect.context import FlowRunContext

    events = getattr(getattr(FlowRunContext.get(), "task_runner", None), "_cancel_events", None)
    if not isinstance(events, dict):
        return 0
    return sum(events.pop(task_run_id, None) is not None for task_run_id in task_run_ids)


def release_memory() -> None:
    """What a long batch has finished with goes: Prefect's lineage records, the C heap's free pages."""
    forget_finished_results()
    return_free_memory()


def resolved(value: Any) -> Any:
    """A future's result (waiting for it), or the value itself."""
    return value.result() if isinstance(value, PrefectFuture) else value
