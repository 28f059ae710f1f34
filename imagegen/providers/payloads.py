"""Inline image payloads: images downscaled and encoded as JPEG/PNG bytes or JPEG data URLs for a request body.

Providers without an upload (chat completions) or with a cheap inline path (NVIDIA's `image` field)
take images as data URLs, which only work up to a size limit; these helpers fit an image under it.
Transparency is flattened onto white, since JPEG has none.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

# NVIDIA's inline (data URL) image inputs work up to about 180-200 KB; stay under the low end.
INLINE_DATA_URL_LIMIT = 180_000


def encode_jpeg(path: str | Path, *, max_side: int, quality: int = 90) -> tuple[bytes, tuple[int, int]]:
    """`path` flattened to RGB, downscaled so its longest side <= max_side, as JPEG bytes and size."""
    with Image.open(path) as im:
        im.load()
        image = _flatten_rgb(im)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), image.size


def encode_png(path: str | Path, *, max_side: int) -> tuple[bytes, tuple[int, int]]:
    """Like encode_jpeg, lossless (for asset uploads, where size does not matter as much)."""
    with Image.open(path) as im:
        im.load()
        image = _flatten_rgb(im)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), image.size


def _flatten_rgb(im: Image.Image) -> Image.Image:
    # transparency would turn black in JPEG; put it on white like a web page would
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def jpeg_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def fitted_jpeg_data_url(path: str | Path, *, limit: int = INLINE_DATA_URL_LIMIT,
                         sides: tuple[int, ...] = (1024, 768, 512, 384),
                         qualities: tuple[int, ...] = (85, 70, 55)) -> str:
    """The largest/best JPEG data URL of `path` under `limit` characters (for inline image inputs
    that have no upload alternative, such as chat completions)."""
    url = ""
    for side in sides:
        for quality in qualities:
            jpeg, _ = encode_jpeg(path, max_side=side, quality=quality)
            url = jpeg_data_url(jpeg)
            if len(url) <= limit:
                return url
    return url  # the smallest we can make; the server will say if it is still too big
