"""Measurements of one image for the quality gate.

`measure_image` decodes a file once and returns an `ImageMeasurements`: a small pydantic model
(a few hundred bytes) that the gate validates against a policy. It never raises for a bad file;
a truncated, empty, non-image or oversized file comes back with ``decoded_ok=False`` and a reason.

Every pixel metric except blockiness is computed on an *analysis image*: the decoded image
downscaled so its longest side is ``analysis_size`` (512 by default). Sharpness, noise and
clipping all change with resolution, so measuring at one fixed size lets one threshold serve a
1024 px and a 4096 px render alike. Blockiness is the exception: JPEG block edges exist only on
the native 8-pixel grid, which any resampling destroys, so it is measured on a grid-aligned
centre crop of the original pixels.

Units, for whoever sets policy thresholds:

- ``sharpness``: variance of the Laplacian at analysis size (grey levels squared). Content
  dependent: a busy render scores in the hundreds, a crisp minimal product shot ~50, a blur of
  one analysis pixel ~20.
- ``blockiness``: ratio, ~1.0 without JPEG blocking; ~2.2 at JPEG quality 75, >4 at 50.
- ``clipped_dark`` / ``clipped_bright``: fraction 0..1 of analysis pixels with luma <= 2 / >= 253.
- ``noise_sigma``: grey levels at analysis size, i.e. the noise still visible when the image is
  shown ~512 px wide; per-pixel noise of a 2048 px render reads ~1/5 of its native value.
- ``brand_delta_e``: CIEDE2000 (~2 just noticeable, >10 clearly different colours).
- ``phash``: 64-bit pHash; near-duplicates are 0-6 bits apart, unrelated images 20+, and
  renders of one layout with one element moved ~12.

Colour science (Lab conversion, CIEDE2000) and the wavelet noise estimate come from
scikit-image, and the perceptual hash from imagehash: well-tested code we do not re-derive.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

# scikit-image (with SciPy) and imagehash are imported where they are used: ~0.9 s that the CLI and a flow's
# start would otherwise pay before the first provider request (imagegen.quality preloads them meanwhile).

# Refuse anything larger before decoding: a 64 MP RGB image is ~200 MB of pixels, far beyond
# any render we order, and Pillow's own bomb limit (~89 MP warning, ~179 MP error) is too lax.
MAX_PIXELS = 64_000_000

# Exposure clipping bounds (8-bit luma): at or beyond these a pixel has lost its detail.
CLIP_DARK_MAX = 2
CLIP_BRIGHT_MIN = 253

# Metrics are computed with the longest side downscaled to this many pixels.
ANALYSIS_SIZE = 512

# Blockiness is measured on at most this many original pixels per side (multiple of 8).
BLOCKINESS_CROP = 1024

# Below this mean absolute difference (grey levels) a column is "flat"; the floor keeps the
# blockiness ratio finite and at 1.0 for flat images instead of dividing by ~0.
_BLOCKINESS_FLOOR = 0.05

# Transparent pixels are composited onto white, the background the published image is shown on.
_FLATTEN_BACKGROUND = (255, 255, 255)

_HEAD_BYTES = 64


# --------------------------------------------------------------------------- format sniffing


def _is_avif(head: bytes) -> bool:
    """ISO-BMFF `ftyp` box whose major or compatible brands include avif (still) or avis (sequence)."""
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(head[0:4], "big")
    # Brands follow the 4-byte major brand and 4-byte minor version; a box size of 0/1 means
    # "to end of file"/"64-bit size", so fall back to what we have in hand.
    end = min(box_size, len(head)) if box_size >= 16 else len(head)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    return any(brand in (b"avif", b"avis") for brand in brands)


def sniff_format(head: bytes) -> str | None:
    """Pillow-style format name from a file's first bytes (magic numbers), or None if unknown.

    Gates use this instead of the file extension or Pillow's answer alone, so a JPEG saved as
    ``.png`` or a provider that mislabels its output is caught.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if _is_avif(head):
        return "AVIF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    return None


# --------------------------------------------------------------------------- pixel metrics


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a 0..255 grayscale array.

    Same kernel as OpenCV's ``cv2.Laplacian(ksize=1)``, so values compare with the common
    OpenCV blur-detection recipe. It grows with contrast and detail, so a threshold has to
    allow for sparse, low-detail compositions.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var(dtype=np.float64))


