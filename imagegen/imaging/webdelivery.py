"""Web delivery: byte-budget encodes with a perceptual floor, responsive breakpoints, <picture>.

What this adds over a "lower the quality by 5 until it fits" loop:

* `bisect_quality` finds the HIGHEST quality whose file fits a byte budget in at most
  `MAX_ENCODES` encodes: the top quality first (most targets fit there, one encode), then a
  search that guesses the crossing by interpolating log(bytes) between the probes it has, kept
  inside a window that preserves the bisection guarantee when the guess is off (the exact
  answer over QUALITY_RANGE; `tolerance` trades steps of quality for fewer encodes).
* `encode_to_budget` adds an SSIM floor (luminance, against the source, at a reduced size): a
  budget that can only be met by wrecking the image is reported (`floor_violated`, `reason`)
  instead of being met silently. PNG is lossless first; a 256-colour palette (pngquant's idea)
  is accepted only while its SSIM stays above `PALETTE_SSIM_FLOOR`.
* `responsive_breakpoints` picks srcset widths by bytes, as Cloudinary's responsive breakpoints
  do: a new width only where the file has grown by at least `bytes_step`, between a minimum and
  a maximum width, at most `max_images` of them. Fixed widths waste files on smooth images (four
  near-identical files) and starve detailed ones (huge jumps between 1024 and 1920).
* `picture_html` writes the <picture> element (AVIF, WebP, then the JPEG/PNG fallback) with
  `sizes`, escaped `alt` and intrinsic width/height (no layout shift); `blurhash_placeholder`
  gives the placeholder string; `format_policy` chooses formats per target.

Everything is pure: PIL images and bytes in, bytes and small result models out. Encodes are
deterministic (no timestamps), so identical input gives identical bytes.
"""

from __future__ import annotations

import html
import io
import math
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict, Field
from skimage.metrics import structural_similarity

from imagegen.sizes import Target

LOSSY_FORMATS: tuple[str, ...] = ("AVIF", "WEBP", "JPEG")
# <picture> source order: the browser takes the first type it supports, so best compression first.
PICTURE_ORDER: tuple[str, ...] = ("AVIF", "WEBP", "JPEG", "PNG")
MIME_TYPES: dict[str, str] = {"AVIF": "image/avif", "WEBP": "image/webp", "JPEG": "image/jpeg", "PNG": "image/png"}

# Searched quality range per lossy format. The top is where more bytes stop buying visible
# quality; the bottom is where every format shows blocks or smears on our renders.
QUALITY_RANGE: dict[str, tuple[int, int]] = {"JPEG": (30, 90), "WEBP": (30, 90), "AVIF": (20, 80)}
# Quality used for responsive renditions when none is given.
DEFAULT_QUALITY: dict[str, int] = {"JPEG": 82, "WEBP": 80, "AVIF": 60}
MAX_ENCODES = 7
# log(bytes) per quality step near the top of the range, measured on local renders (JPEG ~0.04,
# WebP ~0.03-0.08, AVIF ~0.03-0.06). Only the first guess uses it; later guesses interpolate.
_PRIOR_LOG_SLOPE = 0.04

# SSIM is computed on luminance at most this many pixels on the long side: ~30 ms instead of
# 0.3-1.7 s at 2048 px. It measures damage at the scale of an on-screen view; full-resolution
# SSIM of our renders is ~0.87 even at JPEG q80, mostly film grain the encoder smoothed away.
SSIM_MAX_SIDE = 512
# A 256-colour PNG replaces the lossless one only at or above this SSIM (dithering noise costs
# ~0.01-0.03 on smooth gradients; banding that a viewer sees costs far more).
PALETTE_SSIM_FLOOR = 0.97
# AVIF encoder speed (0 slowest .. 10 fastest): 6 is libavif's default trade-off.
AVIF_SPEED = 6
WEBP_METHOD = 4
# The cheapest settings of each codec, for probes that only estimate a file's size. They cost a
# third or less of the real encode (a 1920 px WebP: ~60 ms at method 0 against ~180-250 ms at 4;
# JPEG baseline without Huffman optimisation: ~1/4 of progressive + optimised) and their bytes
# differ from the real encode's by a ratio that barely changes with the image's width (WebP
# method 0 against 4: 0.66-0.77 depending on the image, within +-4 % over 320-1920 px of one
# image), which `responsive_breakpoints` measures and corrects for.
PROBE_SETTINGS: dict[str, dict[str, object]] = {
    "JPEG": {"optimize": False, "progressive": False, "subsampling": "4:2:0"},
    "WEBP": {"method": 0},
    "AVIF": {"speed": 10, "subsampling": "4:2:0"},
    "PNG": {"compress_level": 1},
}


