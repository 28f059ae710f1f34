"""Content-aware crops for size sets: never a stretch, never a blind centre crop.

A variant is made in three steps:

1. `saliency_map`: a small map of where the subject probably is (edge energy plus colour
   distinctness, with a weak centre prior).
2. `plan_crop`: the largest window of the target aspect that fits in the source, slid to
   the position holding the most saliency (summed-area table, so every candidate costs O(1))
   among the positions that keep the main subject whole; `plan_crop_keeping` also never cuts
   through a box it is given (detected faces), and says so when it cannot avoid it.
3. `render_variant`: crop by the plan and resample once to the exact target size (BICUBIC for
   downscales within 2x, LANCZOS otherwise: `downscale_filter`).

The crop always has the target's aspect (to within one pixel of rounding), so the final resize
scales both axes by the same factor: shapes are never distorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagegen.imaging.resample import resample as resample_image

# How far the centre prior can tilt the map: weak, it only breaks ties between equal regions.
_CENTRE_PRIOR_WEIGHT = 0.2
# Candidate windows kept within this share of the best mass count as "just as good"; the crop
# is centred within that run, so a subject is framed with room rather than pushed to an edge.
_PLATEAU_TOLERANCE = 0.02
# Saliency at or above this share of the peak belongs to a candidate subject region.
_SUBJECT_LEVEL = 0.6
# Parts of the subject closer than this share of the map's long side are merged into one region.
_SUBJECT_MERGE = 0.04
# Room kept between the subject and the crop edge, as a share of the window (when it fits).
_SUBJECT_ROOM = 0.05
# Room kept around a box to keep (a face's hair and chin lie outside the detector's box), as a share of
# its size, when the window can hold it so; else the box alone is kept.
_KEEP_ROOM = 0.15
# Candidate window positions examined along the free axis (more adds nothing at 256 px maps).
_MAX_CANDIDATES = 512
# Downscales by a factor in (1, BICUBIC_MAX_FACTOR] use BICUBIC instead of LANCZOS. Its kernel is
# 4 source pixels wide per unit of scale against LANCZOS's 6: the eight distinct social targets
# and the hero from a 2048 px master (factors 1.07-1.90, where no integer box reduce can help)
# cost ~23 % less (15 interleaved rounds on the loaded 2-core machine: min 0.41 -> 0.32 s, median
# 0.77 -> 0.61 s per master). Against the LANCZOS result, full-resolution luma SSIM (Gaussian
# 11x11, sigma 1.5) on bench_local_work's three masters, every social target and the hero: >=
# 0.9996 on the product and minimal looks, >= 0.9959 on the grainy neon one (x_post at 1.28 and
# the hero at 1.07 lowest); luma_ssim at 512 px >= 0.9978. What differs is the grain (PSNR 51-65
# dB, finest-scale Laplacian energy 15-20 % lower): over 8 more grainy seeds full-size SSIM is
# 0.9950-0.9953 at factors 1.07-1.15, 0.9949 at 1.02, 0.9966 at 1.9. After the encode, the
# delivered file's SSIM against the LANCZOS image is within 0.002 of the LANCZOS-encoded file's
# (grainy, JPEG q88: 0.9477 vs 0.9496 at 1.07, 0.9752 vs 0.9760 at 1.9; smooth looks equal to 4
# digits), a tenth of what the encode itself costs, and the file is 1-4 % smaller (9 % for the
# grainy hero as WebP). Beyond 2x LANCZOS stays (reducing_gap makes those cheap already, and fewer
# taps alias more as the factor grows), and so do upscales. The srcset (responsive.WidthCascade)
# keeps LANCZOS at every width: its widths are chosen on the bytes-by-width curve, and a filter
# switch at 2x would put a ~3 % step in that curve for ~25 ms a master.
BICUBIC_MAX_FACTOR = 2.0
# LANCZOS downscales by at least this factor box-reduce by an integer factor first (Pillow's
# reducing_gap): several times faster than a full LANCZOS, visually the same.
_REDUCING_GAP = 3.0


def saliency_map(img: Image.Image, size: int = 256) -> np.ndarray:
    """A float map in 0..1, longest side `size` (or the image's, if smaller), same aspect as `img`.

    High where the picture has structure (edges of the subject) or colours that differ from the
    image's average colour (a red bottle on a beige ground), lightly blurred so a subject reads
    as a region rather than an outline.
    """
    from skimage.color import rgb2lab  # scikit-image and SciPy load on first use: see imaging/metrics.py
    from skimage.filters import gaussian, sobel

    small = _thumbnail(img, size)
    lab = rgb2lab(np.asarray(small, dtype=np.float32) / 255.0)
    edges = _robust_normalise(sobel(lab[..., 0]))
    # Frequency-tuned distinctness: a slightly blurred Lab image against its mean colour.
    smooth = gaussian(lab, sigma=1.0, channel_axis=-1)
    distinct = _robust_normalise(np.linalg.norm(smooth - lab.reshape(-1, 3).mean(axis=0), axis=-1))
    sal = gaussian(0.5 * edges + 0.5 * distinct, sigma=max(1.0, max(small.size) / 128))
    sal *= (1 - _CENTRE_PRIOR_WEIGHT) + _CENTRE_PRIOR_WEIGHT * _centre_prior(sal.shape)
    peak = float(sal.max())
    return (sal / peak if peak > 0 else sal).astype(np.float32)


def _thumbnail(img: Image.Image, size: int) -> Image.Image:
    rgb = img.convert("RGB") if img.mode != "RGB" else img
    scale = min(1.0, size / max(rgb.width, rgb.height))
    if scale >= 1.0:
        return rgb
    new_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(new_size, Image.Resampling.BOX, reducing_gap=2.0)  # BOX: fast, grain averages out


def _robust_normalise(a: np.ndarray) -> np.ndarray:
    """Scale to 0..1 by the 99.5th percentile, so a few extreme pixels do not flatten the rest."""
    top = float(np.percentile(a, 99.5))
    if top <= 1e-9:
        return np.zeros_like(a, dtype=np.float32)
    return np.clip(a / top, 0.0, 1.0).astype(np.float32)


def _centre_prior(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    y = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    x = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    return np.exp(-(x[None, :] ** 2 + y[:, None] ** 2) / (2 * 0.3 ** 2))


# --------------------------------------------------------------------------- planning

def largest_window(src_w: int, src_h: int, target_w: int, target_h: int) -> tuple[int, int]:
    """Width and height of the largest window with the target's aspect that fits in the source."""
    if min(src_w, src_h, target_w, target_h) < 1:
        raise ValueError(f"sizes must be positive: source {src_w}x{src_h}, target {target_w}x{target_h}")
    if src_w * target_h >= src_h * target_w:  # source is wider than the target: full height
        return max(1, min(src_w, round(src_h * target_w / target_h))), src_h
    return src_w, max(1, min(src_h, round(src_w * target_h / target_w)))


def plan_crop(saliency: np.ndarray, src_w: int, src_h: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """The crop box (left, top, right, bottom) in source pixels for a target_w x target_h variant.

    The window is the largest of the target aspect; it slides along the one axis where it is
    shorter than the source, to where it holds the most saliency.
    """
    return plan_crop_keeping(saliency, src_w, src_h, target_w, target_h).box


@dataclass(frozen=True)
class CropPlan:
    """A crop box in source pixels, and why a box it was asked to keep is not wholly inside (None: all are)."""

    box: tuple[int, int, int, int]
    note: str | None = None


def plan_crop_keeping(saliency: np.ndarray, src_w: int, src_h: int, target_w: int, target_h: int,
                      keep: Sequence[tuple[int, int, int, int]] = ()) -> CropPlan:
    """`plan_crop`, never cutting through a box of `keep` (faces: left, top, right, bottom in source pixels).

    The window holds every box whole when it can (with a little room), else as many as it can while
    leaving the others wholly out; when every position cuts one, it keeps the largest whole (or, larger
    than the window, centres it) and the plan's note says so.
    """
    crop_w, crop_h = largest_window(src_w, src_h, target_w, target_h)
    if (crop_w, crop_h) == (src_w, src_h):
        return CropPlan((0, 0, src_w, src_h))
    sal = np.asarray(saliency, dtype=np.float64)
    # Subtract the background level so the subject, not the sheer area of ground, decides.
    sal = np.clip(sal - np.median(sal), 0.0, None)
    table = _summed_area_table(sal)
    horizontal = crop_w < src_w
    span = (src_w - crop_w) if horizontal else (src_h - crop_h)
    offsets = np.unique(np.round(np.linspace(0, span, min(span + 1, _MAX_CANDIDATES))).astype(int))
    if horizontal:
        masses = _window_masses(table, offsets, offsets + crop_w, np.zeros_like(offsets), np.full_like(offsets, src_h),
                                src_w, src_h)
    else:
        masses = _window_masses(table, np.zeros_like(offsets), np.full_like(offsets, src_w), offsets, offsets + crop_h,
                                src_w, src_h)
    allowed = _keeps_subject(sal, offsets, crop_w if horizontal else crop_h, src_w if horizontal else src_h,
                             horizontal)
    note = None
    if keep:
        spans = [(b[0], b[2]) if horizontal else (b[1], b[3]) for b in keep]
        keeps, note = _keeps_boxes(offsets, crop_w if horizontal else crop_h, spans, src_w if horizontal else src_h)
        allowed = keeps & allowed if (keeps & allowed).any() else keeps  # a face outranks the saliency subject
    masses = np.where(allowed, masses, -np.inf)
    best = _plateau_centre(masses, offsets)
    if horizontal:
        return CropPlan((best, 0, best + crop_w, crop_h), note)
    return CropPlan((0, best, crop_w, best + crop_h), note)


def _keeps_boxes(offsets: np.ndarray, window: int, spans: list[tuple[int, int]], src_len: int
                 ) -> tuple[np.ndarray, str | None]:
    """Which windows cut no span (each wholly inside or wholly out) and hold the most of them, and a note
    when not all can be held. Spans are tried with room around them first, then as they are."""
    for room in (_KEEP_ROOM, 0.0):
        padded = [(max(0.0, a - room * (b - a)), min(float(src_len), b + room * (b - a))) for a, b in spans]
        starts = np.array([a for a, _ in padded])[:, None]
        ends = np.array([b for _, b in padded])[:, None]
        inside = (offsets[None, :] <= starts) & (offsets[None, :] + window >= ends)
        outside = (offsets[None, :] >= ends) | (offsets[None, :] + window <= starts)
        lengths = (ends - starts)[:, 0]
        held = (inside * lengths[:, None]).sum(axis=0)  # longer spans (larger faces) count for more
        clean = (inside | outside).all(axis=0) & (held > 0)
        if clean.any():
            best = held[clean].max()
            chosen = clean & (held >= best)
            kept = int(inside[:, np.argmax(chosen)].sum())
            if kept == len(spans):
                return chosen, None
            if room == 0.0:
                return chosen, (f"kept {kept} of {len(spans)} faces whole: the crop cannot hold them all, "
                                "so the others are left out of it, not cut")
    largest = int(np.argmax(lengths))
    holds_largest = inside[largest]
    if holds_largest.any():
        return holds_largest, (f"the crop cuts {len(spans) - 1} face(s) whichever way it lies; it keeps the "
                               "largest face whole")
    centre = (starts[largest, 0] + ends[largest, 0]) / 2
    distance = np.abs(offsets + window / 2 - centre)
    return distance <= distance.min() + 0.5, (f"the largest face ({round(lengths[largest])} px) is larger than "
                                              f"the crop ({window} px): centred on it, it is cut")


def _subject_extent(sal: np.ndarray, horizontal: bool) -> tuple[float, float] | None:
    """Start and end (as fractions of the map) of the main subject along the sliding axis.

    The subject is the connected region of high saliency holding the most saliency mass: a
    product with its plinth, not the small props around it.
    """
    from scipy.ndimage import binary_dilation
    from skimage.measure import label

    peak = float(sal.max())
    if peak <= 0:
        return None
    # Dilate before labelling: a product's parts (cap, label, body, plinth) read as one subject.
    reach = max(1, round(max(sal.shape) * _SUBJECT_MERGE))
    labels = label(binary_dilation(sal >= _SUBJECT_LEVEL * peak, iterations=reach), connectivity=2)
    if labels.max() == 0:
        return None
    masses = np.bincount(labels.ravel(), weights=(sal * sal).ravel())  # squared: intensity beats area
    masses[0] = 0
    rows, cols = np.nonzero(labels == int(np.argmax(masses)))
    coords, length = (cols, sal.shape[1]) if horizontal else (rows, sal.shape[0])
    return coords.min() / length, (coords.max() + 1) / length


def _keeps_subject(sal: np.ndarray, offsets: np.ndarray, window: int, src_len: int, horizontal: bool) -> np.ndarray:
    """Which candidate windows keep the whole subject, with a little room, inside the crop.

    Pure mass maximisation happily trades half the product for two props; a crop that cuts the
    subject is the one failure a person notices first. If no window can hold the subject, the
    windows nearest to centring it are allowed.
    """
    extent = _subject_extent(sal, horizontal)
    if extent is None:
        return np.ones(offsets.shape, dtype=bool)
    start, end = extent[0] * src_len, extent[1] * src_len
    room = min(_SUBJECT_ROOM * window, max(0.0, (window - (end - start)) / 2))
    fits = (offsets <= start - room) & (offsets + window >= end + room)
    if fits.any():
        return fits
    centred = np.abs(offsets + window / 2 - (start + end) / 2)
    return centred <= centred.min() + 0.5


def _summed_area_table(a: np.ndarray) -> np.ndarray:
    """Integral image with a zero first row and column: sum of a[y0:y1, x0:x1] from 4 lookups."""
    table = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.float64)
    table[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return table


def _sample(table: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear lookup in the summed-area table at fractional map coordinates."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    xs, ys = np.clip(xs, 0, w), np.clip(ys, 0, h)
    x0, y0 = np.minimum(np.floor(xs).astype(int), w - 1), np.minimum(np.floor(ys).astype(int), h - 1)
    fx, fy = xs - x0, ys - y0
    top = table[y0, x0] * (1 - fx) + table[y0, x0 + 1] * fx
    bottom = table[y0 + 1, x0] * (1 - fx) + table[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _window_masses(table: np.ndarray, left: np.ndarray, right: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                   src_w: int, src_h: int) -> np.ndarray:
    """Saliency mass inside each source-pixel window (vectorised over candidates)."""
    sx = (table.shape[1] - 1) / src_w
    sy = (table.shape[0] - 1) / src_h
    x0, x1, y0, y1 = left * sx, right * sx, top * sy, bottom * sy
    return _sample(table, x1, y1) - _sample(table, x0, y1) - _sample(table, x1, y0) + _sample(table, x0, y0)


def _plateau_centre(masses: np.ndarray, offsets: np.ndarray) -> int:
    """Offset in the middle of the run of near-best candidates around the best one."""
    best = int(np.argmax(masses))
    floor = masses[best] - _PLATEAU_TOLERANCE * max(float(masses[best]), 1e-12)
    lo = hi = best
    while lo > 0 and masses[lo - 1] >= floor:
        lo -= 1
    while hi < len(masses) - 1 and masses[hi + 1] >= floor:
        hi += 1
    return int(round((offsets[lo] + offsets[hi]) / 2))


# --------------------------------------------------------------------------- rendering

def downscale_filter(src_len: float, dst_len: float) -> Image.Resampling:
    """The filter for resampling `src_len` pixels to `dst_len`: BICUBIC for a downscale by at most
    `BICUBIC_MAX_FACTOR`, LANCZOS for larger downscales and for upscales."""
    factor = src_len / max(dst_len, 1e-9)
    return Image.Resampling.BICUBIC if 1.0 < factor <= BICUBIC_MAX_FACTOR else Image.Resampling.LANCZOS


def render_variant(img: Image.Image, target_w: int, target_h: int, saliency: np.ndarray | None = None,
                   box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Crop `img` by the content-aware plan and resample it to exactly target_w x target_h.

    One resample straight from the source box (no intermediate crop copy): BICUBIC when the box is
    at most 2x the target (every social target from a 2048 px master: factors 1.07-1.90; full-size
    luma SSIM against LANCZOS >= 0.9959 on the bench masters, ~23 % cheaper: numbers at
    `BICUBIC_MAX_FACTOR`), LANCZOS with an integer box reduce first beyond that. A source
    smaller than the target is enlarged with LANCZOS; `upscale_factor` tells the caller so. The
    resample runs in libvips where it can (imagegen.imaging.resample: same kernels, 2-3.5x faster).
    """
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    if box is None:  # planned here unless the caller planned it (plan_crop_keeping: faces kept whole)
        box = plan_crop(saliency if saliency is not None else saliency_map(img), img.width, img.height,
                        target_w, target_h)
    resample = downscale_filter(max(box[2] - box[0], box[3] - box[1]), max(target_w, target_h))
    return resample_image(img, (target_w, target_h), resample, box=box, reducing_gap=_REDUCING_GAP)
