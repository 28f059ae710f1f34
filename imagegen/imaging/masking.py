"""Masked inpainting in pixels: a mask checked and fitted to a master, feathered, and an edit composited through it.

FLUX.1 Kontext and neuroflash `/edit` take no mask, so the provider edits the whole image and only the
pixels inside the mask are taken from its answer. The mask is a PNG whose white means "repaint" (grey is a
partial weight, an alpha channel counts as black where transparent). After feathering, a pixel whose
weight is 0 keeps the original's decoded value exactly, and one whose weight is 255 takes the edit's.

Size rule: a mask of the master's size is used as it is; one of the master's aspect ratio (within 1 %)
is resized to it (bilinear, so its edges stay soft); any other size is refused, naming both sizes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from imagegen.imaging.brief_image import read_brief_image

MASK_CAPS = "a PNG (white = repaint, black = keep) of at most 20 MB and 16 megapixels"
ASPECT_TOLERANCE = 0.01  # a mask drawn at another resolution of the same frame still fits
DEFAULT_FEATHER = 0.01  # the soft edge's radius as a share of the master's shorter side


class MaskError(ValueError):
    """Why a mask is refused, worded for ``subjects[i].inpaint.mask: <reason>``."""


@dataclass(frozen=True)
class LoadedMask:
    """A checked mask: its weights (mode L, 0 keep .. 255 repaint) and the sha256 of its file."""

    weights: Image.Image
    sha256: str


def load_mask(path: Path) -> LoadedMask:
    """The mask PNG at `path` as weights; MaskError if it is not a whole PNG within the caps, or all black."""
    try:
        data, image = read_brief_image(path, ("PNG",), MASK_CAPS, noun="the mask", format_word="PNG")
    except ValueError as exc:
        raise MaskError(str(exc).replace("a PNG, JPEG or WebP image", "a PNG")) from None
    weights = mask_weights(image)
    if weights.getextrema()[1] == 0:
        raise MaskError("the mask is all black: nothing would be repainted (white marks what to repaint)")
    return LoadedMask(weights=weights, sha256=hashlib.sha256(data).hexdigest())


def mask_weights(image: Image.Image) -> Image.Image:
    """Greyscale weights of a mask image; transparent pixels count as black (keep)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    return image.convert("L")


def fit_mask(weights: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`weights` at `size` by the module's size rule; MaskError naming both sizes otherwise."""
    if weights.size == size:
        return weights
    mask_aspect, aspect = weights.width / weights.height, size[0] / size[1]
    if abs(mask_aspect / aspect - 1) > ASPECT_TOLERANCE:
        raise MaskError(f"the mask is {weights.width}x{weights.height} px but the master is {size[0]}x{size[1]}: "
                        f"give a mask of the master's size or of its aspect ratio")
    return weights.resize(size, Image.Resampling.BILINEAR)


def feather_radius(size: tuple[int, int], feather: float) -> float:
    """The blur radius in pixels of a `feather` share of the shorter side."""
    return feather * min(size)


def feathered(weights: Image.Image, radius: float) -> Image.Image:
    """`weights` with soft edges: a Gaussian blur of `radius` px (0 leaves them as they are)."""
    return weights.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else weights


def composite(original: Image.Image, edited: Image.Image, weights: Image.Image) -> Image.Image:
    """`edited` blended onto `original` through `weights` (the original's size and mode).

    The edit is resized to the original's size first (providers answer at their own sizes). Where a
    weight is 0 the original's values are copied, not blended, so they stay exactly as they were."""
    mode = original.mode if original.mode in ("RGB", "RGBA", "L") else "RGB"
    base = np.asarray(original.convert(mode))
    if edited.size != original.size:
        edited = edited.resize(original.size, Image.Resampling.LANCZOS)
    top = np.asarray(edited.convert(mode))
    if weights.size != original.size:
        raise MaskError(f"the mask is {weights.width}x{weights.height} px, the image {original.width}x"
                        f"{original.height}: fit the mask first")
    alpha = np.asarray(weights.convert("L"), dtype=np.uint16)
    if base.ndim == 3:
        alpha = alpha[:, :, None]
    blended = (base.astype(np.uint16) * (255 - alpha) + top.astype(np.uint16) * alpha + 127) // 255
    out = np.where(alpha == 0, base, blended.astype(np.uint8))
    return Image.fromarray(np.ascontiguousarray(out), mode)


def inpaint_composite(original: Image.Image, edited: Image.Image, mask: Image.Image, feather: float
                      ) -> tuple[Image.Image, Image.Image]:
    """The composite of a whole-image edit inside the fitted, feathered `mask`, and the weights used."""
    weights = feathered(fit_mask(mask, original.size), feather_radius(original.size, feather))
    return composite(original, edited, weights), weights