class BudgetedEncode(BaseModel):
    """One encoded image and how it was reached. `data` is the file content."""

    model_config = ConfigDict(frozen=True)

    format: str
    data: bytes = Field(repr=False)
    bytes: int
    quality: int | None  # None for PNG
    width: int
    height: int
    encodes: int
    max_bytes: int | None = None
    within_budget: bool = True
    ssim: float | None = None  # against the source; None when no floor was asked for
    ssim_floor: float | None = None
    floor_violated: bool = False
    palette: bool = False  # PNG stored as 256 colours
    reason: str | None = None  # why within_budget or the floor failed; None when both hold

    @property
    def ok(self) -> bool:
        return self.within_budget and not self.floor_violated


class QualitySearch(BaseModel):
    """What `bisect_quality` found: the chosen encode plus every (quality, bytes) it tried."""

    model_config = ConfigDict(frozen=True)

    quality: int
    data: bytes = Field(repr=False)
    fits: bool
    probes: tuple[tuple[int, int], ...]

    @property
    def encodes(self) -> int:
        return len(self.probes)


class Rendition(BaseModel):
    """One width of a responsive set."""

    model_config = ConfigDict(frozen=True)

    format: str
    width: int
    height: int
    bytes: int
    quality: int | None
    data: bytes = Field(repr=False)


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


class FormatPlan(BaseModel):
    """Formats to produce for a target, in delivery preference order; the last is the fallback."""

    model_config = ConfigDict(frozen=True)

    formats: tuple[str, ...]
    reason: str

    @property
    def fallback(self) -> str:
        return self.formats[-1]


# --------------------------------------------------------------------------- encoding


def normalise_format(fmt: str) -> str:
    """'jpg' -> 'JPEG', 'webp' -> 'WEBP'; raises for anything we do not deliver."""
    name = fmt.strip().upper()
    name = {"JPG": "JPEG"}.get(name, name)
    if name not in MIME_TYPES:
        raise ValueError(f"unsupported web format {fmt!r}; expected one of {', '.join(MIME_TYPES)}")
    return name


