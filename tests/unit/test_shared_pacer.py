"""The shared pacer's logic on a fake clock and an in-memory slot book (the PostgreSQL book's rules, in
Python): turns spaced so no provider window overflows, a pause begun while a caller slept, a caller
that woke late, and `shared_limiter` choosing the shared schedule only inside `pacing_through`."""

from __future__ import annotations

import pytest

from imagegen.ratelimit import WINDOW_GUARD, SharedPacer, TokenBucket, pacing_through, shared_limiter


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.oversleep: list[float] = []  # extra seconds the next sleeps take (a stalled process)
        self.during_sleep = None  # called once, while the next sleep lasts (another worker acts)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.during_sleep is not None:
            act, self.during_sleep = self.during_sleep, None
            act()
        self.now += seconds + (self.oversleep.pop(0) if self.oversleep else 0.0)


class MemoryBook:
    """imagegen.postgres_pacing's statements on a dict: the slot is max(next slot, pause end, now)."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.next_slot: dict[str, float] = {}
        self.paused_until: dict[str, float] = {}
        self.reserved: list[float] = []

    def reserve(self, account: str, spacing: float) -> float:
        now = self.clock.now
        slot = max(self.next_slot.get(account, now), self.paused_until.get(account, now), now)
        self.next_slot[account] = slot + spacing
        self.reserved.append(slot)
        return slot - now

    def paused_for(self, account: str) -> float:
        return max(0.0, self.paused_until.get(account, 0.0) - self.clock.now)

    def pause(self, account: str, seconds: float) -> None:
        self.paused_until[account] = max(self.paused_until.get(account, 0.0), self.clock.now + seconds)


def pacers(count: int, rate: float, **options) -> tuple[FakeClock, MemoryBook, list[SharedPacer]]:
    """`count` pacers of one account on one book: as many workers on as many machines."""
    clock = FakeClock()
    book = MemoryBook(clock)
    return clock, book, [SharedPacer(book, "nvidia:abc", rate, clock=clock, sleep=clock.sleep, **options)
                         for _ in range(count)]


def grant_times(clock: FakeClock, workers: list[SharedPacer], count: int) -> list[float]:
    times = []
    for i in range(count):
        workers[i % len(workers)].acquire()
        times.append(round(clock.now, 6))
    return times


def test_turns_are_evenly_spaced_across_workers_with_the_window_guard():
    """At 4/min the 5th request starts 60.5 s after the 1st, as TokenBucket's guard has it."""
    clock, _, workers = pacers(3, 4)
    assert grant_times(clock, workers, 9) == pytest.approx([i * 60.5 / 4 for i in range(9)])


@pytest.mark.parametrize("rate", [4, 40, 120])
def test_no_provider_window_ever_holds_more_than_the_rate(rate):
    clock, _, workers = pacers(3, rate)
    times = grant_times(clock, workers, 3 * rate)
    for i, start in enumerate(times):
        assert len([t for t in times[i:] if t < start + 60 + WINDOW_GUARD - 1e-6]) <= rate, start
    # and it costs only the guard: rate per (60 + guard) s, 99 % of the rate
    assert (len(times) - 1) / times[-1] * 60 == pytest.approx(rate * 60 / (60 + WINDOW_GUARD))


def test_a_scaled_window_scales_the_spacing():
    _, _, (worker,) = pacers(1, 600, window_seconds=6.0, guard_seconds=0.5)
    assert worker.spacing == pytest.approx(0.1 * 6.5 / 6.0)


def test_an_idle_account_answers_at_once_and_asks_nothing_more():
    clock, book, (worker,) = pacers(1, 40)
    book.paused_for = None  # would fail if asked: a turn taken now needs no second look
    assert worker.acquire() == 0.0 and clock.now == 0.0


def test_a_pause_begun_while_a_caller_slept_moves_its_turn_past_the_pause():
    clock, book, (first, second) = pacers(2, 60)
    first.acquire()  # slot 0; the next is at ~1.01 s
    clock.during_sleep = lambda: first.pause_for(10.0)  # another worker got a 429 meanwhile
    waited = second.acquire()
    assert clock.now == pytest.approx(10.0) and waited == pytest.approx(10.0)
    assert len(book.reserved) == 3  # its first slot was given up, not used


def test_a_pause_holds_every_worker_of_the_account_but_not_other_accounts():
    clock, book, (worker,) = pacers(1, 60)
    worker.pause_for(30.0)
    other = SharedPacer(book, "neuroflash:client", 60, clock=clock, sleep=clock.sleep)
    assert other.acquire() == 0.0
    assert worker.acquire() == pytest.approx(30.0)


def test_a_caller_that_wakes_late_takes_a_new_turn_instead_of_crowding_the_window():
    clock, book, (first, second) = pacers(2, 60)
    first.acquire()
    clock.oversleep = [WINDOW_GUARD]  # stalled for the whole guard on its way to slot 2
    second.acquire()
    assert len(book.reserved) == 3 and clock.now == pytest.approx(book.reserved[-1])


def test_rebooking_is_bounded():
    """A machine too loaded to ever wake on time, on a busy account, still gets to send."""
    clock, book, (worker,) = pacers(1, 60)
    busy = book.reserve
    book.reserve = lambda account, spacing: busy(account, spacing) or 1.0  # always a queue ahead
    clock.oversleep = [5.0] * 20
    worker.acquire()
    assert len(book.reserved) == 1 + SharedPacer.MAX_REBOOKINGS


def test_rejects_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match="rate_per_minute"):
        SharedPacer(MemoryBook(FakeClock()), "x", 0)


class RecordingPacing:
    def __init__(self):
        self.book = MemoryBook(FakeClock())
        self.closed = False

    def limiter(self, account: str, rate_per_minute: float) -> SharedPacer:
        return SharedPacer(self.book, account, rate_per_minute)

    def close(self) -> None:
        self.closed = True


def test_shared_limiter_paces_through_the_run_s_schedule_only_inside_pacing_through():
    pacing = RecordingPacing()
    with pacing_through(pacing):
        inside = shared_limiter("unit-shared-account", 40)
    assert isinstance(inside, SharedPacer) and inside.book is pacing.book and inside.account == "unit-shared-account"
    assert pacing.closed
    assert isinstance(shared_limiter("unit-shared-account", 40), TokenBucket)
    with pacing_through(None):  # the embedded default: this process's buckets, as before
        assert isinstance(shared_limiter("unit-shared-account", 40), TokenBucket)
