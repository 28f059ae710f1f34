"""Brand operations on finished images: border, logo, palette swatch, grading, outpaint canvas.

The seed listed these as ImageMagick one-liners and sketches; here each is a small pure
function (PIL image in, new image or small result out) that never modifies its input:

* `add_border`: a solid frame (``-border 10 -bordercolor white``), width in pixels or as a
  share of the shorter side so it looks the same on every size of a set.
* `overlay_logo`: the logo watermark (the seed's add_watermark, done right): scaled to a share
  of the image width, its own alpha times `opacity`, a margin in from the chosen corner.
* `palette_swatch`: the dominant colours (``-colors 5 -unique-colors``) as a hex list with shares
  and as a swatch image whose bars are as wide as each colour's share.
* `grade`: colour-grading presets that are real operations, not prompt words: warm/cool are a
  white-balance shift (per-channel gains in linear light for temperature and tint, normalised so
  luminance is unchanged), vintage is a sepia tone with lifted blacks and softer contrast,
  dramatic is contrast plus saturation with an S-curve.
* `outpaint_canvas`: pads an image to a new aspect for a provider edit (extend, don't crop):
  the original in place, the new area filled with mirrored and heavily blurred edges so the
  model sees plausible colour and no duplicated detail, a mask of what to generate, and the
  instruction text.

Background removal lives in imagegen.imaging.cutout (classical, no model weights: the PyPI libraries
checked, rembg, backgroundremover, transparent-background, carvekit, fetch theirs on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from imagegen.imaging.logo import DEFAULT_LOGO_SCALE, mark_size
from imagegen.imaging.metrics import dominant_colors, hex_to_rgb, rgb_to_hex

__all__ = [
    "GRADING_PRESETS", "OutpaintRequest", "PaletteSwatch", "add_border", "grade", "outpaint_canvas",
    "overlay_logo", "palette_swatch", "white_balance",
]

Colour = str | tuple[int, int, int]
GradingPreset = Literal["warm", "cool", "vintage", "dramatic"]
GRADING_PRESETS: tuple[str, ...] = ("warm", "cool", "vintage", "dramatic")
WARM_TEMPERATURE = 0.5  # white-balance shift of the warm/cool presets, on white_balance's -1..1 scale


def _rgb(colour: Colour) -> tuple[int, int, int]:
    if isinstance(colour, str):
        return hex_to_rgb(colour)
    r, g, b = (int(c) for c in colour)
    return r, g, b


# --------------------------------------------------------------------------- border


def add_border(img: Image.Image, width: int | float = 0.02, colour: Colour = "#ffffff") -> Image.Image:
    """A solid border around `img`: `width` in pixels (int) or as a share of the shorter side (float).

    The image grows by twice the border; alpha images get an opaque border.
    """
    px = round(min(img.size) * width) if isinstance(width, float) else int(width)
    if px < 0:
        raise ValueError(f"border width must not be negative, got {width}")
    if px == 0:
        return img.copy()
    rgb = _rgb(colour)
    fill: tuple[int, ...] | int
    if img.mode == "RGBA":
        fill = rgb + (255,)
    elif img.mode == "L":
        fill = round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    else:
        img, fill = img.convert("RGB"), rgb
    return ImageOps.expand(img, border=px, fill=fill)


# --------------------------------------------------------------------------- logo

_POSITIONS = ("se", "sw", "ne", "nw", "center")


def overlay_logo(img: Image.Image, logo: Image.Image, position: str = "se", opacity: float = 0.5,
                 scale: float = DEFAULT_LOGO_SCALE, margin: float = 0.03) -> Image.Image:
    """Composite `logo` onto a copy of `img` (the seed's add_watermark, done right).

    The logo is resized to `scale` of the image width (aspect kept, LANCZOS), its own alpha is
    multiplied by `opacity` (the seed assigned an attribute Pillow never reads), and it sits
    `margin` of the shorter image side in from the chosen corner. Returns the input's mode.
    """
    if position not in _POSITIONS:
        raise ValueError(f"logo position {position!r} is not one of {_POSITIONS}")
    if not 0.0 <= opacity <= 1.0 or not 0.0 < scale <= 1.0 or not 0.0 <= margin < 0.5:
        raise ValueError("opacity must be 0..1, scale 0..1 (exclusive of 0), margin 0..0.5")
    mark = logo.convert("RGBA")
    # a mark prepared at exactly this size (imaging.logo.prepare_marks) is copied, not resampled again
    mark = mark.resize(mark_size(img.width, mark.size, scale), Image.Resampling.LANCZOS)
    alpha = mark.getchannel("A").point(lambda a: round(a * opacity))
    mark.putalpha(alpha)
    x, y = _logo_origin(img.size, mark.size, position, round(min(img.size) * margin))
    base = img.convert("RGBA")
    base.alpha_composite(mark, (x, y))
    return base if img.mode == "RGBA" else base.convert(img.mode if img.mode in ("RGB", "L") else "RGB")


def _logo_origin(size: tuple[int, int], mark: tuple[int, int], position: str, pad: int) -> tuple[int, int]:
    (w, h), (mw, mh) = size, mark
    if position == "center":
        return (w - mw) // 2, (h - mh) // 2
    x = pad if position.endswith("w") else w - mw - pad
    y = pad if position.startswith("n") else h - mh - pad
    # alpha_composite refuses negative offsets: a logo larger than the image pins to the corner
    return max(0, x), max(0, y)


# --------------------------------------------------------------------------- palette


@dataclass(frozen=True)
class PaletteSwatch:
    """Dominant colours most frequent first, their pixel shares, and a swatch image of them."""

    hex: list[str]
    shares: list[float]
    image: Image.Image


def palette_swatch(img: Image.Image, k: int = 5, size: tuple[int, int] = (500, 100)) -> PaletteSwatch:
    """The `k` dominant colours (see metrics.dominant_colors) and a swatch: one vertical bar per
    colour, left to right by frequency, each as wide as its share (at least 1 px)."""
    dominant = dominant_colors(img.convert("RGB"), k=k)
    total = sum(share for _, share in dominant) or 1.0
    shares = [share / total for _, share in dominant]
    swatch = Image.new("RGB", size, (255, 255, 255))
    x = 0
    for index, ((colour, _), share) in enumerate(zip(dominant, shares)):
        right = size[0] if index == len(dominant) - 1 else min(size[0], x + max(1, round(share * size[0])))
        swatch.paste(colour, (x, 0, right, size[1]))
        x = right
    return PaletteSwatch(hex=[rgb_to_hex(c) for c, _ in dominant], shares=[round(s, 4) for s in shares],
                         image=swatch)


# --------------------------------------------------------------------------- grading

_SRGB = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4)
_REC709 = np.array([0.2126, 0.7152, 0.0722])


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


def white_balance_gains(temperature: float, tint: float = 0.0) -> tuple[float, float, float]:
    """Linear-light RGB gains for a temperature (+ warmer, - cooler) and tint (+ magenta, - green)
    shift, each in -1..1, scaled so that Rec. 709 luminance of a grey stays the same."""
    if not (-1.0 <= temperature <= 1.0 and -1.0 <= tint <= 1.0):
        raise ValueError("temperature and tint must be in -1..1")
    # At +-1 the red/blue gains are roughly those of a 2000 K move around daylight (6500 K).
    gains = np.array([1.0 + 0.35 * temperature, 1.0 - 0.15 * tint, 1.0 - 0.35 * temperature])
    gains /= float(_REC709 @ gains)
    red, green, blue = (float(g) for g in gains)
    return red, green, blue


def white_balance(img: Image.Image, temperature: float, tint: float = 0.0) -> Image.Image:
    """Per-channel gains applied in linear light (as a camera's white balance does), via LUTs."""
    gains = white_balance_gains(temperature, tint)
    rgb, alpha = _split_alpha(img)
    luts = [np.round(_encode_srgb(_LINEAR * g) * 255).astype(np.uint8).tolist() for g in gains]
    return _join_alpha(rgb.point(luts[0] + luts[1] + luts[2]), alpha)


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), rgba.getchannel("A")
    return img.convert("RGB"), None


def _join_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return rgb
    rgb.putalpha(alpha)
    return rgb


def _sepia(rgb: Image.Image) -> Image.Image:
    """Monochrome toned from dark brown through tan to cream, lifted blacks and softer whites:
    the faded print look. Midtones land near (170, 140, 105) for a mid grey."""
    return ImageOps.colorize(rgb.convert("L"), black=(40, 26, 13), white=(250, 236, 205), mid=(170, 140, 105))


def _s_curve(strength: float) -> list[int]:
    """Tone curve steepening midtones and rolling off ends; strength 0 is the identity."""
    x = _SRGB
    curved = x + strength * (x - 0.5) * (1 - np.abs(2 * x - 1)) * 0.8
    return np.round(np.clip(curved, 0, 1) * 255).astype(np.uint8).tolist()


def grade(img: Image.Image, preset: GradingPreset, strength: float = 1.0) -> Image.Image:
    """Apply a colour-grading preset; `strength` 0..1 blends it with the original.

    warm: white balance +0.5 temperature (~+10 levels red, -11 blue on mid grey), slight
    magenta; cool: the mirror image, slight green;
    vintage: 70 % sepia tone, contrast 0.85, blacks lifted; dramatic: contrast 1.3,
    saturation 1.3 and an S-curve. Alpha is kept as it is.
    """
    if preset not in GRADING_PRESETS:
        raise ValueError(f"unknown grading preset {preset!r}; expected one of {GRADING_PRESETS}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be 0..1, got {strength}")
    rgb, alpha = _split_alpha(img)
    if preset == "warm":
        graded = white_balance(rgb, WARM_TEMPERATURE, 0.05)
    elif preset == "cool":
        graded = white_balance(rgb, -WARM_TEMPERATURE, -0.05)
    elif preset == "vintage":
        graded = Image.blend(rgb, _sepia(rgb), 0.7)
        graded = ImageEnhance.Contrast(graded).enhance(0.85)
        graded = graded.point(lambda v: round(18 + v * (250 - 18) / 255))  # faded blacks, soft whites
    else:
        graded = ImageEnhance.Contrast(rgb).enhance(1.3)
        graded = ImageEnhance.Color(graded).enhance(1.3)
        graded = graded.point(_s_curve(0.5) * 3)
    if strength < 1.0:
        graded = Image.blend(rgb, graded, strength)
    return _join_alpha(graded, alpha)


# --------------------------------------------------------------------------- outpainting

OUTPAINT_INSTRUCTION = (
    "Extend the scene outward into the soft, blurred border area. Keep the sharp original region exactly "
    "as it is. Continue the background, surfaces, lighting, perspective, colour palette and film grain "
    "seamlessly across the seam. Do not add text, logos, people or new products."
)


@dataclass(frozen=True)
class OutpaintRequest:
    """What a provider edit call needs to extend an image to a new aspect.

    `image` is the padded canvas (original pixels in `box`, blurred mirrored fill elsewhere);
    `mask` is L mode, 255 where the model must generate (new area plus a `seam` px overlap into
    the original so the join can blend), 0 where pixels must stay. `rgba` is the same canvas
    with alpha 0 in the masked area, for APIs (OpenAI-style edits) that read the mask from
    transparency. `box` is (left, top, right, bottom) of the original on the canvas.
    """

    image: Image.Image
    mask: Image.Image
    rgba: Image.Image
    box: tuple[int, int, int, int]
    instruction: str

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def outpaint_size(width: int, height: int, aspect: float, multiple_of: int = 1) -> tuple[int, int]:
    """Smallest canvas of `aspect` (w/h) that contains width x height, sides rounded up to `multiple_of`."""
    if aspect <= 0 or multiple_of < 1:
        raise ValueError("aspect must be positive and multiple_of at least 1")
    new_w, new_h = (max(width, round(height * aspect)), height) if width / height < aspect \
        else (width, max(height, round(width / aspect)))
    up = lambda v: -(-v // multiple_of) * multiple_of  # noqa: E731 - ceiling to a multiple
    return up(new_w), up(new_h)


def outpaint_canvas(img: Image.Image, aspect: float | tuple[int, int], *,
                    anchor: tuple[float, float] = (0.5, 0.5), seam: int = 8, blur_radius: float | None = None,
                    multiple_of: int = 1, subject_hint: str | None = None) -> OutpaintRequest:
    """Pad `img` to `aspect` (a ratio, or a (w, h) pair) for a provider's outpainting edit.

    The original keeps its resolution; `anchor` places it (0.5, 0.5 centred; 0 left/top; 1
    right/bottom). The fill mirrors the image's own edges (reflection has no hard seam, unlike
    a flat colour) and is blurred with a radius of ~4 % of the canvas so the model is steered on
    colour and light but never copies mirrored objects. `subject_hint` is appended to the
    instruction (e.g. "a perfume bottle on marble").
    """
    ratio = aspect[0] / aspect[1] if isinstance(aspect, tuple) else float(aspect)
    src = img.convert("RGB")
    canvas_w, canvas_h = outpaint_size(src.width, src.height, ratio, multiple_of)
    left = round((canvas_w - src.width) * min(max(anchor[0], 0.0), 1.0))
    top = round((canvas_h - src.height) * min(max(anchor[1], 0.0), 1.0))
    box = (left, top, left + src.width, top + src.height)
    pads = ((top, canvas_h - box[3]), (left, canvas_w - box[2]), (0, 0))
    mirrored = Image.fromarray(np.pad(np.asarray(src), pads, mode="symmetric"))
    radius = blur_radius if blur_radius is not None else max(canvas_w, canvas_h) * 0.04
    canvas = mirrored.filter(ImageFilter.GaussianBlur(radius))
    canvas.paste(src, box[:2])
    mask = _outpaint_mask((canvas_w, canvas_h), box, seam)
    rgba = canvas.copy()
    rgba.putalpha(ImageOps.invert(mask))
    instruction = OUTPAINT_INSTRUCTION + (f" The image shows {subject_hint.strip()}." if subject_hint else "")
    return OutpaintRequest(image=canvas, mask=mask, rgba=rgba, box=box, instruction=instruction)


def _outpaint_mask(size: tuple[int, int], box: tuple[int, int, int, int], seam: int) -> Image.Image:
    """255 outside `box` and in a `seam`-px band inside its padded edges, 0 on the rest of the original."""
    mask = Image.new("L", size, 255)
    w, h = size
    # The seam only overlaps the original along edges that border new area, never the canvas edge.
    keep = (box[0] + (seam if box[0] > 0 else 0), box[1] + (seam if box[1] > 0 else 0),
            box[2] - (seam if box[2] < w else 0), box[3] - (seam if box[3] < h else 0))
    if keep[0] < keep[2] and keep[1] < keep[3]:
        mask.paste(0, keep)
    return mask
