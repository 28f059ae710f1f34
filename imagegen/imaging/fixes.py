"""Local remediations for images a quality gate flagged.

Each fix is a pure function ``PIL.Image -> PIL.Image`` (RGB in, RGB out, same size) that the edit
stage applies before gating again. They are cheap and deterministic, and each targets one
measurement in `imagegen.imaging.metrics`. None of them can restore lost information: blown
highlights, heavy blur or blocking stay damaged underneath, so a badly failing image should go
to a provider edit or a new render instead; these fixes rescue the near misses.

Pillow's own ImageOps / ImageFilter do the work wherever they can.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from imagegen.imaging.metrics import (
    ANALYSIS_SIZE,
    hex_to_rgb,
    native_gray_crop,
    nearest_palette_index,
    noise_sigma,
    palette_index_counts,
)

# Output levels for fix_exposure: pure 0/255 carry no detail and print as flat ink/paper, so the
# tone curve ends just inside the gate's clipping bounds (<= 2, >= 253).
_BLACK_LEVEL = 6
_WHITE_LEVEL = 249

# How far fix_exposure pulls mean luminance toward mid-grey (0 = not at all, 1 = all the way):
# a full correction flattens deliberately dark or bright (low/high-key) images.
_GAMMA_PULL = 0.5
_GAMMA_LIMITS = (0.5, 2.0)

# Clusters used to decide which palette colour each region of an image belongs to.
_PALETTE_CLUSTERS = 8
_CLUSTER_ANALYSIS_SIDE = 256


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _mean_luminance(img: Image.Image) -> float:
    """Mean luma 0..1 (Pillow's ITU-R 601 'L')."""
    histogram = img.convert("L").histogram()
    total = sum(histogram) or 1
    return sum(level * count for level, count in enumerate(histogram)) / total / 255.0


def _midtone_gamma(mean: float) -> float:
    """Exponent that moves `mean` part of the way toward 0.5 (out = in ** gamma)."""
    mean = min(max(mean, 0.02), 0.98)
    full = math.log(0.5) / math.log(mean)
    gamma = full**_GAMMA_PULL
    return min(max(gamma, _GAMMA_LIMITS[0]), _GAMMA_LIMITS[1])


def _tone_curve(gamma: float) -> list[int]:
    """One channel's LUT: gamma on mid-tones, then output levels inside the clipping bounds."""
    span = _WHITE_LEVEL - _BLACK_LEVEL
    return [round(_BLACK_LEVEL + span * (level / 255.0) ** gamma) for level in range(256)]


def fix_exposure(img: Image.Image, cutoff: float = 0.5) -> Image.Image:
    """Rebalance an under/over-exposed or clipped image.

    1. ``ImageOps.autocontrast`` (ignoring `cutoff` % at each end) stretches a dull or hazy
       histogram to the full range;
    2. a gamma pulls mean luminance halfway toward mid-grey (lifts shadows of a dark image,
       tames a washed-out one);
    3. output levels map 0/255 to 6/249, rolling crushed blacks and blown whites off the hard
       limits. Clipped pixels had no detail to recover; this only stops them printing as flat
       ink/paper, so heavy clipping still wants a re-render.
    """
    rgb = _rgb(img)
    stretched = ImageOps.autocontrast(rgb, cutoff=cutoff, preserve_tone=True)
    gamma = _midtone_gamma(_mean_luminance(stretched))
    return stretched.point(_tone_curve(gamma) * 3)


def _analysis_pixel(img: Image.Image) -> float:
    """Native pixels per analysis pixel (>= 1), for the gate's default analysis size.

    Filters sized in these units act the same on a 1024 px and a 4096 px render."""
    return max(1.0, max(img.size) / ANALYSIS_SIZE)


def sharpen(
    img: Image.Image, amount: float = 1.5, radius: float | None = None, threshold: int = 3
) -> Image.Image:
    """Unsharp mask (``amount`` 1.0 = 100 % edge boost).

    ``radius`` defaults to two analysis pixels so the boost lands at the scale the gate
    measures; ``threshold`` (grey levels) leaves near-flat areas alone so grain is not amplified.
    """
    rgb = _rgb(img)
    radius = 2.0 * _analysis_pixel(rgb) if radius is None else radius
    mask = ImageFilter.UnsharpMask(radius=radius, percent=round(amount * 100), threshold=threshold)
    return rgb.filter(mask)


def _sigma_mask_lut(knee: float) -> list[int]:
    """255 (take the blurred pixel) below `knee`, fading to 0 (keep the original) at 2 x knee."""
    return [round(255 * min(1.0, max(0.0, 2.0 - level / knee))) for level in range(256)]


def denoise(img: Image.Image, strength: float = 2.5) -> Image.Image:
    """Edge-preserving smoothing: a sigma filter (Lee, 1983), the cheap cousin of a bilateral.

    Each pixel takes a Gaussian-blurred value only where it differs from that blur by less than
    ``strength`` x the estimated noise sigma; across edges the difference is larger and the
    original pixel stays. Everything runs in Pillow (blur, difference, LUT, composite): ~0.25 s
    at 2048 px, where MedianFilter(3) takes ~1.1 s and, at 3 px, barely touches the noise still
    visible at the gate's analysis scale.
    """
    rgb = _rgb(img)
    blurred = rgb.filter(ImageFilter.GaussianBlur(_analysis_pixel(rgb)))
    # Noise is estimated on native pixels: that is the noise the blur has to absorb.
    sigma = max(noise_sigma(native_gray_crop(rgb, ANALYSIS_SIZE)), 1.0)
    difference = ImageChops.difference(rgb, blurred).convert("L")
    mask = difference.point(_sigma_mask_lut(strength * sigma))
    return Image.composite(blurred, rgb, mask)


def _cluster_centres(img: Image.Image) -> list[tuple[int, int, int]]:
    small = img.copy()
    small.thumbnail((_CLUSTER_ANALYSIS_SIDE, _CLUSTER_ANALYSIS_SIDE), Image.Resampling.BOX)
    quantized = small.quantize(
        colors=_PALETTE_CLUSTERS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    flat = quantized.getpalette() or []
    used = sorted({index for _, index in palette_index_counts(quantized)})
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in used]


def _assign_clusters(img: Image.Image, centres: list[tuple[int, int, int]]) -> np.ndarray:
    """Index of the nearest cluster centre for every pixel (Pillow does the nearest search)."""
    holder = Image.new("P", (1, 1))
    holder.putpalette([channel for centre in centres for channel in centre])
    return np.asarray(img.quantize(palette=holder, dither=Image.Dither.NONE))


def shift_to_palette(img: Image.Image, palette: list[str], strength: float = 0.4) -> Image.Image:
    """Pull each colour region toward its nearest brand colour.

    The image is clustered into a few colour regions; each region's centre is matched to its
    nearest palette colour by CIEDE2000 (the same distance the gate uses), and every pixel of
    the region moves by ``strength`` x (palette colour - centre). Shifting by the region's
    offset, rather than blending each pixel toward a flat colour, keeps shading and texture.
    """
    rgb = _rgb(img)
    if not palette or strength <= 0:
        return rgb.copy()
    centres = _cluster_centres(rgb)
    targets = np.asarray([hex_to_rgb(p) for p in palette], dtype=np.float32)
    nearest = targets[nearest_palette_index(centres, palette)]
    offsets = np.rint((nearest - np.asarray(centres, dtype=np.float32)) * min(strength, 1.0))
    labels = _assign_clusters(rgb, centres)
    # int16 keeps the 2048 px case at ~1/3 the time and memory of float arithmetic.
    shifted = np.asarray(rgb, dtype=np.int16) + offsets.astype(np.int16)[labels]
    return Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8), "RGB")
