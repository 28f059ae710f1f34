"""Client-side pacing shared by every task that calls the same provider account.

A Prefect global concurrency limit's rate_limit() delivers only ~29-31/min of a 40/min limit here
(bench/bench_rate_limit.py, Prefect 3.8 and 3.9 alike), so providers are paced in the client: one
token bucket per account per process, plus a pause that a 429's Retry-After imposes on every caller
at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque


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

_registry: dict[str, TokenBucket] = {}
_registry_lock = threading.Lock()


def shared_limiter(account: str, rate_per_minute: float, burst: int = 1) -> TokenBucket:
    """The one bucket for `account` in this process (created on first use)."""
    with _registry_lock:
        bucket = _registry.get(account)
        if bucket is None or bucket.rate_per_second != rate_per_minute / 60.0:
            bucket = TokenBucket(rate_per_minute, burst, window_seconds=WINDOW_SECONDS)
            _registry[account] = bucket
        return bucket
