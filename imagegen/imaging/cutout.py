"""Background removal for product shots (`publish.background`): find the subject, cut it out, or put it on a colour.

No model weights may be downloaded, so the mask is classical: OpenCV's GrabCut (it ships inside the
`opencv-python-headless` wheel) seeded by a model of what a studio backdrop is. A backdrop is smooth
(gradients, soft light, blurred shapes) and a product is bounded by crisp edges, so on a reduced copy:

1. crisp edges (Canny; soft shapes and gradients give none) are closed at a few radii and their
   enclosed regions filled: those are objects for sure (GrabCut's definite foreground, eroded);
2. each edge chain's convex hull stands in for an outline that did not close (a podium's rim lost in
   its own shadow): probable foreground, left to GrabCut's colour models to decide;
3. the subject is the largest object and every object within `_MERGE_SHARE` of it (the product and
   the plinth it stands on, not the props around it); everything far from it is definite background;
4. a shadow cast on the backdrop (its colour, darker, and outside every tightly closed outline) is
   definite background too, even where its hard edge closed an outline around it with the podium;
5. GrabCut settles the probable pixels; the mask is scaled back up smoothly (its edge is the alpha).

Where it fails (measured in bench/bench_cutout.py, see README "Background removal"): backdrops with
crisp structure of their own (leading lines, a door frame, a hard light beam, a neon grid) read as
objects; on a grey backdrop a hard-edged contact shadow still can (a shadow is told by its colour, and
there a grey product has the same). `Cutout.problem` names masks that are
implausible (empty, most of the frame, along the frame's edge) so the gate can quarantine them.

OpenCV is imported on first use: `imagegen run` start-up does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

KEEP, REMOVE = "keep", "remove"  # publish.background's words (imagegen.brief checks the choice)
TRANSPARENT = "transparent"  # what a file's catalog row says when its background is alpha
# JPEG cannot carry alpha: a removed background is flattened onto white there, the codec's own rule
# (codec.prepare_for_format) and the packshot convention marketplaces ask for.
JPEG_BACKGROUND = "#ffffff"

# Long side of the reduced copy the mask is found on: the film grain averages out (BOX) and GrabCut
# costs ~0.3 s. A larger copy found fewer subjects (grain edges) on bench_cutout's scenes.
_WORK_SIDE = 512
# Canny hysteresis thresholds (L2 gradient of the 8-bit copy): a product's rim is far above, a soft
# backdrop shape far below.
_EDGE_LOW, _EDGE_HIGH = 20, 40
# Gaps in an outline up to about twice these radii (work pixels) are closed before filling.
_CLOSE_RADII = (1, 2, 3, 5)
# Objects this close to the subject (share of the short side) belong to it: a plinth, a strap.
# The renderer keeps props at least 0.05 short sides from the product group.
_MERGE_SHARE = 0.03
# An edge chain's hull larger than this share of the frame is backdrop structure, not an object.
_MAX_HULL_SHARE = 0.25
_GRABCUT_ROUNDS = 3
# Cast shadows (8-bit Lab units): the backdrop expected at a pixel is the Gaussian-weighted mean of the
# definite backdrop within about `_SHADOW_REACH` of the long side; a shadow is more than
# `_SHADOW_MIN_DARKER` darker than that and within `_SHADOW_MAX_SHIFT` of its a/b, on a backdrop of at
# least `_SHADOW_MIN_CHROMA`, and outside every outline already closed at `_TIGHT_RADII`.
_SHADOW_REACH, _SHADOW_MIN_DARKER, _SHADOW_MAX_SHIFT, _SHADOW_MIN_CHROMA = 0.08, 3.0, 6.0, 6.0
_TIGHT_RADII = (1, 2)
# Plausibility: below this share of the frame nothing was found; above it the backdrop was taken in.
MIN_COVERAGE, MAX_COVERAGE = 0.005, 0.85
# A subject runs along at most this share of the frame's edge, and reaches at most two of its sides (a
# side is reached when more than `_SIDE_TOUCH` of it is covered); a mask that does holds backdrop.
MAX_EDGE_CONTACT = 0.3
MAX_SIDES = 2
_SIDE_TOUCH = 0.02
# ... and along at most half of any one side: a floor taken in runs along most of the bottom while
# touching the other sides barely (on bench_cutout's scenes a true subject ran along at most 31 %).
MAX_SIDE_SHARE = 0.5


@dataclass(frozen=True)
class Cutout:
    """The subject's mask ("L", the image's size, 255 = subject, soft at the edge) and how it sits."""

    mask: Image.Image
    coverage: float       # share of the frame the subject covers
    edge_contact: float   # share of the frame's edge the subject runs along
    sides: int = 0        # how many of the frame's four sides it reaches
    widest_side: float = 0.0  # the largest share of one side the subject runs along

    def problem(self) -> str | None:
        """Why this mask is not a plausible subject, in one line; None when it is."""
        if self.coverage < MIN_COVERAGE:
            return f"the cut-out found no subject (it covers {self.coverage:.1%} of the frame)"
        if self.coverage > MAX_COVERAGE:
            return (f"the cut-out covers {self.coverage:.0%} of the frame: the subject could not be told "
                    "from the background")
        if self.edge_contact > MAX_EDGE_CONTACT or self.sides > MAX_SIDES:
            return (f"the cut-out runs along {self.edge_contact:.0%} of the frame's edge and reaches {self.sides} "
                    "of its sides: the background was taken for the subject")
        if self.widest_side > MAX_SIDE_SHARE:
            return (f"the cut-out runs along {self.widest_side:.0%} of one side of the frame: the background "
                    "was taken for the subject")
        return None

    def measurements(self) -> dict[str, Any]:
        """The gate's columns: the coverage, and the problem (None passes)."""
        return {"cutout_coverage": round(self.coverage, 4), "cutout_problem": self.problem()}


