"""The moment a paid request really goes out, told to the run's budget.

A generator that keeps a pending journal (imagegen.pending) first tries to find an answer paid for
earlier (an NVCF request id polled again, a neuroflash image adopted from the history): that costs
nothing, so it must not be stopped by a spent budget nor counted. Such a generator says so
(`charges_budget_when_sending = True`) and calls `sending_paid_request()` just before each paid send;
imagegen.budget.paid_call counts the call there, and a spent budget raises there, before anything went
out. Outside a paid_call, `sending_paid_request()` does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# The charge of the paid_call in progress in this thread (a context variable: calls in parallel threads
# each see their own).
_charge: ContextVar[Callable[[], None] | None] = ContextVar("imagegen_paid_send_charge", default=None)


def charges_when_sending(generator: object) -> bool:
    """True when `generator` calls `sending_paid_request()` before every paid send it makes."""
    return bool(getattr(generator, "charges_budget_when_sending", False))


def sending_paid_request() -> None:
    """A paid request is about to go out: count it in the budget of the paid_call around this call (raising
    BudgetExhausted or DailyImagesExhausted when none is left). Once per paid_call: a second send within
    one call (an NVCF asset upload, then the request) is already counted."""
    charge = _charge.get()
    if charge is not None:
        charge()


@contextmanager
def charging_when_sent(charge: Callable[[], None]) -> Iterator[None]:
    """Make `charge` what `sending_paid_request()` calls for the duration of one paid call."""
    token = _charge.set(charge)
    try:
        yield
    finally:
        _charge.reset(token)
