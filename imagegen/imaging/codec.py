"""The one image codec: format normalisation, encode/decode, luma SSIM, quality bisection, budgets.

Every file the project publishes or delivers is encoded by `encode_bytes` (PNG, JPEG, WEBP, AVIF;
XMP embedded when given), so a format is always written with the same settings and identical input
gives identical bytes (no timestamps). On top of it:

* `bisect_quality` finds the HIGHEST quality whose file fits a byte budget in at most
  `MAX_ENCODES` encodes: the top quality first (most targets fit there, one encode), then a
  search that guesses the crossing by interpolating log(bytes) between the probes it has, kept
  inside a window that preserves the bisection guarantee when the guess is off (the exact
  answer over QUALITY_RANGE; `tolerance` trades steps of quality for fewer encodes).
* `encode_to_budget` adds an SSIM floor (luminance, against the source, at a reduced size): a
  budget that can only be met by wrecking the image is reported (`floor_violated`, `reason`)
  instead of being met silently. PNG is lossless first; a 256-colour palette (pngquant's idea,
  `palette_quantise`) is accepted only while its SSIM stays above `PALETTE_SSIM_FLOOR`.

Everything is pure: PIL images and bytes in, bytes and small result models out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import BaseModel, ConfigDict, Field

PNG_XMP_KEY = "XML:com.adobe.xmp"  # the iTXt keyword the XMP spec defines for PNG
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
# zlib level for PNG. Pillow's optimize (level 9 plus filter search) is 8-12 % smaller on our
# renders but 7-10x slower (1.1-3.7 s against 0.14-0.5 s at 1080x1350), so it is kept for
# files over a byte budget.
PNG_COMPRESS_LEVEL = 6
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
    lowest = img.getchannel("A").getextrema()[0]  # one band: (min, max)
    return isinstance(lowest, (int, float)) and lowest < 255


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
            info = PngInfo()  # Pillow ignores xmp= for PNG: XMP goes in an uncompressed iTXt chunk
            info.add_itxt(PNG_XMP_KEY, xmp.decode("utf-8"), lang="", tkey="", zip=False)
        if probe:
            img.save(buf, "PNG", pnginfo=info, **PROBE_SETTINGS["PNG"])
        elif png_optimize:
            img.save(buf, "PNG", optimize=True, pnginfo=info)
        else:
            img.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
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
    from skimage.metrics import structural_similarity  # ~0.5 s of imports, only where SSIM is asked

    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _reduced_luma(img: Image.Image, max_side: int) -> np.ndarray:
    gray = flatten_alpha(img).convert("L")
    scale = max_side / max(gray.size)
    if scale < 1:
        size = (max(7, round(gray.width * scale)), max(7, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.BOX)  # area average: same reduction for both
    return np.asarray(gray, dtype=np.float64)


def flatten_alpha(img: Image.Image) -> Image.Image:
    """`img` without alpha: transparency flattened onto white, like a page background."""
    return prepare_for_format(img, "JPEG")


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
