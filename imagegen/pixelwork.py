"""One process-wide limit on concurrent pixel work.

Prefect's thread pool runs every submitted task at once by default, so a stage of N masters decoded
N images together and peak memory grew with N (3.85 GB at N=1000 in bench/bench_memory.py). Provider
calls must stay many in flight (at 40/min and 10-40 s per image, ~30), so the pool stays wide and the
pixel work (decode, measure, render, encode) takes one of `cpu_count` slots instead.
"""

from __future__ import annotations

import os
import threading

PIXEL_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
