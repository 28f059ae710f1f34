"""A per-run budget of provider calls that stops spending cleanly when it is used up (counted in this
process, or in the catalog's PostgreSQL for every process of the run), counts the calls whose answer
was lost in transit, and counts image calls against the providers' daily budgets."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from imagegen.daily_images import Counted, DailyImages
from imagegen.errors import BudgetExhausted, OutcomeUnknown, StillRunning
from imagegen.paid_sends import charging_when_sent
from imagegen.pending import RECOVERED_KEY

# A paid request whose answer was lost is sent again at most this often per run.
MAX_RESENDS_AFTER_LOST_ANSWER = 1

Result = TypeVar("Result")


class CallCount(Protocol):
    """Where a run's provider calls are counted: this process (`LocalCallCount`), or a database every
    process of the run shares (imagegen.postgres_run_budget)."""

    def take(self) -> bool:
        """Count one more call; False (nothing counted) when the run's budget has none left."""

    def give_back(self) -> None: ...

    def value(self) -> int: ...


class LocalCallCount:
    def __init__(self, max_calls: int | None):
        self.max_calls = max_calls
        self._spent = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.max_calls is not None and self._spent >= self.max_calls:
                return False
            self._spent += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._spent = max(0, self._spent - 1)

    def value(self) -> int:
        return self._spent


class CallBudget:
    """`spent` counts provider calls (a call whose answer was lost stays counted: it may have been
    billed); `outcome_unknown` counts those lost answers, `recovered` the answers found again for free;
    `by_provider` splits the calls by the provider called (the run's report plots it).
    With `daily`, every image call is also counted against its provider's daily budget."""

    def __init__(self, max_calls: int | None, *, count: CallCount | None = None, daily: DailyImages | None = None):
        self.max_calls = max_calls
        self.count = count if count is not None else LocalCallCount(max_calls)
        self.daily = daily
        self.outcome_unknown = 0
        self.recovered = 0
        self.by_provider: Counter[str] = Counter()
        self._lost: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        return self.count.value()

    def spend(self, provider: str = "", *, image: bool = False) -> Counted | None:
        """Count one provider call (and, for an `image` call, one image of the provider's day), or raise
        BudgetExhausted or DailyImagesExhausted (never transient) when none is left."""
        if not self.count.take():
            raise BudgetExhausted(
                f"the run's budget of {self.max_calls} provider calls is spent; "
                "raise IMAGEGEN_MAX_PROVIDER_CALLS or --max-provider-calls to allow more",
                provider=provider)
        with self._lock:
            self.by_provider[provider] += 1
        if not image or self.daily is None:
            return None
        try:
            return self.daily.count(provider)
        except BaseException:
            self.give_back(None, provider)
            raise

    def answer_lost(self, request_key: str) -> int:
        """Count one lost answer; returns how many answers to this request were lost in this run."""
        with self._lock:
            self.outcome_unknown += 1
            self._lost[request_key] += 1
            return self._lost[request_key]

    def give_back(self, counted: Counted | None = None, provider: str = "") -> None:
        """The call just counted sent nothing paid (it polled a request paid earlier)."""
        self.count.give_back()
        with self._lock:
            if self.by_provider[provider] > 0:
                self.by_provider[provider] -= 1
        if self.daily is not None and counted is not None:
            self.daily.give_back(counted)

    def answer_recovered(self) -> None:
        """A call found a paid answer again without paying (paid_call gives back its count, if it took one)."""
        with self._lock:
            self.recovered += 1


class _Charge:
    """The one count of a paid call, taken before the call or when its generator sends (idempotent)."""

    def __init__(self, budget: CallBudget, provider: str, image: bool):
        self.budget, self.provider, self.image = budget, provider, image
        self.taken = False
        self.counted: Counted | None = None

    def __call__(self) -> None:
        if not self.taken:
            self.counted = self.budget.spend(self.provider, image=self.image)
            self.taken = True

    def give_back(self) -> None:
        if self.taken:
            self.budget.give_back(self.counted, self.provider)
            self.taken, self.counted = False, None


def paid_call(budget: CallBudget, provider: str, call: Callable[[], Result], *, image: bool = True,
              charged_when_sent: bool = False) -> Result:
    """Spend one call of `budget` on `call()` (a generator's generate or edit; `image=False` for a call
    that makes no image, a VLM review).

    The call is counted before `call()` runs, or, with `charged_when_sent` (a generator that keeps a
    pending journal: imagegen.paid_sends), only when it really sends a paid request. So resuming a request
    paid earlier (an NVCF id polled again, a neuroflash history image adopted) goes ahead on a spent budget
    and counts nothing; a spent budget stops only a new send.

    A lost answer (OutcomeUnknown) stays counted and is raised as it is, so the task's retry sends the
    request again; the second loss of the same request in this run is raised as final (not retried).
    A call that only polled a request paid earlier (StillRunning, or a result whose metadata says it
    was recovered: RECOVERED_KEY) gives back its call if it was counted.
    """
    charge = _Charge(budget, provider, image)
    if not charged_when_sent:
        charge()
    try:
        with charging_when_sent(charge):
            result = call()
    except StillRunning:
        charge.give_back()
        raise
    except OutcomeUnknown as exc:
        losses = budget.answer_lost(exc.request_key)
        if losses > MAX_RESENDS_AFTER_LOST_ANSWER:
            raise exc.not_sent_again(losses) from None
        raise
    metadata: Any = getattr(result, "metadata", None)
    if isinstance(metadata, dict) and metadata.get(RECOVERED_KEY):
        charge.give_back()  # it was not a provider call
        budget.answer_recovered()
    return result


_budgets: dict[str, CallBudget] = {}
_lock = threading.Lock()


def use_budget_for_run(run_id: str, budget: CallBudget) -> CallBudget:
    """Make `budget` the one every task of flow run `run_id` spends from (the flow's choice of counts)."""
    with _lock:
        _budgets[run_id] = budget
    return budget


def budget_for_run(run_id: str, max_calls: int | None = None) -> CallBudget:
    """The budget shared by every task of flow run `run_id` (created by the flow, read by tasks)."""
    with _lock:
        budget = _budgets.get(run_id)
        if budget is None:
            budget = _budgets[run_id] = CallBudget(max_calls)
        return budget


def release_run(run_id: str) -> None:
    """Forget run `run_id`'s budget; a shared count closes its connections, a daily budget gives back
    what the run reserved and did not use."""
    with _lock:
        budget = _budgets.pop(run_id, None)
    if budget is None:
        return
    try:
        if budget.daily is not None:
            budget.daily.release()
    finally:
        if (close := getattr(budget.count, "close", None)) is not None:
            close()