def has_transparency(img: Image.Image) -> bool:
    """True when some pixel is not fully opaque (an alpha band alone is not transparency)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if "A" not in img.getbands():
        return False
    return img.getchannel("A").getextrema()[0] < 255


def prepare_for_format(img: Image.Image, fmt: str) -> Image.Image:
    """A mode `fmt` stores: JPEG has no alpha, so transparency is flattened onto white."""
    fmt = normalise_format(fmt)
    if fmt == "JPEG":
        if has_transparency(img):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    if img.mode in ("RGB", "RGBA", "L") or (fmt == "PNG" and img.mode in ("LA", "P")):
        return img
    return img.convert("RGBA" if has_transparency(img) else "RGB")


def encode_bytes(img: Image.Image, fmt: str, quality: int | None = None, *, xmp: bytes | None = None,
                 png_optimize: bool = False, probe: bool = False) -> bytes:
    """Encode an already prepared image; JPEG is progressive with optimised Huffman tables.

    `probe=True` uses the cheapest settings of the same codec at the same quality (`PROBE_SETTINGS`):
    only for estimating how big the real file will be, never for a published file.
    """
    fmt = normalise_format(fmt)
    buf = io.BytesIO()
    if fmt == "PNG":
        info = None
        if xmp:
            from imagegen.imaging.encode import PNG_XMP_KEY  # XMP goes in an iTXt chunk for PNG

            info = PngInfo()
            info.add_itxt(PNG_XMP_KEY, xmp.decode("utf-8"), lang="", tkey="", zip=False)
        if probe:
            img.save(buf, "PNG", pnginfo=info, **PROBE_SETTINGS["PNG"])
        elif png_optimize:
            img.save(buf, "PNG", optimize=True, pnginfo=info)
        else:
            img.save(buf, "PNG", compress_level=6, pnginfo=info)
        return buf.getvalue()
    if quality is None:
        quality = DEFAULT_QUALITY[fmt]
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    extra = {"xmp": xmp} if xmp else {}
    if probe:
        img.save(buf, fmt, quality=quality, **PROBE_SETTINGS[fmt], **extra)
    elif fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=True, progressive=True, subsampling="4:2:0", **extra)
    elif fmt == "WEBP":
        img.save(buf, "WEBP", quality=quality, method=WEBP_METHOD, **extra)
    else:
        img.save(buf, "AVIF", quality=quality, speed=AVIF_SPEED, subsampling="4:2:0", **extra)
    return buf.getvalue()


def bisect_quality(encode: Callable[[int], bytes], max_bytes: int, q_min: int, q_max: int,
                   max_encodes: int = MAX_ENCODES, tolerance: int = 0) -> QualitySearch:
    """Highest quality in [q_min, q_max] whose encode is at most `max_bytes`.

    The top quality is tried first (most targets fit there: one encode). After that each probe
    is the interpolated crossing of the budget (log bytes is close to linear in quality between
    neighbouring probes), clamped to a window that keeps the bisection guarantee even when every
    guess is wrong: the answer is at most `tolerance` steps below the best (exact by default)
    whenever `max_encodes` allows it, which covers every QUALITY_RANGE; for wider ranges the
    tolerance grows just enough (1 step over 1..100). With tolerance > 0 the search also stops
    as soon as the answer is pinned that closely, saving encodes. "Nothing fits" is always exact:
    then the smallest encode is returned with fits=False.

    File size is assumed to grow with quality; where an encoder's curve has a local dip (WebP,
    AVIF: a few hundred bytes) a fitting quality above the dip can be missed.
    """
    if not 1 <= q_min <= q_max <= 100:
        raise ValueError(f"need 1 <= q_min <= q_max <= 100, got {q_min}..{q_max}")
    if max_encodes < 1 or tolerance < 0:
        raise ValueError("max_encodes must be at least 1 and tolerance at least 0")
    sizes: dict[int, int] = {}
    datas: dict[int, bytes] = {}

    def probe(q: int) -> int:
        datas[q] = encode(q)
        sizes[q] = len(datas[q])
        return sizes[q]

    def result(q: int, fits: bool) -> QualitySearch:
        return QualitySearch(quality=q, data=datas[q], fits=fits, probes=tuple(sizes.items()))

    if probe(q_max) <= max_bytes:
        return result(q_max, True)
    lo, hi, best = q_min, q_max - 1, None  # unknown qualities are lo..hi; hi + 1 is over budget
    while lo <= hi and len(sizes) < max_encodes and not (best is not None and hi - lo + 1 <= tolerance):
        q = _next_probe(lo, hi, max_encodes - len(sizes), sizes, max_bytes, best, tolerance)
        if probe(q) <= max_bytes:
            best, lo = q, q + 1
        else:
            hi = q - 1
    if best is not None:
        return result(best, True)
    smallest = min(sizes, key=lambda q: (sizes[q], q))
    return result(smallest, False)


def _capacity(encodes: int, tolerance: int, fitted: bool) -> int:
    """Most unknown qualities that `encodes` probes narrow to `tolerance` (to 0 when nothing has
    fitted yet, since "nothing fits" must be exact): (t+1) 2^r - 1, resp. (t+1) (2^r - 1)."""
    return (tolerance + 1) * 2 ** encodes - (1 if fitted else tolerance + 1)


def _next_probe(lo: int, hi: int, remaining: int, sizes: Mapping[int, int], max_bytes: int,
                best: int | None, tolerance: int) -> int:
    """The next quality to encode: the interpolated guess, clamped into the window where either
    outcome of the probe leaves a run the remaining encodes can still narrow to the tolerance."""
    fitted = best is not None
    while hi - lo + 1 > _capacity(remaining, tolerance, fitted):
        tolerance += 1  # too wide for the promise: keep the tightest one the encodes allow
    above_cap = _capacity(remaining - 1, tolerance, True)  # the probe fits: lo moves above it
    below_cap = _capacity(remaining - 1, tolerance, fitted)  # the probe is over: hi moves below it
    window_lo, window_hi = max(lo, hi - above_cap), min(hi, lo + below_cap)
    guess = _interpolated_guess(hi + 1, sizes, max_bytes, best)
    return min(max(guess, window_lo), window_hi)


def _interpolated_guess(over_q: int, sizes: Mapping[int, int], max_bytes: int, best: int | None) -> int:
    """Quality where log(bytes) crosses log(max_bytes), on the line through the bracketing probes."""
    log_over = math.log(sizes[over_q])
    if best is not None and sizes[best] < sizes[over_q]:
        slope = (log_over - math.log(sizes[best])) / (over_q - best)
    else:
        slope = _PRIOR_LOG_SLOPE
    return math.floor(over_q - (log_over - math.log(max_bytes)) / max(slope, 1e-6))


def luma_ssim(reference: Image.Image, candidate: Image.Image, max_side: int = SSIM_MAX_SIDE) -> float:
    """SSIM of the two images' luminance, both reduced so the long side is at most `max_side`.

    Gaussian 11x11 window, sigma 1.5, population covariance: the parameters of Wang et al. 2004.
    """
    if reference.size != candidate.size:
        candidate = candidate.resize(reference.size, Image.Resampling.LANCZOS)
    a, b = (_reduced_luma(img, max_side) for img in (reference, candidate))
    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _reduced_luma(img: Image.Image, max_side: int) -> np.ndarray:
    gray = _flatten(img).convert("L")
    scale = max_side / max(gray.size)
    if scale < 1:
        size = (max(7, round(gray.width * scale)), max(7, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BOX)  # area average: same reduction for both
    return np.asarray(gray, dtype=np.float64)


def _flatten(img: Image.Image) -> Image.Image:
    return prepare_for_format(img, "JPEG")  # alpha onto white, like a page background


def decode(data: bytes) -> Image.Image:
    """Decode encoded bytes fully (for SSIM against the source)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


