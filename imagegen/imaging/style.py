"""Style transfer in pixels: the two-panel canvas an image edit reads a style reference from, and local stand-ins.

FLUX.1 Kontext takes one input image, so a style reference goes in beside the content: the canvas holds
the master on the left and the reference (fitted, centred on grey) on the right, each panel the master's
size; the edit is asked to restyle the left panel, and the left half of its answer is the new master.
neuroflash can edit only images it made (no upload), so it gets the reference in words
(`describe_reference`). The offline `local` provider moves the reference's colour statistics onto the
master (`transfer_colours`): a stand-in whose result is known exactly, not a learned style.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imagegen.imaging.brief_image import read_brief_image

REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")
REFERENCE_CAPS = "a PNG, JPEG or WebP image of at most 20 MB and 16 megapixels"
PANEL_BACKGROUND = (128, 128, 128)
# The request spec key the offline `local` edit reads a style reference file from.
STYLE_REFERENCE_KEY = "style_reference_path"


class StyleReferenceError(ValueError):
    """Why a style reference image is refused, worded for ``subjects[i].style_reference: <reason>``."""


@dataclass(frozen=True)
class LoadedReference:
    """A checked style reference: its pixels (RGB) and the sha256 of its file."""

    image: Image.Image
    sha256: str


def load_reference(path: Path) -> LoadedReference:
    """The style reference at `path`; StyleReferenceError unless it is a whole PNG, JPEG or WebP within the caps."""
    try:
        data, image = read_brief_image(path, REFERENCE_FORMATS, REFERENCE_CAPS, noun="the image")
    except ValueError as exc:
        raise StyleReferenceError(str(exc)) from None
    return LoadedReference(image=_flat_rgb(image), sha256=hashlib.sha256(data).hexdigest())


def _flat_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, PANEL_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def two_panel_canvas(content: Image.Image, reference: Image.Image) -> Image.Image:
    """The content on the left, the reference fitted and centred on grey on the right; each panel the content's size."""
    width, height = content.size
    canvas = Image.new("RGB", (2 * width, height), PANEL_BACKGROUND)
    canvas.paste(content.convert("RGB"), (0, 0))
    fitted = reference.convert("RGB")
    fitted.thumbnail((width, height), Image.Resampling.LANCZOS)
    if fitted.width < width and fitted.height < height:  # a small reference is enlarged to fill its panel
        scale = min(width / fitted.width, height / fitted.height)
        fitted = fitted.resize((max(1, round(fitted.width * scale)), max(1, round(fitted.height * scale))),
                               Image.Resampling.LANCZOS)
    canvas.paste(fitted, (width + (width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def left_panel(edited: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The left half of an edited two-panel canvas, at the master's `size`."""
    half = edited.crop((0, 0, max(1, edited.width // 2), edited.height))
    return half.convert("RGB").resize(size, Image.Resampling.LANCZOS) if half.size != size else half.convert("RGB")


def transfer_colours(content: Image.Image, reference: Image.Image) -> Image.Image:
    """Each RGB channel of `content` shifted and scaled to the reference's mean and spread (Reinhard-style)."""
    source = np.asarray(content.convert("RGB"), dtype=np.float32)
    target = np.asarray(reference.convert("RGB"), dtype=np.float32)
    src_mean, src_std = source.mean(axis=(0, 1)), source.std(axis=(0, 1))
    ref_mean, ref_std = target.mean(axis=(0, 1)), target.std(axis=(0, 1))
    scale = np.where(src_std > 1e-6, ref_std / np.maximum(src_std, 1e-6), 0.0).astype(np.float32)
    out = (source - src_mean) * scale + ref_mean
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def describe_reference(reference: Image.Image, colours: int = 4) -> str:
    """The reference's look in words (dominant colours, tone, contrast, saturation) for edits that cannot see it."""
    small = reference.convert("RGB")
    small.thumbnail((128, 128))
    pixels = np.asarray(small, dtype=np.float64) / 255.0
    quantised = small.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    counts = sorted(quantised.getcolors() or [], reverse=True)
    hexes = ["#{:02x}{:02x}{:02x}".format(*palette[3 * index:3 * index + 3])
             for _, index in counts[:colours] if isinstance(index, int)]
    luma = pixels @ np.array([0.299, 0.587, 0.114])
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    warmth = float((pixels[:, :, 0] - pixels[:, :, 2]).mean())
    tone = "dark" if luma.mean() < 0.35 else "bright" if luma.mean() > 0.65 else "mid-toned"
    contrast = ("high-contrast" if luma.std() > 0.25 else "soft, low-contrast" if luma.std() < 0.12
                else "moderate-contrast")
    colourfulness = "vivid" if saturation.mean() > 0.4 else "muted" if saturation.mean() < 0.15 else "natural"
    temperature = "warm" if warmth > 0.06 else "cool" if warmth < -0.06 else "neutral"
    return (f"a {tone}, {contrast} look with {colourfulness}, {temperature} colours "
            f"(palette {', '.join(hexes)})")
