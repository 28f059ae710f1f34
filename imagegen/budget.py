"""A per-run budget of provider calls that stops spending cleanly when it is used up, and counts
the calls whose answer was lost in transit."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from imagegen.errors import BudgetExhausted, OutcomeUnknown, StillRunning
from imagegen.pending import RECOVERED_KEY

# A paid request whose answer was lost is sent again at most this often per run.
MAX_RESENDS_AFTER_LOST_ANSWER = 1

Result = TypeVar("Result")


class CallBudget:
    """`spent` counts provider calls (a call whose answer was lost stays counted: it may have been
    billed); `outcome_unknown` counts those lost answers, `recovered` the answers found again for free;
    `by_provider` splits `spent` by the provider called (the run's report plots it)."""

    def __init__(self, max_calls: int | None):
        self.max_calls = max_calls
        self.spent = 0
        self.outcome_unknown = 0
        self.recovered = 0
        self.by_provider: Counter[str] = Counter()
        self._lost: Counter[str] = Counter()
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
            self.by_provider[provider] += 1

    def answer_lost(self, request_key: str) -> int:
        """Count one lost answer; returns how many answers to this request were lost in this run."""
        with self._lock:
            self.outcome_unknown += 1
            self._lost[request_key] += 1
            return self._lost[request_key]

    def give_back(self, provider: str = "") -> None:
        """The call just counted sent nothing paid (it polled a request paid earlier)."""
        with self._lock:
            self.spent = max(0, self.spent - 1)
            if self.by_provider[provider] > 0:
                self.by_provider[provider] -= 1

    def answer_recovered(self, provider: str = "") -> None:
        """The call just counted found a paid answer again without paying: it was not a provider call."""
        self.give_back(provider)
        with self._lock:
            self.recovered += 1


def paid_call(budget: CallBudget, provider: str, call: Callable[[], Result]) -> Result:
    """Spend one call of `budget` on `call()` (a generator's generate or edit).

    A lost answer (OutcomeUnknown) stays counted and is raised as it is, so the task's retry sends the
    request again; the second loss of the same request in this run is raised as final (not retried).
    A call that only polled a request paid earlier (StillRunning, or a result whose metadata says it
    was recovered: RECOVERED_KEY) gives its call back.
    """
    budget.spend(provider)
    try:
        result = call()
    except StillRunning:
        budget.give_back(provider)
        raise
    except OutcomeUnknown as exc:
        losses = budget.answer_lost(exc.request_key)
        if losses > MAX_RESENDS_AFTER_LOST_ANSWER:
            raise exc.not_sent_again(losses) from None
        raise
    metadata: Any = getattr(result, "metadata", None)
    if isinstance(metadata, dict) and metadata.get(RECOVERED_KEY):
        budget.answer_recovered(provider)
    return result


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
