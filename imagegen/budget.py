"""A per-run budget of provider calls that stops spending cleanly when it is used up."""

from __future__ import annotations

import threading

from imagegen.errors import BudgetExhausted


class CallBudget:
    def __init__(self, max_calls: int | None):
        self.max_calls = max_calls
        self.spent = 0
        self._lock = threading.Lock()

    def spend(self, provider: str = "") -> None:
        """Count one provider call, or raise BudgetExhausted (never transient) when none is left."""
        with self._lock:
            if self.max_calls is not None and self.spent >= self.max_calls:
                raise BudgetExhausted(
                    f"the run's budget of {self.max_calls} provider calls is spent; "
                    "raise IMAGEGEN_MAX_PROVIDER_CALLS or --max-provider-calls to allow more",
                    provider=provider)
            self.spent += 1


_budgets: dict[str, CallBudget] = {}
_lock = threading.Lock()


def budget_for_run(run_id: str, max_calls: int | None = None) -> CallBudget:
    """The budget shared by every task of flow run `run_id` (created by the flow, read by tasks)."""
    with _lock:
        budget = _budgets.get(run_id)
        if budget is None:
            budget = _budgets[run_id] = CallBudget(max_calls)
        return budget


def release_run(run_id: str) -> None:
    with _lock:
        _budgets.pop(run_id, None)
