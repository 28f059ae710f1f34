"""Responsive renditions: srcset widths chosen by bytes, and the resizes that make them.

`responsive_breakpoints` picks srcset widths by bytes, as Cloudinary's responsive breakpoints
do: a new width only where the file has grown by at least `bytes_step`, between a minimum and
a maximum width, at most `max_images` of them. Fixed widths waste files on smooth images (four
near-identical files) and starve detailed ones (huge jumps between 1024 and 1920). The size
curve is sampled with cheap probe encodes (codec.PROBE_SETTINGS); only real encodes are
delivered. `WidthCascade` shares the downscales between the formats of one set.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from imagegen.imaging.codec import DEFAULT_QUALITY, encode_bytes, normalise_format, prepare_for_format


class Rendition(BaseModel):
    """One width of a responsive set."""

    model_config = ConfigDict(frozen=True)

    format: str
    width: int
    height: int
    bytes: int
    quality: int | None
    data: builtins.bytes = Field(repr=False)  # `bytes` in this class body is the field above


class ResponsiveSet(BaseModel):
    """The renditions of one image in one format, narrowest first."""

    model_config = ConfigDict(frozen=True)

    format: str
    quality: int | None
    bytes_step: int
    renditions: tuple[Rendition, ...]
    encodes: int  # real encodes at the delivered settings (the renditions and any re-aimed widths)
    probe_encodes: int = 0  # cheap encodes that only sampled the size curve

    @property
    def widths(self) -> list[int]:
        return [r.width for r in self.renditions]


def resize_to_width(img: Image.Image, width: int) -> Image.Image:
    """LANCZOS downscale to `width`, height by the aspect ratio (never upscales)."""
    width = min(width, img.width)
    if width == img.width:
        return img
    height = max(1, round(img.height * width / img.width))
    return img.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


# A rendition is resized from an earlier, smaller one only when that one is at least this many
# times wider: LANCZOS from a 2x larger LANCZOS image is as sharp as from the source (full-size
# luma SSIM against the direct resize >= 0.995 on our renders), and a resize costs in proportion
# to the pixels it reads, so a 320 px rendition made from the 1920 px one costs ~1/10 of one made
# from a 2048 px master. Closer intermediates would soften the result by resampling twice.
CASCADE_MIN_RATIO = 2.0


class WidthCascade:
    """Downscales of one image to several widths, each from the narrowest image already made that
    is at least `CASCADE_MIN_RATIO` times wider (the source itself otherwise).

    Shared between the formats of one responsive set, so AVIF, WebP and JPEG renditions of the same
    width are resized once.
    """

    def __init__(self, source: Image.Image) -> None:
        self.source = source
        self._made: dict[int, Image.Image] = {}

    def at(self, width: int) -> Image.Image:
        width = min(width, self.source.width)
        if width == self.source.width:
            return self.source
        if width not in self._made:
            wide_enough = [w for w in self._made if w >= CASCADE_MIN_RATIO * width]
            base = self._made[min(wide_enough)] if wide_enough else self.source
            # The height follows the source's aspect, not an intermediate's rounded one: the same
            # size resize_to_width(source, width) gives.
            height = max(1, round(self.source.height * width / self.source.width))
            self._made[width] = base.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return self._made[width]


def responsive_breakpoints(img: Image.Image, fmt: str, *, min_width: int = 320, max_width: int | None = None,
                           bytes_step: int = 20_000, max_images: int = 8, quality: int | None = None,
                           xmp: bytes | None = None, probes: int = 5,
                           cascade: WidthCascade | None = None) -> ResponsiveSet:
    """srcset widths where the file grows by at least `bytes_step`, as Cloudinary picks them.

    The minimum and maximum widths are encoded first; when they are within one step of each other
    the maximum alone is returned. Otherwise the size-by-width curve is sampled at `probes` widths
    (geometric between min and max) with cheap probe encodes (`PROBE_SETTINGS`), scaled by the
    real/probe byte ratio measured at the two ends. Widths are then chosen greedily at equal byte
    steps on that curve (the step widened when `max_images` could not cover the range), each one
    encoded for real and re-aimed when its real file is short of the step, so the rule holds on
    actual bytes, not predictions; only those real encodes are returned. Widths never exceed the
    source width. `cascade` shares resized images between calls on the same prepared image.
    """
    fmt = normalise_format(fmt)
    if bytes_step < 1 or max_images < 1 or min_width < 1 or probes < 2:
        raise ValueError("bytes_step, max_images and min_width must be positive and probes at least 2")
    prepared = prepare_for_format(img, fmt)
    if cascade is None or cascade.source is not prepared:
        cascade = WidthCascade(prepared)
    top = min(max_width or prepared.width, prepared.width)
    bottom = min(min_width, top)
    q = None if fmt == "PNG" else (quality or DEFAULT_QUALITY[fmt])
    real: dict[int, bytes] = {}
    probed: dict[int, int] = {}

    def size_at(width: int) -> int:
        if width not in real:
            real[width] = encode_bytes(cascade.at(width), fmt, q, xmp=xmp)
        return len(real[width])

    def probe_at(width: int) -> int:
        if width not in probed:
            probed[width] = len(encode_bytes(cascade.at(width), fmt, q, xmp=xmp, probe=True))
        return probed[width]

    size_at(top)  # the widest rendition is always delivered, also when it is the only one (max_images 1)
    if max_images == 1 or size_at(top) - size_at(bottom) < bytes_step:
        kept = [top]
    else:
        widths = sorted({round(bottom * (top / bottom) ** (i / (probes - 1))) for i in range(probes)})
        curve = _probed_curve(widths, size_at, probe_at)
        kept = _plan_and_verify(curve, size_at, bytes_step, max_images)
    renditions = tuple(_rendition(prepared, fmt, q, w, real[w]) for w in kept)
    return ResponsiveSet(format=fmt, quality=q, bytes_step=bytes_step, renditions=renditions, encodes=len(real),
                         probe_encodes=len(probed))


def _probed_curve(widths: list[int], size_at: Callable[[int], int], probe_at: Callable[[int], int]
                  ) -> list[tuple[int, int]]:
    """(width, bytes) at `widths`: real at both ends, probe bytes times the real/probe ratio inside.

    The ratio is interpolated in log(width) between the two ends, where it is measured.
    """
    bottom, top = widths[0], widths[-1]
    if len(widths) <= 2:
        return [(w, size_at(w)) for w in widths]
    log_ratio = {w: math.log(size_at(w) / max(1, probe_at(w))) for w in (bottom, top)}
    curve = [(bottom, size_at(bottom))]
    for w in widths[1:-1]:
        t = math.log(w / bottom) / math.log(top / bottom)
        ratio = math.exp((1 - t) * log_ratio[bottom] + t * log_ratio[top])
        curve.append((w, round(probe_at(w) * ratio)))
    return curve + [(top, size_at(top))]


# Re-aims of one srcset width whose real file fell short of the step. Real WebP sizes wiggle by
# +-1-2 % (up to 10 %) between neighbouring widths of a grainy render, so a re-aim a few pixels
# out can land lower still; with 2, a width short after both ended the whole run and 3 of 8
# grainy masters (bench looks, seeds 1004/1010/1016) got [320, 1920] or [320, 804, 1920]: gaps of
# 86-127 KB at a 20 KB step. 4 completes every one of them; the 5 masters 2 already completed get
# exactly the same widths.
_REFINEMENTS = 4


def _plan_and_verify(curve: list[tuple[int, int]], size_at: Callable[[int], int], bytes_step: int,
                     max_images: int, refinements: int = _REFINEMENTS) -> list[int]:
    """Greedy widths on the measured size curve; every real encode refines the curve.

    From the last kept width, the next is where the curve predicts the last size plus the step.
    When the real file falls short of `bytes_step` more, the width is pushed out along the local
    log-log slope (file size ~ width**a), up to `refinements` times; a width that still falls
    short, or that would sit within `bytes_step` of the maximum, ends the run. So does a last
    kept file within 2 steps of the maximum's, before any encode: no width can then be a step
    from both (this used to cost 1-3 real encodes of 0.1-0.3 s on a grainy master and change
    nothing).
    """
    bottom, top = curve[0][0], curve[-1][0]
    total = size_at(top) - size_at(bottom)
    if total < bytes_step or max_images == 1:
        return [top]
    # The step widens when `max_images` could not cover the range at `bytes_step`.
    step = max(float(bytes_step), total / (max_images - 1))
    kept = [bottom]
    known = dict(curve)
    while len(kept) < max_images - 1:
        if size_at(top) - size_at(kept[-1]) < 2 * bytes_step:
            break
        previous, wanted = size_at(kept[-1]), size_at(kept[-1]) + step
        width = max(kept[-1] + 1, _width_for_size(known, wanted))
        for _ in range(refinements):
            if width >= top or size_at(width) - previous >= bytes_step:
                break
            known[width] = size_at(width)
            width = max(width + 1, _extrapolate_width((kept[-1], previous), (width, size_at(width)), wanted))
        if width >= top or size_at(width) - previous < bytes_step or size_at(top) - size_at(width) < bytes_step:
            break
        known[width] = size_at(width)
        kept.append(width)
    return kept + [top]


def _width_for_size(known: Mapping[int, int], size: float) -> int:
    """Width the size curve through `known` predicts for `size`, interpolated in log-log space,
    where file size against width is close to a straight line (size ~ width**a, a in 1..2)."""
    widths = np.array(sorted(known), dtype=np.float64)
    sizes = np.maximum.accumulate(np.array([known[int(w)] for w in widths], dtype=np.float64))
    return int(math.ceil(math.exp(np.interp(math.log(size), np.log(sizes), np.log(widths)))))


def _extrapolate_width(a: tuple[int, int], b: tuple[int, int], size: float) -> int:
    """Width reaching `size` on the power law through points a and b (slope 2 if they are flat)."""
    (w0, s0), (w1, s1) = a, b
    slope = math.log(s1 / s0) / math.log(w1 / w0) if s1 > s0 and w1 > w0 else 2.0
    return int(math.ceil(w1 * (size / s1) ** (1.0 / max(slope, 0.5))))


def _rendition(img: Image.Image, fmt: str, quality: int | None, width: int, data: bytes) -> Rendition:
    height = max(1, round(img.height * min(width, img.width) / img.width))
    return Rendition(format=fmt, width=width, height=height, bytes=len(data), quality=quality, data=data)
