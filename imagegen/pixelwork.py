"""One process-wide limit on concurrent pixel work.

Prefect's thread pool runs every submitted task at once by default, so a stage of N masters decoded
N images together and peak memory grew with N (3.85 GB at N=1000 in bench/bench_memory.py). Provider
calls must stay many in flight (at 40/min and 10-40 s per image, ~30), so the pool stays wide and the
pixel work (decode, measure, render, encode) takes one of `cpu_count` slots instead.

Work the next stage waits for (measuring a master for the gate) goes before work done ahead of
need (rendering a master that may still fail its gate): `with PIXEL_SLOTS.urgent():`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class PixelSlots:
    """A counting semaphore whose urgent waiters are served before the others."""

    def __init__(self, slots: int):
        self._free = slots
        self._urgent_waiting = 0
        self.waiting = 0  # threads blocked in acquire (for tests and diagnostics)
        self._changed = threading.Condition()

    def acquire(self, urgent: bool = False) -> None:
        with self._changed:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._free == 0 or (not urgent and self._urgent_waiting):
                    self.waiting += 1
                    self._changed.wait()
                    self.waiting -= 1
                self._free -= 1
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()

    def __enter__(self) -> PixelSlots:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        self.acquire(urgent=True)
        try:
            yield
        finally:
            self.release()


PIXEL_SLOTS = PixelSlots(max(1, os.cpu_count() or 1))


# glibc's mallopt parameter number for M_ARENA_MAX (malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas (as MALLOC_ARENA_MAX does, but from inside the process).

    Each of the pool's threads would otherwise get an arena of its own and keep the Pillow and
    numpy buffers it freed: measured ~100 MB of peak RSS at every batch size. Returns False where
    the C library is not glibc (nothing is changed there).
    """
    libc = _glibc()
    return bool(libc.mallopt(_M_ARENA_MAX, arenas)) if libc is not None else False


def return_free_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc malloc_trim).

    Decoded images and encoder buffers are freed after every render, but glibc keeps the freed
    pages in its heaps, fragmented by the small long-lived objects allocated in between: measured
    +53 MB of RSS over a 300-master run, 45 MB of it returned by one malloc_trim. The flow calls
    this every few dozen tasks; one call takes milliseconds.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _glibc():
    import ctypes
    import ctypes.util
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
