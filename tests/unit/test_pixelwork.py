"""The pixel-work slots: a fixed number at once, and urgent work (the gate's) served first."""

from __future__ import annotations

import threading
import time

from imagegen.pixelwork import PixelSlots


def wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_urgent_waiters_go_before_those_that_came_earlier():
    slots = PixelSlots(1)
    order: list[str] = []

    def work(name: str, urgent: bool) -> None:
        if urgent:
            with slots.urgent():
                order.append(name)
        else:
            with slots:
                order.append(name)

    slots.acquire()  # the one slot is busy
    render = threading.Thread(target=work, args=("render", False))
    render.start()
    wait_until(lambda: slots.waiting == 1)
    measure = threading.Thread(target=work, args=("measure", True))
    measure.start()
    wait_until(lambda: slots.waiting == 2)
    slots.release()
    for t in (render, measure):
        t.join(10)
    assert order == ["measure", "render"]


def test_never_more_than_the_slots_at_once():
    slots = PixelSlots(2)
    busy, peak, lock = [0], [0], threading.Lock()

    def work(urgent: bool) -> None:
        with (slots.urgent() if urgent else slots):
            with lock:
                busy[0] += 1
                peak[0] = max(peak[0], busy[0])
            time.sleep(0.002)
            with lock:
                busy[0] -= 1

    threads = [threading.Thread(target=work, args=(i % 3 == 0,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] <= 2 and slots.waiting == 0


def test_malloc_arenas_can_be_capped_here():
    """glibc (every machine this runs on) takes the cap; elsewhere nothing changes and it says so."""
    import platform

    from imagegen.pixelwork import limit_malloc_arenas

    assert limit_malloc_arenas(2) is (platform.libc_ver()[0] == "glibc")