def encode_to_budget(img: Image.Image, fmt: str, max_bytes: int | None = None, *,
                     ssim_floor: float | None = None, quality_range: tuple[int, int] | None = None,
                     xmp: bytes | None = None, max_encodes: int = MAX_ENCODES,
                     tolerance: int = 0) -> BudgetedEncode:
    """Encode `img` as `fmt` at the highest quality that fits `max_bytes` (None: the top quality).

    With `ssim_floor`, the chosen encode is decoded and compared with the source; below the
    floor the result says so (`floor_violated`, `reason`) rather than pretending the budget was
    harmless. The bytes returned are still the budget-fitting encode: the caller decides whether
    to publish them, pick another format or raise the budget. `tolerance` (quality steps below
    the best that are acceptable) trades precision for encodes; AVIF at 2048 px costs ~1.2 s each.
    """
    fmt = normalise_format(fmt)
    prepared = prepare_for_format(img, fmt)
    if fmt == "PNG":
        return encode_png(prepared, max_bytes=max_bytes, ssim_floor=ssim_floor, xmp=xmp)
    q_min, q_max = quality_range or QUALITY_RANGE[fmt]
    if max_bytes is None:
        data = encode_bytes(prepared, fmt, q_max, xmp=xmp)
        search = QualitySearch(quality=q_max, data=data, fits=True, probes=((q_max, len(data)),))
    else:
        search = bisect_quality(lambda q: encode_bytes(prepared, fmt, q, xmp=xmp), max_bytes, q_min, q_max,
                                max_encodes, tolerance)
    reasons = [] if search.fits else [
        f"{len(search.data)} bytes at the lowest quality tried ({search.quality}) exceeds the budget of "
        f"{max_bytes} bytes"]
    ssim, violated = _check_floor(prepared, search.data, ssim_floor)
    if violated:
        reasons.append(f"SSIM {ssim:.4f} at quality {search.quality} is below the floor {ssim_floor:.4f}: "
                       f"{max_bytes} bytes is too small for this image as {fmt}")
    return BudgetedEncode(format=fmt, data=search.data, bytes=len(search.data), quality=search.quality,
                          width=prepared.width, height=prepared.height, encodes=search.encodes,
                          max_bytes=max_bytes, within_budget=search.fits, ssim=ssim, ssim_floor=ssim_floor,
                          floor_violated=violated, reason="; ".join(reasons) or None)


def _check_floor(source: Image.Image, data: bytes, floor: float | None) -> tuple[float | None, bool]:
    if floor is None:
        return None, False
    ssim = luma_ssim(source, decode(data))
    return ssim, ssim < floor