def find_subject(img: Image.Image) -> Cutout:
    """The main subject of a product shot on a studio backdrop (deterministic for the same pixels)."""
    rgb = img.convert("RGB") if img.mode != "RGB" else img
    return cutout_from_region(subject_region(rgb), rgb.size)


def work_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size of the reduced copy the mask is found on, for an image of `size`."""
    scale = min(1.0, _WORK_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def subject_region(rgb: Image.Image) -> np.ndarray:
    """The subject's pixels on the reduced copy (`work_size`), as booleans: the expensive part."""
    import cv2  # lazy: OpenCV costs ~0.1 s to import

    pixels = np.asarray(rgb.resize(work_size(rgb.size), Image.Resampling.BOX))
    edges = cv2.Canny(pixels, _EDGE_LOW, _EDGE_HIGH, L2gradient=True) > 0
    solid = _filled_outlines(edges)
    reach = max(1, round(_MERGE_SHARE * min(edges.shape)))
    region = _subject_group(solid | _edge_hulls(edges), reach)
    if region.any():
        backdrop = ~_dilate(region, 6)
        shadows = _cast_shadows(pixels, backdrop, edges, region)
        labels: np.ndarray = np.full(pixels.shape[:2], cv2.GC_PR_BGD, dtype=np.uint8)
        labels[region] = cv2.GC_PR_FGD
        labels[_erode(solid & region, 3)] = cv2.GC_FGD
        labels[backdrop | shadows] = cv2.GC_BGD
        cv2.setRNGSeed(0)  # GrabCut's k-means draws from OpenCV's thread RNG: the same pixels, the same mask
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(np.ascontiguousarray(pixels[..., ::-1]), labels, (0, 0, 0, 0), background, foreground,
                    _GRABCUT_ROUNDS, cv2.GC_INIT_WITH_MASK)
        region = _fill_holes(_subject_group((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD), reach))
    return region


def cutout_from_region(region: np.ndarray, size: tuple[int, int]) -> Cutout:
    """The `Cutout` of an image of `size` whose subject is `region` (from `subject_region`)."""
    mask = Image.fromarray(region.astype(np.uint8) * 255, "L").resize(size, Image.Resampling.BILINEAR)
    shares = [float(side.mean()) for side in _sides(region)]
    return Cutout(mask=mask, coverage=float(region.mean()), edge_contact=_edge_contact(region),
                  sides=sum(share > _SIDE_TOUCH for share in shares), widest_side=max(shares))


def cut_out(img: Image.Image, mask: Image.Image) -> Image.Image:
    """`img` as RGBA with `mask` as its alpha: the background transparent."""
    rgba = img.convert("RGB").convert("RGBA")
    rgba.putalpha(mask)
    return rgba


def on_colour(img: Image.Image, colour: str) -> Image.Image:
    """An RGBA image flattened onto a solid `#rrggbb`: outside the subject exactly that colour."""
    rgba = img.convert("RGBA")
    flat = Image.new("RGB", rgba.size, _rgb(colour))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def background_of(choice: str, fmt: str) -> str | None:
    """What a published file's background is for a `publish.background` choice: None (kept),
    `transparent`, or the colour it was flattened onto (JPEG cannot carry alpha)."""
    if choice == KEEP:
        return None
    if choice == REMOVE:
        return JPEG_BACKGROUND if fmt.upper() in ("JPEG", "JPG") else TRANSPARENT
    return choice