def _grid_profile_medians(abs_diff: np.ndarray) -> tuple[float, float]:
    """Median column profile at 8-px block boundaries and elsewhere, for diffs along axis 1.

    ``abs_diff[:, j]`` is the step between pixel columns j and j+1, so boundaries are j % 8 == 7.
    The mean over rows is the plain "mean difference at this column"; the median across columns
    then keeps a few strong edges that happen to sit on the grid (common in flat graphics drawn
    at round coordinates) from reading as JPEG blocking.
    """
    profile = abs_diff.mean(axis=0, dtype=np.float64)
    on_grid = (np.arange(profile.size) % 8) == 7
    return float(np.median(profile[on_grid])), float(np.median(profile[~on_grid]))


def blockiness(gray: np.ndarray) -> float:
    """JPEG 8x8 blocking: mean |step| across block boundaries / mean |step| inside blocks.

    About 1.0 for images without blocking, clearly above 1 for heavy JPEG compression. ``gray``
    must be on the ORIGINAL pixel grid with its origin on a block corner (see
    `native_gray_crop`); any resampling destroys the grid and reads as ~1.0. Flat-colour
    graphics compress to uniform blocks with no steps between them, so they read ~1.0 even at
    low quality: ringing around their edges is not what this measures.
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] < 16 or g.shape[1] < 16:
        return 1.0
    h_on, h_off = _grid_profile_medians(np.abs(np.diff(g, axis=1)))
    v_on, v_off = _grid_profile_medians(np.abs(np.diff(g, axis=0)).T)
    on = (h_on + v_on) / 2.0
    off = (h_off + v_off) / 2.0
    return float((on + _BLOCKINESS_FLOOR) / (off + _BLOCKINESS_FLOOR))


def native_gray_crop(img: Image.Image, max_side: int = BLOCKINESS_CROP) -> np.ndarray:
    """Grayscale centre crop of the original (unresampled) pixels, origin and size on the 8-px
    JPEG grid: the input `blockiness` needs, and a native-noise sample for `fixes.denoise`."""
    w = min(img.width, max_side) // 8 * 8
    h = min(img.height, max_side) // 8 * 8
    x0 = (img.width - w) // 2 // 8 * 8
    y0 = (img.height - h) // 2 // 8 * 8
    crop = img.crop((x0, y0, x0 + w, y0 + h)).convert("L")
    return np.asarray(crop, dtype=np.float32)


def exposure_clipping(gray: np.ndarray) -> tuple[float, float]:
    """Fraction of pixels crushed to black (<= 2) and blown to white (>= 253)."""
    g = np.asarray(gray)
    if g.size == 0:
        return 0.0, 0.0
    return float(np.mean(g <= CLIP_DARK_MAX)), float(np.mean(g >= CLIP_BRIGHT_MIN))


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation of additive noise, in grey levels (0..255).

    Uses scikit-image's wavelet estimator (Donoho's median absolute deviation of the finest
    diagonal wavelet band). The median makes it robust to edges and texture, which only touch a
    minority of coefficients; Immerkaer's fast method averages |Laplacian-difference| over every
    pixel and so reads crisp detail as noise unless edges are masked out first.
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.shape[0] < 4 or g.shape[1] < 4:
        return 0.0
    if np.ptp(g) == 0:
        return 0.0  # perfectly flat: skimage would take the median of no coefficients (NaN)
    from skimage.restoration import estimate_sigma

    sigma = float(estimate_sigma(g))
    return sigma if np.isfinite(sigma) else 0.0


# --------------------------------------------------------------------------- colour


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    """'#ff6b6b', 'FF6B6B' or '#f66' -> (255, 107, 107)."""
    digits = value.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) != 6:
        raise ValueError(f"not a hex colour: {value!r}")
    try:
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    except ValueError:
        raise ValueError(f"not a hex colour: {value!r}") from None


def rgb_to_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _limit_size(img: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the longest side is at most max_side; never upscale (that only adds blur)."""
    longest = max(img.width, img.height)
    if longest <= max_side:
        return img
    scale = max_side / longest
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # reducing_gap=2 lets Pillow box-reduce by an integer factor first and LANCZOS only the last
    # >=2x: 2.5x faster than a full LANCZOS at 2048 -> 512 (19 vs 48 ms), sharpness within 6%.
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def dominant_colors(
    rgb_image: Image.Image, k: int = 5, max_side: int = 512
) -> list[tuple[tuple[int, int, int], float]]:
    """The k most frequent colour clusters as ((r, g, b), share), most frequent first.

    Fast octree keeps the most populous colours as they are, so a flat brand-colour shape
    reads as exactly its colour; median cut splits boxes by count and averages small distinct
    regions into muddy in-between colours (a yellow shape on white became grey in our tests),
    and is 10-30x slower at 512 px.
    """
    img = _limit_size(rgb_image.convert("RGB"), max_side)
    octree = img.quantize(colors=k, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    colours = _palette_triples(octree)
    # The octree dumps every pixel outside its k buckets into index 0, which made shares of
    # 56% for a 12% shape; re-mapping each pixel to its nearest chosen colour gives true shares.
    assigned = img.quantize(palette=_palette_image(colours), dither=Image.Dither.NONE)
    total = img.width * img.height
    counts = sorted(palette_index_counts(assigned), reverse=True)
    return [(colours[index], count / total) for count, index in counts]


def palette_index_counts(paletted: Image.Image) -> list[tuple[int, int]]:
    """(pixel count, palette index) for every index a 'P' image uses: getcolors, typed for 'P'."""
    return [(count, index) for count, index in paletted.getcolors(maxcolors=256) or [] if isinstance(index, int)]


def _palette_triples(paletted: Image.Image) -> list[tuple[int, int, int]]:
    flat = paletted.getpalette() or []
    used = max((index for _, index in palette_index_counts(paletted)), default=-1) + 1
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(used)]


