"""The publish stage's pixel work: one master in, every target of its size set out, each encoded
with provenance (XMP, IPTC DigitalSourceType) and stored through a size-routed asset store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel

from imagegen.models import FORMAT_CONTENT_TYPES, FORMAT_EXTENSIONS, ImageRef, StoredObject
from imagegen.sizes import Target
from imagegen.stores.base import AssetStore, SizeRouter, safe_key

MASTER_VARIANT = "master"


class RenderedVariant(BaseModel):
    """A variant rendered to the work folder, before it is stored."""

    variant: str
    platform: str
    path: str
    width: int
    height: int
    format: str
    bytes: int
    quality: int | None = None
    max_bytes: int | None = None
    upscaled: bool = False


class PublishedFile(BaseModel):
    """A variant as it sits in its store: what the catalog records."""

    variant: str
    platform: str
    width: int
    height: int
    format: str
    stored: StoredObject
    quality: int | None = None
    max_bytes: int | None = None
    upscaled: bool = False
    verified: bool = False


def variant_key(campaign: str, asset_id: str, variant: str, fmt: str) -> str:
    return safe_key(campaign, asset_id, f"{variant}.{FORMAT_EXTENSIONS[fmt]}")


def provenance_xmp(*, prompt: str, model: str, provider: str, seed: int, altered: bool, title: str) -> bytes:
    """XMP for every published file; altered (edited or overlaid) images are composites, per IPTC."""
    from imagegen.imaging.encode import build_xmp

    source_type = "compositeWithTrainedAlgorithmicMedia" if altered else "trainedAlgorithmicMedia"
    return build_xmp(prompt=prompt, model=model, provider=provider, seed=seed, source_type=source_type,
                     title=title)


def render_variants(master: ImageRef, targets: list[Target], *, xmp: bytes, work_dir: Path,
                    logo_path: Path | None = None, logo_options: dict[str, Any] | None = None,
                    include_master: bool = True) -> list[RenderedVariant]:
    """Render every target from `master` into `work_dir`: content-aware crop, high-quality
    downscale, optional logo, byte-budgeted encode with XMP. The master is decoded once."""
    from imagegen.imaging.crop import render_variant, saliency_map
    from imagegen.imaging.encode import encode_image, overlay_logo

    work_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(master.path) as im:
        source = im.convert("RGB")
    logo = None
    if logo_path is not None:
        with Image.open(logo_path) as lim:
            logo = lim.convert("RGBA")
    saliency = saliency_map(source)
    rendered: list[RenderedVariant] = []
    if include_master:
        result = encode_image(source, work_dir / f"{MASTER_VARIANT}.png", "PNG", xmp=xmp)
        rendered.append(RenderedVariant(variant=MASTER_VARIANT, platform="master", path=str(result.path),
                                        width=source.width, height=source.height, format="PNG",
                                        bytes=result.bytes))
    for target in targets:
        upscaled = target.width > source.width or target.height > source.height
        img = render_variant(source, target.width, target.height, saliency)
        if logo is not None:
            img = overlay_logo(img, logo, **(logo_options or {}))
        ext = FORMAT_EXTENSIONS[target.format]
        result = encode_image(img, work_dir / f"{target.name}.{ext}", target.format, xmp=xmp,
                              max_bytes=target.max_bytes)
        rendered.append(RenderedVariant(variant=target.name, platform=target.platform, path=str(result.path),
                                        width=img.width, height=img.height, format=target.format,
                                        bytes=result.bytes, quality=result.quality, max_bytes=target.max_bytes,
                                        upscaled=upscaled))
    return rendered


def store_variant(variant: RenderedVariant, *, campaign: str, asset_id: str, router: SizeRouter,
                  verify: bool = True) -> PublishedFile:
    """Store one rendered variant in the store its size routes to, then check its URL answers."""
    store: AssetStore = router.store_for(variant.bytes)
    key = variant_key(campaign, asset_id, variant.variant, variant.format)
    stored = store.put_file(key, Path(variant.path), FORMAT_CONTENT_TYPES[variant.format])
    verified = store.verify(stored.key) if verify else False
    return PublishedFile(variant=variant.variant, platform=variant.platform, width=variant.width,
                         height=variant.height, format=variant.format, stored=stored, quality=variant.quality,
                         max_bytes=variant.max_bytes, upscaled=variant.upscaled, verified=verified)