def palette_quantise(img: Image.Image, colors: int = 256) -> Image.Image:
    """`colors` colours with Floyd-Steinberg dithering, pngquant-style.

    Pillow's quantize() ignores `dither` when it builds the palette itself, so the palette is
    built first (median cut; fast octree when there is alpha) and the image mapped onto it.
    """
    rgba = "A" in img.getbands()
    source = img.convert("RGBA" if rgba else "RGB")
    method = Image.Quantize.FASTOCTREE if rgba else Image.Quantize.MEDIANCUT
    palette = source.quantize(colors=colors, method=method)
    if rgba:  # Pillow cannot map RGBA onto a given palette; octree's own mapping keeps alpha
        return palette
    return source.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)


def encode_png(img: Image.Image, *, max_bytes: int | None = None, ssim_floor: float | None = None,
               palette_floor: float = PALETTE_SSIM_FLOOR, xmp: bytes | None = None) -> BudgetedEncode:
    """Lossless PNG, or a 256-colour PNG when that is smaller and keeps SSIM >= `palette_floor`.

    Over budget with neither acceptable, the palette file is used if it fits and reported as
    below the floor; otherwise the smaller file is returned with within_budget=False.
    """
    img = prepare_for_format(img, "PNG")
    lossless = encode_bytes(img, "PNG", xmp=xmp)
    quantised = palette_quantise(img)
    paletted = encode_bytes(quantised, "PNG", xmp=xmp, png_optimize=True)
    palette_ssim = luma_ssim(img, quantised)
    floor = max(palette_floor, ssim_floor or 0.0)
    use_palette = len(paletted) < len(lossless) and palette_ssim >= floor
    if max_bytes is not None and not use_palette and len(lossless) > max_bytes and len(paletted) < len(lossless):
        use_palette = True  # over budget: the smaller file, with the floor failure reported below
    data, ssim = (paletted, palette_ssim) if use_palette else (lossless, 1.0)
    fits = max_bytes is None or len(data) <= max_bytes
    reasons = [] if fits else [f"{len(data)} bytes exceeds the budget of {max_bytes} bytes "
                               "(lossless and 256-colour PNG both tried)"]
    violated = ssim_floor is not None and ssim < ssim_floor
    if violated:
        reasons.append(f"SSIM {ssim:.4f} of the 256-colour PNG is below the floor {ssim_floor:.4f}")
    return BudgetedEncode(format="PNG", data=data, bytes=len(data), quality=None, width=img.width,
                          height=img.height, encodes=2, max_bytes=max_bytes, within_budget=fits,
                          ssim=ssim if ssim_floor is not None else None, ssim_floor=ssim_floor,
                          floor_violated=violated, palette=use_palette, reason="; ".join(reasons) or None)


# --------------------------------------------------------------------------- breakpoints


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


# --------------------------------------------------------------------------- <picture>


def _srcset_url(url: str) -> str:
    # srcset splits candidates on commas and whitespace: both must be percent-encoded in a URL.
    return url.strip().replace(" ", "%20").replace("\t", "%09").replace("\n", "%0A").replace(",", "%2C")


def srcset_attribute(candidates: Sequence[tuple[str, int]]) -> str:
    """'a.avif 320w, b.avif 640w' from (url, width) pairs, narrowest first, HTML-escaped."""
    ordered = sorted(candidates, key=lambda c: c[1])
    return html.escape(", ".join(f"{_srcset_url(url)} {int(width)}w" for url, width in ordered), quote=True)


def picture_html(srcsets: Mapping[str, Sequence[tuple[str, int]]], *, alt: str, width: int, height: int,
                 sizes: str = "100vw", loading: Literal["lazy", "eager"] = "lazy",
                 decoding: Literal["async", "sync", "auto"] = "async", css_class: str | None = None) -> str:
    """A <picture> element: AVIF and WebP <source>s, then an <img> with the JPEG (or PNG) fallback.

    `srcsets` maps a format to its (url, width) candidates. `width`/`height` are the intrinsic
    size (the largest rendition), so the browser reserves the box before loading (no layout
    shift). `alt` is required; pass "" for a purely decorative image.
    """
    formats = {normalise_format(f): c for f, c in srcsets.items() if c}
    fallback = next((f for f in ("JPEG", "PNG") if f in formats), None)
    if fallback is None:
        raise ValueError("a <picture> needs a JPEG or PNG fallback for browsers without AVIF/WebP")
    sizes_attr = html.escape(sizes, quote=True)
    lines = ["<picture>"]
    for fmt in PICTURE_ORDER:
        if fmt in formats and fmt != fallback:
            lines.append(f'  <source type="{MIME_TYPES[fmt]}" srcset="{srcset_attribute(formats[fmt])}" '
                         f'sizes="{sizes_attr}">')
    largest = max(formats[fallback], key=lambda c: c[1])
    class_attr = f' class="{html.escape(css_class, quote=True)}"' if css_class else ""
    lines.append(f'  <img src="{html.escape(_srcset_url(largest[0]), quote=True)}" '
                 f'srcset="{srcset_attribute(formats[fallback])}" sizes="{sizes_attr}" '
                 f'width="{int(width)}" height="{int(height)}" alt="{html.escape(alt, quote=True)}" '
                 f'loading="{loading}" decoding="{decoding}"{class_attr}>')
    lines.append("</picture>")
    return "\n".join(lines)