def _palette_image(colours: list[tuple[int, int, int]]) -> Image.Image:
    """A 'P' image carrying exactly these colours, for Image.quantize(palette=...)."""
    holder = Image.new("P", (1, 1))
    holder.putpalette([channel for colour in colours for channel in colour])
    return holder


def rgb_to_lab(colors: list[tuple[int, int, int]]) -> np.ndarray:
    """sRGB 0..255 triples -> CIELAB (D65), shape (n, 3)."""
    from skimage.color import rgb2lab

    rgb = np.asarray(colors, dtype=np.float64).reshape(-1, 1, 3) / 255.0
    return rgb2lab(rgb).reshape(-1, 3)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 distance between Lab colours (last axis = L, a, b); broadcasts."""
    from skimage.color import deltaE_ciede2000

    return np.asarray(deltaE_ciede2000(np.asarray(lab1, float), np.asarray(lab2, float)))


def nearest_palette_index(colors: list[tuple[int, int, int]], palette: list[str]) -> np.ndarray:
    """For each colour, the index of the perceptually nearest (CIEDE2000) palette colour."""
    distances = _palette_distances(colors, palette)
    return distances.argmin(axis=1)


def _palette_distances(colors: list[tuple[int, int, int]], palette: list[str]) -> np.ndarray:
    if not palette:
        raise ValueError("palette is empty")
    colour_lab = rgb_to_lab(colors)
    palette_lab = rgb_to_lab([hex_to_rgb(p) for p in palette])
    return ciede2000(colour_lab[:, None, :], palette_lab[None, :, :])


def brand_delta_e(
    dominant: list[tuple[tuple[int, int, int], float]], palette: list[str]
) -> float:
    """Share-weighted mean CIEDE2000 from each dominant colour to its nearest palette colour.

    0 means every dominant colour is a palette colour; ~2 is a just-noticeable difference;
    above ~10 the colours read as different. Shares are renormalised so k need not cover 100%.
    """
    if not dominant:
        return 0.0
    colors = [c for c, _ in dominant]
    shares = np.asarray([s for _, s in dominant], dtype=np.float64)
    nearest = _palette_distances(colors, palette).min(axis=1)
    if shares.sum() <= 0:
        return float(nearest.mean())
    return float(np.average(nearest, weights=shares))


# --------------------------------------------------------------------------- near duplicates


def phash(img: Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex digits (imagehash.phash)."""
    import imagehash

    return str(imagehash.phash(img))


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two hex pHashes of the same length."""
    if len(a) != len(b):
        raise ValueError(f"pHash lengths differ: {len(a)} vs {len(b)}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def find_near_duplicates(hashes: list[tuple[str, str]], max_distance: int) -> dict[str, str]:
    """{later_id: earlier_id} for each image within max_distance of an earlier one.

    ``hashes`` is (image_id, phash) in campaign order. A duplicate points at the EARLIEST image
    it matches, so every member of a cluster names the same original; empty hashes (images that
    failed to decode) are skipped.
    """
    duplicates: dict[str, str] = {}
    seen: list[tuple[str, int]] = []
    for image_id, hex_hash in hashes:
        if not hex_hash:
            continue
        value = int(hex_hash, 16)
        for earlier_id, earlier in seen:
            if (value ^ earlier).bit_count() <= max_distance:
                duplicates[image_id] = earlier_id
                break
        seen.append((image_id, value))
    return duplicates


# --------------------------------------------------------------------------- measure_image


class ImageMeasurements(BaseModel):
    """What the gate knows about one image file. Small and picklable: no pixels."""

    image_id: str
    path: str
    width: int = 0
    height: int = 0
    bytes: int = 0
    format_detected: str | None = Field(default=None, description="From magic bytes")
    format_declared: str | None = Field(default=None, description="What Pillow decoded it as")
    decoded_ok: bool = False
    decode_error: str | None = None
    sharpness: float = 0.0
    blockiness: float = 0.0
    clipped_dark: float = 0.0
    clipped_bright: float = 0.0
    noise_sigma: float = 0.0
    dominant_colors: list[str] = Field(default_factory=list, description="#rrggbb, most frequent first")
    dominant_shares: list[float] = Field(default_factory=list)
    brand_delta_e: float | None = Field(default=None, description="None when no palette was given")
    phash: str | None = None
    cutout_coverage: float | None = None  # publish.background != keep: imaging.cutout.Cutout.measurements
    cutout_problem: str | None = None
    # faces (imagegen.imaging.faces.measure_faces): None when the brief does not check this master's faces
    face_count: int | None = None
    face_boxes: list[list[int]] | None = None
    face_sharpness: float | None = None
    face_luma: float | None = None


class _DecodeFailure(Exception):
    """A file we refuse to measure, with the reason the gate reports."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten any mode to 8-bit RGB; alpha is composited onto the publishing background."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow clips (not scales) 16-bit samples to 8 bits, which would whiten everything.
        wide = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or wide.max() > 255 else 255.0
        img = Image.fromarray(np.clip(wide / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _FLATTEN_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _decode(path: Path) -> tuple[Image.Image, str | None]:
    """Open and FULLY decode the first frame, or raise _DecodeFailure with a readable reason."""
    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise _DecodeFailure(f"decompression bomb refused: {exc}") from None
    except Image.UnidentifiedImageError:
        raise _DecodeFailure("not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - a bad file must be reported, never raised
        raise _DecodeFailure(f"cannot open: {_describe(exc)}") from None
    return img, img.format


def _load_pixels(img: Image.Image) -> Image.Image:
    pixels = img.width * img.height
    if pixels > MAX_PIXELS:
        raise _DecodeFailure(
            f"decompression bomb refused: {img.width}x{img.height} = {pixels / 1e6:.1f} MP "
            f"exceeds the {MAX_PIXELS / 1e6:.0f} MP limit"
        )
    try:
        # load() decodes every byte, so a truncated stream fails here rather than passing as a
        # half-grey image (Pillow's LOAD_TRUNCATED_IMAGES stays at its safe default, False).
        img.load()
        return _to_rgb(img)
    except Image.DecompressionBombError as exc:
        raise _DecodeFailure(f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - plugins raise OSError, SyntaxError, EOFError, ...
        raise _DecodeFailure(f"decode failed: {_describe(exc)}") from None


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_HEAD_BYTES)


def measure_image(
    path: str | Path,
    image_id: str,
    palette: list[str] | None = None,
    analysis_size: int = ANALYSIS_SIZE,
    also: Callable[[Image.Image], dict[str, Any]] | None = None,
) -> ImageMeasurements:
    """Measure one image file for the quality gate. Never raises for a bad file: it reports."""
    path = Path(path)
    result = ImageMeasurements(image_id=image_id, path=str(path))
    try:
        result.bytes = path.stat().st_size
        head = _read_head(path)
    except OSError as exc:
        result.decode_error = f"cannot read file: {exc.strerror or exc}"
        return result
    result.format_detected = sniff_format(head)
    if result.bytes == 0:
        result.decode_error = "empty file"
        return result

    try:
        img, result.format_declared = _decode(path)
        with img:
            result.width, result.height = img.width, img.height
            rgb = _load_pixels(img)
    except _DecodeFailure as failure:
        result.decode_error = str(failure)
        return result

    _fill_pixel_metrics(result, rgb, palette, analysis_size)
    result.decoded_ok = True
    # more columns from the decoded pixels (imagegen.imaging.faces.measure_faces), without decoding again
    return result.model_copy(update=also(rgb)) if also is not None else result


def _fill_pixel_metrics(
    result: ImageMeasurements, rgb: Image.Image, palette: list[str] | None, analysis_size: int
) -> None:
    result.blockiness = blockiness(native_gray_crop(rgb))
    small = _limit_size(rgb, analysis_size)
    gray = np.asarray(small.convert("L"), dtype=np.float32)
    result.sharpness = sharpness(gray)
    result.clipped_dark, result.clipped_bright = exposure_clipping(gray)
    result.noise_sigma = noise_sigma(gray)
    dominant = dominant_colors(small)
    result.dominant_colors = [rgb_to_hex(c) for c, _ in dominant]
    result.dominant_shares = [round(share, 4) for _, share in dominant]
    if palette:
        result.brand_delta_e = brand_delta_e(dominant, palette)
    result.phash = phash(small)
