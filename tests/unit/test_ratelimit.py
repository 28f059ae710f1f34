"""The client-side pacer: even spacing at the provider's rate, and never more than `rate` requests
in any sliding window, checked on a fake clock (no sleeping)."""

from __future__ import annotations

import threading

import pytest

from imagegen.ratelimit import WINDOW_SECONDS, TokenBucket, shared_limiter


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def grants(bucket: TokenBucket, clock: FakeClock, count: int, gap: float = 0.0) -> list[float]:
    times = []
    for _ in range(count):
        bucket.acquire()
        times.append(round(clock.now, 6))
        clock.now += gap
    return times


def test_even_spacing_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock, sleep=clock.sleep)
    assert grants(bucket, clock, 5) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_request_n_plus_one_waits_for_the_window_guard_not_just_the_spacing():
    """At 4/min, even spacing alone would start request 5 exactly 60 s after request 1."""
    clock = FakeClock()
    bucket = TokenBucket(4, clock=clock, sleep=clock.sleep, window_seconds=60.5)
    assert grants(bucket, clock, 9) == [0.0, 15.0, 30.0, 45.0, 60.5, 75.5, 90.5, 105.5, 121.0]


@pytest.mark.parametrize("burst", [1, 3, 10])
def test_no_window_ever_holds_more_than_the_rate(burst):
    clock = FakeClock()
    rate = 10
    bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep, window_seconds=WINDOW_SECONDS)
    times = grants(bucket, clock, 60, gap=0.7)
    for i, start in enumerate(times):
        inside = [t for t in times[i:] if t < start + WINDOW_SECONDS]
        assert len(inside) <= rate, (start, inside)
    # and the guard costs little: 60 requests at 10/min take ~6 windows, not 6 x 60 s + much more
    assert times[-1] <= 59 / rate * 60 + 6 * (WINDOW_SECONDS - 60) + 0.7


def test_retry_after_pauses_everyone():
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.pause_for(10)
    assert bucket.acquire() == pytest.approx(10.0)
    assert clock.now == pytest.approx(10.0)


def test_rejects_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match="rate_per_minute"):
        TokenBucket(0)


def test_one_shared_bucket_per_account_with_the_window_guard():
    a = shared_limiter("unit-test-account", 40)
    assert shared_limiter("unit-test-account", 40) is a
    assert a.window_seconds == WINDOW_SECONDS and a.rate_per_second == pytest.approx(40 / 60)
    assert shared_limiter("unit-test-account", 20) is not a  # a changed rate makes a new bucket


def test_threads_share_the_bucket_and_the_window():
    """Four threads on one real-clock bucket: every acquire is granted, none inside a full window."""
    bucket = TokenBucket(60_000, window_seconds=WINDOW_SECONDS)  # 1000/s: the test takes ~0.1 s
    got = []

    def worker():
        for _ in range(25):
            bucket.acquire()
            got.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 100 and len(bucket._granted) == 100
