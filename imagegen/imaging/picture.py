"""The <picture> element for responsive renditions: AVIF and WebP sources, then the JPEG/PNG <img>.

`picture_html` writes it with `sizes`, escaped `alt`, srcset URLs made safe (commas and spaces
percent-encoded) and the intrinsic width/height, so the browser reserves the box (no layout shift).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Literal

from imagegen.imaging.codec import MIME_TYPES, normalise_format

# <picture> source order: the browser takes the first type it supports, so best compression first.
PICTURE_ORDER: tuple[str, ...] = ("AVIF", "WEBP", "JPEG", "PNG")


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
