"""Published files: encoded with XMP provenance that marks them AI-generated, then written atomically.

Each published file carries an XMP packet with the IPTC Digital Source Type
(``trainedAlgorithmicMedia``: the marker Google, Meta and the C2PA tooling read), the prompt as
``dc:description``, and our own namespace with provider, model and seed, so a file found
anywhere can be traced back to the catalog row that made it.

The pixels are encoded by `imagegen.imaging.codec` (the one encoder), in memory, and then written
in one atomic write (`imagegen.files.write_atomically`): a crash never leaves half a file where a
published key is expected. Output is deterministic for identical input (no timestamps anywhere),
so a rerun produces the same bytes and the same sha256, and content-addressed stores upload
nothing twice.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image
from pydantic import BaseModel, ConfigDict

from imagegen.files import write_atomically
from imagegen.imaging.codec import (
    MAX_ENCODES,
    PNG_XMP_KEY,
    QUALITY_RANGE,
    bisect_quality,
    decode,
    encode_bytes,
    luma_ssim,
    palette_quantise,
    prepare_for_format,
)

_IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    # Created by a generative model from a prompt.
    "trainedAlgorithmicMedia": _IPTC_DST + "trainedAlgorithmicMedia",
    # A real or generated image edited or composited with generative output (inpainting, Kontext).
    "compositeWithTrainedAlgorithmicMedia": _IPTC_DST + "compositeWithTrainedAlgorithmicMedia",
}

XMP_NAMESPACE = "https://imagegen-flows.dev/ns/1.0/"

# Start quality of a published file when none is given; a byte budget bisects down from here to
# the bottom of codec.QUALITY_RANGE (below it the result would fail the artefact gate anyway).
# Higher than codec.DEFAULT_QUALITY, which is for the responsive web renditions.
PUBLISH_QUALITY = {"JPEG": 88, "WEBP": 85, "AVIF": 60}

_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Characters XML 1.0 forbids outright (C0 controls other than tab, LF, CR).
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class EncodeResult(BaseModel):
    """One encoded file: small and picklable, like every result that travels between tasks."""

    model_config = ConfigDict(frozen=True)

    path: str
    format: str
    bytes: int
    quality: int | None  # None for PNG
    width: int
    height: int
    sha256: str
    attempts: int = 1  # encodes made (budget fitting bisects)
    within_budget: bool = True  # False when max_bytes could not be met
    palette: bool = False  # True when PNG fell back to 256 dithered colours to fit
    ssim: float | None = None  # against the source, when a floor was asked for
    floor_violated: bool = False  # the budget pushed quality under the perceptual floor
    reason: str | None = None  # why the budget or the floor was not met


# --------------------------------------------------------------------------- XMP

def _xml_text(value: object) -> str:
    return escape(_XML_FORBIDDEN.sub("", str(value)))


def _source_type_uri(source_type: str) -> str:
    if source_type in DIGITAL_SOURCE_TYPES:
        return DIGITAL_SOURCE_TYPES[source_type]
    if source_type in DIGITAL_SOURCE_TYPES.values():
        return source_type
    raise ValueError(f"unknown digital source type {source_type!r}; expected one of {sorted(DIGITAL_SOURCE_TYPES)}")


def _lang_alt(tag: str, text: str) -> str:
    return (f"   <{tag}><rdf:Alt><rdf:li xml:lang=\"x-default\">{_xml_text(text)}</rdf:li></rdf:Alt></{tag}>\n")


def build_xmp(*, prompt: str, model: str, provider: str, seed: int,
              source_type: str = "trainedAlgorithmicMedia", title: str | None = None,
              extra: dict[str, str] | None = None) -> bytes:
    """A complete XMP packet (UTF-8) marking an image as AI-generated, with its provenance.

    `extra` adds more ``imagegen:`` properties; keys must be XML names. No timestamps: identical
    arguments give identical bytes.
    """
    props = {"provider": provider, "model": model, "seed": str(int(seed))}
    for key, value in (extra or {}).items():
        if not _XML_NAME.match(key) or key in props:
            raise ValueError(f"extra XMP key {key!r} is not a usable XML name")
        props[key] = value
    lines = [
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n',
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n',
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n',
        '  <rdf:Description rdf:about=""\n',
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n',
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n',
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n',
        f'    xmlns:imagegen="{XMP_NAMESPACE}">\n',
        f"   <Iptc4xmpExt:DigitalSourceType>{_source_type_uri(source_type)}</Iptc4xmpExt:DigitalSourceType>\n",
        "   <xmp:CreatorTool>imagegen-flows</xmp:CreatorTool>\n",
        _lang_alt("dc:description", prompt),
    ]
    if title:
        lines.append(_lang_alt("dc:title", title))
    lines += [f"   <imagegen:{key}>{_xml_text(value)}</imagegen:{key}>\n" for key, value in props.items()]
    lines += ["  </rdf:Description>\n", " </rdf:RDF>\n", "</x:xmpmeta>\n", '<?xpacket end="w"?>']
    return "".join(lines).encode("utf-8")


def read_xmp(path: str | Path) -> str | None:
    """The XMP packet of a PNG (iTXt), JPEG (APP1), WEBP or AVIF file as text, or None."""
    with Image.open(path) as im:
        raw = im.info.get("xmp") or im.info.get(PNG_XMP_KEY)
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.rstrip("\x00 \n\r\t")  # JPEG/WebP writers may pad the packet


# --------------------------------------------------------------------------- encoding

def _fit_quality(img: Image.Image, fmt: str, xmp: bytes, start: int, floor: int,
                 max_bytes: int | None) -> tuple[bytes, int, int, bool]:
    """Highest quality whose bytes fit `max_bytes`: (data, quality, encodes, fits).

    One bisection serves the whole project (codec.bisect_quality): if even the lowest
    quality is over budget, the smallest result comes back with fits=False, to be reported.
    """
    def encode(quality: int) -> bytes:
        return encode_bytes(img, fmt, quality, xmp=xmp)

    if max_bytes is None:
        return encode(start), start, 1, True
    search = bisect_quality(encode, max_bytes, floor, start, max_encodes=MAX_ENCODES)
    return search.data, search.quality, len(search.probes), search.fits


def _fit_png(img: Image.Image, xmp: bytes, max_bytes: int | None) -> tuple[bytes, int, bool, bool]:
    """PNG by a ladder of cost: fast deflate, then Pillow's optimize, then 256 dithered colours.

    Returns (data, encodes, palette, fits). Lossless PNG has no quality knob to bisect.
    """
    data = encode_bytes(img, "PNG", xmp=xmp)
    if max_bytes is None or len(data) <= max_bytes:
        return data, 1, False, True
    data = min(data, encode_bytes(img, "PNG", xmp=xmp, png_optimize=True), key=len)
    if len(data) <= max_bytes:
        return data, 2, False, True
    # real Floyd-Steinberg dithering: Pillow's quantize() ignores `dither` when it builds the palette itself
    data = encode_bytes(palette_quantise(img), "PNG", xmp=xmp, png_optimize=True)
    return data, 3, True, len(data) <= max_bytes


def encode_image(img: Image.Image, path: str | Path, fmt: str, *, xmp: bytes, quality: int | None = None,
                 max_bytes: int | None = None, ssim_floor: float | None = None) -> EncodeResult:
    """Encode `img` as PNG, JPEG, WEBP or AVIF with the XMP packet, and write it to `path`.

    With `max_bytes`, a lossy format lowers its quality (bisection, at most MAX_ENCODES encodes)
    to the highest that fits; a PNG over budget falls back to 256 dithered colours. Either way
    the result says whether the budget was met rather than raising. With `ssim_floor`, a budget
    that pushed the encode under that SSIM against the source is reported (floor_violated) instead
    of met silently.
    """
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in ("PNG", "JPEG", "WEBP", "AVIF"):
        raise ValueError(f"unsupported output format {fmt!r}; expected PNG, JPEG, WEBP or AVIF")
    path = Path(path)
    prepared = prepare_for_format(img, fmt)
    palette = False
    if fmt == "PNG":
        data, attempts, palette, fits = _fit_png(prepared, xmp, max_bytes)
        used_quality = None
    else:
        start = quality if quality is not None else PUBLISH_QUALITY[fmt]
        if not 1 <= start <= 100:
            raise ValueError(f"quality must be 1..100, got {start}")
        data, used_quality, attempts, fits = _fit_quality(
            prepared, fmt, xmp, start, min(QUALITY_RANGE[fmt][0], start), max_bytes)
    ssim, reason = None, None if fits else f"{len(data)} bytes is over the {max_bytes} byte budget"
    floor_violated = False
    if ssim_floor is not None and (attempts > 1 or palette):  # the untouched default encode is the reference
        ssim = luma_ssim(prepared, decode(data))
        floor_violated = ssim < ssim_floor
        if floor_violated:
            reason = f"the byte budget pushed SSIM to {ssim:.3f}, under the floor {ssim_floor}"
    write_atomically(path, data)
    return EncodeResult(path=str(path.resolve()), format=fmt, bytes=len(data), quality=used_quality,
                        width=prepared.width, height=prepared.height, sha256=hashlib.sha256(data).hexdigest(),
                        attempts=attempts, within_budget=fits, palette=palette, ssim=ssim,
                        floor_violated=floor_violated, reason=reason)