def picture_for_sets(sets: Sequence[ResponsiveSet], url_for: Callable[[Rendition], str], *, alt: str,
                     sizes: str = "100vw", **options: str) -> str:
    """`picture_html` for responsive sets, with `url_for` naming each rendition's published URL."""
    srcsets = {s.format: [(url_for(r), r.width) for r in s.renditions] for s in sets}
    fallback = next((s for s in sets if s.format in ("JPEG", "PNG")), None)
    if fallback is None:
        raise ValueError("a <picture> needs a JPEG or PNG responsive set as fallback")
    largest = fallback.renditions[-1]
    return picture_html(srcsets, alt=alt, width=largest.width, height=largest.height, sizes=sizes, **options)


# --------------------------------------------------------------------------- format policy

SOCIAL_PLATFORMS = frozenset({"instagram", "facebook", "x", "linkedin", "pinterest", "youtube", "tiktok"})


def is_flat_graphic(img: Image.Image, top_colours: int = 32, coverage: float = 0.9) -> bool:
    """True for logo/illustration-like images: `top_colours` colours cover `coverage` of pixels.

    Sampled at <= 256 px with NEAREST so no resampling invents in-between colours. Photos and
    renders with grain have thousands of colours and fail this; flat art passes even with
    anti-aliased edges.
    """
    small = img.convert("RGB")
    scale = 256 / max(small.size)
    if scale < 1:
        small = small.resize((max(1, round(small.width * scale)), max(1, round(small.height * scale))),
                             Image.Resampling.NEAREST)
    counts = sorted((c for c, _ in small.getcolors(maxcolors=small.width * small.height)), reverse=True)
    return sum(counts[:top_colours]) >= coverage * small.width * small.height


def format_policy(platform: str, *, has_alpha: bool = False, flat_graphic: bool = False) -> FormatPlan:
    """Formats to produce for a platform, best first; the last one is what every client opens.

    web: AVIF then WebP in <picture>, JPEG fallback (PNG when there is alpha or flat art);
    email: one JPEG/PNG (Outlook and many webmail clients show neither AVIF nor WebP);
    social: JPEG/PNG, the upload formats every platform accepts (they re-encode anyway);
    print: lossless PNG.
    """
    lossless_fallback = has_alpha or flat_graphic
    why = "transparency" if has_alpha else "flat graphic" if flat_graphic else "photographic"
    if platform == "web":
        fallback = "PNG" if lossless_fallback else "JPEG"
        return FormatPlan(formats=("AVIF", "WEBP", fallback), reason=f"web {why}: AVIF, WebP, {fallback} fallback")
    if platform == "print":
        return FormatPlan(formats=("PNG",), reason="print: lossless")
    single = "PNG" if lossless_fallback else "JPEG"
    audience = "email clients" if platform == "email" else "social upload" if platform in SOCIAL_PLATFORMS else platform
    return FormatPlan(formats=(single,), reason=f"{audience} {why}: {single} only")


def format_plan_for_target(target: Target, img: Image.Image) -> FormatPlan:
    """The brief's explicit format wins; otherwise `format_policy` on the image's content."""
    if "format" in target.model_fields_set:
        return FormatPlan(formats=(normalise_format(target.format),), reason="format set by the brief")
    return format_policy(target.platform, has_alpha=has_transparency(img), flat_graphic=is_flat_graphic(img))


# --------------------------------------------------------------------------- blurhash