def finish_background(img: Image.Image, choice: str) -> Image.Image:
    """A cut-out variant as it is encoded: RGBA for `remove` (the codec flattens JPEG onto white), or
    flattened onto the brief's colour."""
    return img if choice in (KEEP, REMOVE) else on_colour(img, choice)


def _rgb(colour: str) -> tuple[int, int, int]:
    """A #rrggbb (as the brief normalises it) as 8-bit RGB."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _kernel(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), _kernel(radius)) > 0


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return cv2.erode(mask.astype(np.uint8), _kernel(radius)) > 0  # outside the frame counts as set


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_fill_holes

    return np.asarray(binary_fill_holes(mask), dtype=bool)


def _filled_outlines(edges: np.ndarray, radii: tuple[int, ...] = _CLOSE_RADII) -> np.ndarray:
    """Regions enclosed by crisp edges, outlines closed at each of `radii`, thin lines dropped."""
    import cv2

    filled = np.zeros(edges.shape, bool)
    for radius in radii:
        filled |= _erode(_fill_holes(_dilate(edges, radius)), radius)
    return cv2.morphologyEx(filled.astype(np.uint8), cv2.MORPH_OPEN, _kernel(2)) > 0


def _edge_hulls(edges: np.ndarray) -> np.ndarray:
    """The convex hull of every chain of edges, except hulls as large as backdrop structure."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(_dilate(edges, 1).astype(np.uint8), connectivity=8)
    hulls = np.zeros(edges.shape, np.uint8)
    limit = _MAX_HULL_SHARE * edges.size
    for index in range(1, count):
        x, y, w, h = (int(v) for v in stats[index, :4])
        if stats[index, cv2.CC_STAT_AREA] < 3:
            continue
        ys, xs = np.nonzero(labels[y:y + h, x:x + w] == index)
        hull = cv2.convexHull(np.stack([xs + x, ys + y], axis=1).astype(np.int32))
        if cv2.contourArea(hull) <= limit:
            cv2.fillConvexPoly(hulls, hull, 1)
    return hulls > 0


def _subject_group(objects: np.ndarray, reach: int) -> np.ndarray:
    """The largest object and every object within `reach` pixels of the group, grown until none is."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(objects.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(objects.shape, bool)
    chosen = {1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))}
    while True:
        near = _dilate(np.isin(labels, list(chosen)), reach)
        found = {int(k) for k in np.unique(labels[near & objects])} - {0}
        if found <= chosen:
            return np.isin(labels, list(chosen))
        chosen |= found


def _cast_shadows(pixels: np.ndarray, backdrop: np.ndarray, edges: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The pixels of `region` that are a shadow cast on the backdrop: of the backdrop's colour (as the
    definite `backdrop` around them predicts it), darker than it, and not enclosed by a tight crisp
    outline (a podium of the backdrop's colour is: its rim is crisp all round). On a grey backdrop a
    shadow and a grey product share their colour, so nothing is called a shadow there."""
    import cv2

    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
    weight = backdrop.astype(np.float32)
    sigma = _SHADOW_REACH * max(backdrop.shape)
    spread = cv2.GaussianBlur(weight, (0, 0), sigma)
    expected = cv2.GaussianBlur(lab * weight[..., None], (0, 0), sigma) / np.maximum(spread, 1e-6)[..., None]
    darker = lab[..., 0] < expected[..., 0] - _SHADOW_MIN_DARKER
    colour_shift = np.hypot(lab[..., 1] - expected[..., 1], lab[..., 2] - expected[..., 2])
    backdrop_chroma = np.hypot(expected[..., 1] - 128, expected[..., 2] - 128)  # 8-bit Lab: a, b centred on 128
    backdrop_colour = (colour_shift < _SHADOW_MAX_SHIFT) & (backdrop_chroma >= _SHADOW_MIN_CHROMA) & (spread > 1e-3)
    return darker & backdrop_colour & region & ~_filled_outlines(edges, _TIGHT_RADII)


def _sides(region: np.ndarray) -> tuple[np.ndarray, ...]:
    return region[0], region[-1], region[:, 0], region[:, -1]


def _edge_contact(region: np.ndarray) -> float:
    frame = np.concatenate(_sides(region))
    return float(frame.mean()) if frame.size else 0.0
