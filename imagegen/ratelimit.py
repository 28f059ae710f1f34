"""Client-side pacing shared by every task that calls the same provider account.

A Prefect global concurrency limit's rate_limit() delivers only ~29-31/min of a 40/min limit here
(bench/bench_rate_limit.py, Prefect 3.8 and 3.9 alike), so providers are paced in the client: one
token bucket per account per process, plus a pause that a 429's Retry-After imposes on every caller
at once. While a run paces accounts through a shared slot book (`pacing_through`: the catalog's
PostgreSQL, imagegen.postgres_pacing), `shared_limiter` hands out a `SharedPacer` on that book
instead, so every process on every machine takes its turn from one schedule per account.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Protocol


class RateLimiter(Protocol):
    """What the clients need of an account's pacer (a TokenBucket, a SharedPacer; tests pass their own)."""

    def acquire(self) -> float: ...

    def pause_for(self, seconds: float) -> None: ...


class TokenBucket:
    """`rate_per_minute` tokens per minute, at most `burst` at once. Thread-safe.

    With `window_seconds`, also at most `rate_per_minute` tokens within any `window_seconds`: the
    provider's own sliding window, seen from our side with room for network jitter.
    """

    def __init__(self, rate_per_minute: float, burst: int = 1, clock=time.monotonic, sleep=time.sleep,
                 window_seconds: float | None = None):
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_second = rate_per_minute / 60.0
        self.burst = max(1, burst)
        self.window_seconds = window_seconds
        self._window_capacity = max(1, math.floor(rate_per_minute))
        self._granted: deque[float] = deque(maxlen=self._window_capacity)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def _window_delay(self, now: float) -> float:
        """How long until one more token fits in the sliding window (0 when it fits now)."""
        if self.window_seconds is None or len(self._granted) < self._window_capacity:
            return 0.0
        return max(0.0, self._granted[0] + self.window_seconds - now)

    def pause_for(self, seconds: float) -> None:
        """Stop handing out tokens for `seconds` (a provider said Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
            self._tokens = 0.0

    def acquire(self) -> float:
        """Block until a token is free; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_second)
                    self._updated = now
                    delay = self._window_delay(now)
                    if self._tokens >= 1.0 and delay == 0.0:
                        self._tokens -= 1.0
                        self._granted.append(now)
                        return waited
                    delay = max(delay, (1.0 - self._tokens) / self.rate_per_second)
            self._sleep(delay)
            waited += delay


# Pace at the provider's rate, evenly, and never start more than `rate` requests within any
# 60 s + WINDOW_GUARD. Even pacing alone puts request k+N ~60.0 s after request k, so any jitter that
# delays k on its way crosses the provider's sliding window (measured: one 429 per 100 requests at
# 40/min). Pacing 3 % under the rate cured that at 3 % of throughput; the guard costs ~0.5 s per
# `rate` requests instead (0.3 % at 40/min).
WINDOW_GUARD = 0.5
WINDOW_SECONDS = 60.0 + WINDOW_GUARD

PROVIDER_WINDOW_SECONDS = 60.0  # a provider's "N per minute": at most N within any 60 s


class SlotBook(Protocol):
    """One schedule of request slots per account, shared by everyone who paces through it. Times are the
    book's own (a database server's clock): callers only ever see seconds from now."""

    def reserve(self, account: str, spacing: float) -> float:
        """Take the account's next free slot (not before now, nor before a pause ends) and move the next
        one `spacing` seconds after it; the seconds from now until the slot taken."""
        ...

    def paused_for(self, account: str) -> float:
        """Seconds until the account's pause (a 429's Retry-After) ends; 0 when there is none."""
        ...

    def pause(self, account: str, seconds: float) -> None:
        """No slot of the account starts within the next `seconds`."""
        ...


class SharedPacer:
    """Paces one account through a SlotBook: any number of callers in any number of processes.

    Slots are `spacing` = 60/rate x (window + guard)/window apart, so any `rate x window/60` + 1
    consecutive slots span more than the provider's window plus `guard_seconds`: its sliding window
    never holds more than it allows, with `guard_seconds` of room for a late sender or network jitter
    (the same guard as TokenBucket's, at the same cost: 0.8 % of the rate with the defaults).

    After sleeping until its slot, a caller looks again before it sends: a pause (another worker's
    429) begun meanwhile, or a wake-up more than half the guard late (a stalled process), makes it
    give the slot up and reserve another, at most `MAX_REBOOKINGS` times.
    """

    MAX_REBOOKINGS = 5

    def __init__(self, book: SlotBook, account: str, rate_per_minute: float, *,
                 window_seconds: float = PROVIDER_WINDOW_SECONDS, guard_seconds: float = WINDOW_GUARD,
                 clock=time.monotonic, sleep=time.sleep):
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.book = book
        self.account = account
        self.rate_per_minute = float(rate_per_minute)
        self.guard_seconds = guard_seconds
        self.spacing = 60.0 / rate_per_minute * (window_seconds + guard_seconds) / window_seconds
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> float:
        """Block until this caller's slot; return the seconds waited."""
        started = self._clock()
        for attempt in range(self.MAX_REBOOKINGS + 1):
            delay = self.book.reserve(self.account, self.spacing)
            if delay <= 0:  # reserved just now: after any pause, nothing to look at again
                break
            due = self._clock() + delay
            self._sleep(delay)
            late = self._clock() - due
            if attempt == self.MAX_REBOOKINGS:
                break
            if self.book.paused_for(self.account) > 0 or late > self.guard_seconds / 2:
                continue
            break
        return self._clock() - started

    def pause_for(self, seconds: float) -> None:
        """Every caller of the account, in every process, waits `seconds` (a provider said Retry-After)."""
        self.book.pause(self.account, seconds)


class AccountPacing(Protocol):
    """A shared schedule for provider accounts (imagegen.postgres_pacing.PostgresPacing)."""

    def limiter(self, account: str, rate_per_minute: float) -> RateLimiter: ...

    def close(self) -> None: ...


_registry: dict[str, TokenBucket] = {}
_registry_lock = threading.Lock()
_pacings: list[AccountPacing] = []  # the shared schedules of the runs in this process, latest last


@contextlib.contextmanager
def pacing_through(pacing: AccountPacing | None) -> Iterator[None]:
    """While inside, `shared_limiter` paces every account through `pacing` (None: this process's buckets,
    as before). Closed on the way out. Runs in one process that overlap share the latest one's."""
    if pacing is None:
        yield
        return
    with _registry_lock:
        _pacings.append(pacing)
    try:
        yield
    finally:
        with _registry_lock:
            _pacings.remove(pacing)
        pacing.close()


def shared_limiter(account: str, rate_per_minute: float, burst: int = 1) -> RateLimiter:
    """The account's pacer: its turn in the shared schedule while a run paces through one
    (`pacing_through`), else the one bucket for `account` in this process (created on first use)."""
    with _registry_lock:
        pacing = _pacings[-1] if _pacings else None
    if pacing is not None:
        return pacing.limiter(account, rate_per_minute)
    with _registry_lock:
        bucket = _registry.get(account)
        if bucket is None or bucket.rate_per_second != rate_per_minute / 60.0:
            bucket = TokenBucket(rate_per_minute, burst, window_seconds=WINDOW_SECONDS)
            _registry[account] = bucket
        return bucket