def blurhash_components(width: int, height: int, detail: int = 4) -> tuple[int, int]:
    """(x, y) components following the aspect: 4x3 for 4:3, 3x4 for portrait, within 1..9."""
    if width >= height:
        x, y = detail, round(detail * height / width)
    else:
        x, y = round(detail * width / height), detail
    return max(1, min(9, x)), max(1, min(9, y))


def blurhash_placeholder(img: Image.Image, components: tuple[int, int] | None = None,
                         max_side: int = 64) -> str:
    """The BlurHash of `img`, computed on a <= `max_side` thumbnail (same hash to within a
    quantisation step, and ~1000x less work than at full size). Alpha is flattened onto white."""
    small = _flatten(img).convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.BOX)
    x, y = components or blurhash_components(img.width, img.height)
    return blurhash_encode(np.asarray(small), x, y)


# BlurHash (https://blurha.sh, woltapp/blurhash), vectorised with numpy. It is small and fully
# specified; the C binding on PyPI (blurhash-python) reads pixels through Image.getdata, which
# Pillow 14 removes. tests/unit/test_webdelivery.py checks these against that binding.
_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SRGB_TO_LINEAR = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                           ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4)


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def _unbase83(text: str) -> int:
    value = 0
    for char in text:
        value = value * 83 + _BASE83.index(char)
    return value


def _linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.trunc(np.where(v <= 0.0031308, v * 12.92 * 255 + 0.5, (1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5))


def _basis(components: int, size: int) -> np.ndarray:
    return np.cos(np.pi * np.outer(np.arange(components), np.arange(size)) / size)


def blurhash_encode(rgb: np.ndarray, x_components: int, y_components: int) -> str:
    """BlurHash of an (h, w, 3) uint8 sRGB array with x by y components (each 1..9)."""
    if not (1 <= x_components <= 9 and 1 <= y_components <= 9):
        raise ValueError("BlurHash components must be 1..9")
    h, w = rgb.shape[:2]
    linear = _SRGB_TO_LINEAR[rgb[..., :3]]
    factors = np.einsum("jy,ix,yxc->jic", _basis(y_components, h), _basis(x_components, w), linear) / (w * h)
    factors = factors.reshape(-1, 3)
    factors[1:] *= 2.0  # every AC basis function is normalised by 2, the DC one by 1
    dc, ac = factors[0], factors[1:]
    out = _base83((x_components - 1) + (y_components - 1) * 9, 1)
    if len(ac):
        quantised_max = int(max(0, min(82, math.floor(float(np.abs(ac).max()) * 166 - 0.5))))
        max_value = (quantised_max + 1) / 166
    else:
        quantised_max, max_value = 0, 1.0
    out += _base83(quantised_max, 1)
    r, g, b = (int(c) for c in _linear_to_srgb(dc))
    out += _base83((r << 16) + (g << 8) + b, 4)
    quant = np.clip(np.floor(np.sign(ac) * np.sqrt(np.abs(ac / max_value)) * 9 + 9.5), 0, 18).astype(int)
    return out + "".join(_base83(int(q[0] * 361 + q[1] * 19 + q[2]), 2) for q in quant)


def decode_blurhash(hash_: str, width: int, height: int, punch: float = 1.0) -> Image.Image:
    """The placeholder image a page would show for `hash_` (what the JS decoders draw)."""
    if len(hash_) < 6:
        raise ValueError(f"not a BlurHash: {hash_!r}")
    size = _unbase83(hash_[0])
    x_components, y_components = size % 9 + 1, size // 9 + 1
    if len(hash_) != 4 + 2 * x_components * y_components:
        raise ValueError(f"BlurHash {hash_!r} has the wrong length for {x_components}x{y_components}")
    max_value = (_unbase83(hash_[1]) + 1) / 166 * punch
    dc = _unbase83(hash_[2:6])
    colours = [_SRGB_TO_LINEAR[[dc >> 16, (dc >> 8) & 255, dc & 255]]]
    for k in range(1, x_components * y_components):
        v = _unbase83(hash_[4 + 2 * k: 6 + 2 * k])
        q = np.array([v // 361, (v // 19) % 19, v % 19], dtype=np.float64)
        centred = (q - 9) / 9
        colours.append(np.sign(centred) * centred ** 2 * max_value)
    table = np.array(colours).reshape(y_components, x_components, 3)
    linear = np.einsum("jy,ix,jic->yxc", _basis(y_components, height), _basis(x_components, width), table)
    return Image.fromarray(_linear_to_srgb(linear).astype(np.uint8), "RGB")
