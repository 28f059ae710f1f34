"""Resampling through libvips, Pillow's `Image.resize` where libvips cannot stand in.

Resizing the master to every target was half of our local work per master (bench_local_work:
~0.5 s of ~1.05 s for the social set, the hero and a srcset from a 2048 px master). libvips' kernels
are the same ones (Catmull-Rom cubic, Lanczos-3) with the same integer box shrink first for large
factors, and run 2-3.5x faster here: 2048 -> 1080 cubic 18 ms against Pillow's 65 ms, 2048 -> 1920
Lanczos-3 57 against 91 ms (mean absolute difference to Pillow's result 0.27 grey levels).

libvips is used for downscales of 8-bit "L" and "RGB" images with a BICUBIC or LANCZOS kernel.
Everything else goes to Pillow: alpha (Pillow premultiplies it), BOX and the other filters, a
missing or broken libvips, and upscales (libvips enlarges through an affine interpolator: luma SSIM
0.93 against Pillow's LANCZOS at 1.25x on a grainy render, where downscales agree to >= 0.99).

libvips runs single-threaded with its operation cache off: the flow already runs one pixel task per
core (imagegen.pixelwork), and a cache would keep every master's pixels alive.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

from PIL import Image

_KERNELS = {Image.Resampling.BICUBIC: "cubic", Image.Resampling.LANCZOS: "lanczos3"}
_VIPS_MODES = {"L": 1, "RGB": 3}
_held = threading.local()  # the image whose pixels reuse_pixels keeps handed over, and libvips' view of them


@functools.cache
def _vips() -> Any:
    """pyvips, configured once; None where libvips cannot be loaded."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    return pyvips


def resample(img: Image.Image, size: tuple[int, int], resample: Image.Resampling,
             box: tuple[float, float, float, float] | None = None, reducing_gap: float | None = None) -> Image.Image:
    """`img.resize(size, resample, box=box, reducing_gap=reducing_gap)`, computed by libvips when it can.

    The box is cut at whole pixels for libvips (Pillow samples a fractional one); the result is
    always exactly `size`.
    """
    vips = _vips()
    kernel = _KERNELS.get(resample)
    width, height = size
    left, top, right, bottom = (round(v) for v in (box or (0, 0, img.width, img.height)))
    if (vips is None or kernel is None or img.mode not in _VIPS_MODES
            or width > right - left or height > bottom - top):
        return img.resize(size, resample, box=box, reducing_gap=reducing_gap)
    source = _vips_pixels(vips, img)
    if (left, top, right, bottom) != (0, 0, img.width, img.height):
        source = source.crop(left, top, right - left, bottom - top)
    options = {"vscale": height / source.height, "kernel": kernel}
    if reducing_gap:
        options["gap"] = reducing_gap
    out = source.resize(width / source.width, **options)
    if (out.width, out.height) != (width, height):  # a rounding edge: Pillow lands on the size exactly
        return img.resize(size, resample, box=box, reducing_gap=reducing_gap)
    return Image.frombuffer(img.mode, (width, height), out.write_to_memory(), "raw", img.mode, 0, 1)


@contextlib.contextmanager
def reuse_pixels(img: Image.Image) -> Iterator[None]:
    """Within this block, resampling `img` hands its pixels to libvips once instead of once per call
    (a 2048 px master to a dozen targets: ~3.5 ms and 12 MB a copy). `img` must not change inside."""
    before = getattr(_held, "entry", None)
    _held.entry = (img, None)
    try:
        yield
    finally:
        _held.entry = before


def _vips_pixels(vips: Any, img: Image.Image) -> Any:
    held = getattr(_held, "entry", None)
    if held is not None and held[0] is img and held[1] is not None:
        return held[1]
    pixels = vips.Image.new_from_memory(img.tobytes(), img.width, img.height, _VIPS_MODES[img.mode], "uchar")
    if held is not None and held[0] is img:
        _held.entry = (img, pixels)
    return pixels
