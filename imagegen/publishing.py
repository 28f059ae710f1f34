"""The publish stage's pixel work: one master in, every target of its size set out, each encoded
with provenance (XMP, IPTC DigitalSourceType) and stored through a size-routed asset store."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image
from pydantic import BaseModel

from imagegen.errors import CutoutFailed, RenderInputUnreadable
from imagegen.files import write_atomically
from imagegen.imaging.logo import DEFAULT_LOGO_SCALE, LogoMarks, prepare_marks
from imagegen.imaging.resample import reuse_pixels
from imagegen.models import FORMAT_CONTENT_TYPES, FORMAT_EXTENSIONS, GeneratedImage, ImageRef, StoredObject
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.reconcile import RecordedFile, found_problem
from imagegen.sizes import CUTOUT_VARIANT, MASTER_VARIANT, RENDITION_NAME, Target, rendition_name
from imagegen.stores.base import AssetStore, SizeRouter, safe_key
from imagegen.summary import RepairedFile

KEEP_BACKGROUND = "keep"  # imaging.cutout.KEEP, spelled out: importing cutout would load numpy with this module

if TYPE_CHECKING:
    from imagegen.imaging.c2pa_signing import SigningFiles

__all__ = ["MASTER_VARIANT"]  # re-exported: callers import it from here


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
    ssim: float | None = None
    budget_note: str | None = None  # why a byte budget or the SSIM floor was not met
    content_credentials: dict[str, Any] | None = None  # C2PA: signed, and the sha256 before signing
    background: str | None = None  # publish.background: transparent or the colour it is on; None: kept
    crop_note: str | None = None  # why the crop could not keep every detected face whole


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
    budget_note: str | None = None
    content_credentials: dict[str, Any] | None = None
    repaired: RepairedFile | None = None  # the key did not hold what its row says; rewritten
    background: str | None = None  # as RenderedVariant.background
    crop_note: str | None = None


class PublishResult(BaseModel):
    """What publishing one master produced: its stored files and asset-level web metadata."""

    files: list[PublishedFile]
    picture: str | None = None   # <picture> snippet over the responsive renditions
    blurhash: str | None = None  # placeholder for the page while the image loads
    palette: list[dict[str, Any]] | None = None  # the master's dominant colours: [{hex, share}]


class RenderedSet(BaseModel):
    """One master's rendered variants, waiting in a scratch folder to be stored."""

    directory: str
    master_sha256: str
    variants: list[RenderedVariant]
    blurhash: str | None = None
    palette: list[dict[str, Any]] | None = None


class WebOptions(BaseModel):
    """How variants look and are encoded: brand grading/border, SSIM floor, responsive renditions."""

    # brand.GRADING_PRESETS, spelled out: importing brand here would load scikit-image with this module
    grade: Literal["warm", "cool", "vintage", "dramatic"] | None = None
    border_width: float | None = None
    border_colour: str = "#ffffff"
    ssim_floor: float | None = None
    responsive: dict[str, Any] | None = None  # ResponsivePolicy fields when enabled
    background: str = "keep"  # publish.background: keep, remove or #rrggbb (imagegen.imaging.cutout)
    faces: bool = False  # crops never cut through a detected face (the brief checks this master's faces)


def variant_key(campaign: str, asset_id: str, variant: str, fmt: str) -> str:
    return safe_key(campaign, asset_id, f"{variant}.{FORMAT_EXTENSIONS[fmt]}")


def provenance_xmp(*, prompt: str, model: str, provider: str, seed: int, altered: bool, title: str) -> bytes:
    """XMP for every published file; altered (edited or overlaid) images are composites, per IPTC."""
    from imagegen.imaging.encode import build_xmp

    source_type = "compositeWithTrainedAlgorithmicMedia" if altered else "trainedAlgorithmicMedia"
    return build_xmp(prompt=prompt, model=model, provider=provider, seed=seed, source_type=source_type,
                     title=title)


def _finish(source: Image.Image, target_w: int, target_h: int, saliency, options: WebOptions,
            logo: LogoMarks | None, logo_options, faces: list[tuple[int, int, int, int]]
            ) -> tuple[Image.Image, str | None]:
    """Crop (never through one of `faces`) and scale to the target, then the brand's grade, border (inside
    the target size) and logo; and the crop's note when it could not keep every face whole."""
    from imagegen.imaging.brand import add_border, grade, overlay_logo
    from imagegen.imaging.crop import plan_crop_keeping, render_variant

    border = round(min(target_w, target_h) * options.border_width) if options.border_width else 0
    plan = plan_crop_keeping(saliency, source.width, source.height, target_w - 2 * border, target_h - 2 * border,
                             faces)
    img = render_variant(source, target_w - 2 * border, target_h - 2 * border, saliency, box=plan.box)
    if options.grade:
        img = grade(img, options.grade)
    if border:
        img = add_border(img, border, options.border_colour)
    if logo is not None:
        img = overlay_logo(img, logo.for_image(img.width), **(logo_options or {}))
    return img, plan.note


def render_responsive(source: Image.Image, policy: dict[str, Any], *, xmp: bytes, work_dir: Path,
                      background: str = "keep") -> list[RenderedVariant]:
    """Web renditions of the whole master at byte-step breakpoints, per format (AVIF, WebP, JPEG)."""
    from imagegen.imaging.cutout import background_of
    from imagegen.imaging.responsive import WidthCascade, responsive_breakpoints

    rendered = []
    cascade = WidthCascade(source)  # every format needs the same widths: resize each once
    for fmt in policy["formats"]:
        chosen = responsive_breakpoints(source, fmt, min_width=policy["min_width"],
                                        max_width=min(policy["max_width"], source.width),
                                        bytes_step=policy["bytes_step"], max_images=policy["max_images"], xmp=xmp,
                                        cascade=cascade)
        for rendition in chosen.renditions:
            name = rendition_name(fmt, rendition.width)
            path = work_dir / f"{name}.{FORMAT_EXTENSIONS[fmt]}"
            write_atomically(path, rendition.data)
            rendered.append(RenderedVariant(variant=name, platform="web", path=str(path), width=rendition.width,
                                            height=rendition.height, format=fmt, bytes=rendition.bytes,
                                            quality=rendition.quality, background=background_of(background, fmt)))
    return rendered


def check_render_inputs(inputs: dict[str, str | None]) -> None:
    """Raise RenderInputUnreadable naming every file of `inputs` ({what: path}; None: not used) that this
    machine cannot read, and the machine: a Dask worker sees only the paths it shares with the flow."""
    unreadable = [f"{what} {path}" for what, path in inputs.items()
                  if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK))]
    if unreadable:
        raise RenderInputUnreadable(
            f"cannot read {', '.join(unreadable)} on {socket.gethostname()}: every machine that renders "
            "(each Dask worker too) needs the output folder, the brief's logo and the signing files "
            "at the same paths as the flow's worker")


def render_variants(master: ImageRef, targets: list[Target], *, xmp: bytes, work_dir: Path,
                    logo: LogoMarks | None = None, logo_options: dict[str, Any] | None = None,
                    include_master: bool = True, options: WebOptions | None = None) -> list[RenderedVariant]:
    """Render every target from `master` into `work_dir`: content-aware crop, high-quality
    downscale, brand grade/border/logo, byte-budgeted encode with XMP, and (when asked) responsive
    web renditions. The master is decoded once; the logo comes prepared (imaging.logo.prepare_marks),
    never decoded at full size here."""
    from imagegen.imaging.crop import saliency_map
    from imagegen.imaging.cutout import background_of, finish_background
    from imagegen.imaging.encode import encode_image
    from imagegen.imaging.faces import detect_faces

    options = options or WebOptions()
    work_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(master.path) as im:
        source = im.convert("RGB")
    saliency = saliency_map(source)
    faces = detect_faces(source) if options.faces else []
    rendered: list[RenderedVariant] = []
    if include_master:
        result = encode_image(source, work_dir / f"{MASTER_VARIANT}.png", "PNG", xmp=xmp)
        rendered.append(RenderedVariant(variant=MASTER_VARIANT, platform="master", path=str(result.path),
                                        width=source.width, height=source.height, format="PNG",
                                        bytes=result.bytes))
    # publish.background: every variant is made from the cut-out (the master stays as generated)
    choice = options.background
    cutout = cut_out_master(source, choice, master) if choice != KEEP_BACKGROUND else None
    if cutout is not None:
        rendered.append(render_cutout(cutout, choice, xmp=xmp, work_dir=work_dir))
    # Targets that differ only by name (instagram_square and facebook_feed are both 1080x1080 JPEG
    # under 1 MB) would render to the same bytes: the first one's file is copied instead.
    made: dict[tuple, RenderedVariant] = {}
    with reuse_pixels(source):  # the master's pixels go to libvips once for every target
        for target in targets:
            upscaled = target.width > source.width or target.height > source.height
            ext = FORMAT_EXTENSIONS[target.format]
            path = work_dir / f"{target.name}.{ext}"
            same_output = (target.width, target.height, target.format, target.max_bytes)
            if same_output in made:
                twin = made[same_output]
                write_atomically(path, Path(twin.path).read_bytes())
                rendered.append(twin.model_copy(update={"variant": target.name, "platform": target.platform,
                                                        "path": str(path.resolve())}))
                continue
            img, crop_note = _finish(cutout or source, target.width, target.height, saliency, options, logo,
                                     logo_options, faces)
            if cutout is not None:
                img = finish_background(img, choice)
            result = encode_image(img, path, target.format, xmp=xmp,
                                  max_bytes=target.max_bytes, ssim_floor=options.ssim_floor)
            rendered.append(RenderedVariant(variant=target.name, platform=target.platform, path=str(result.path),
                                            width=img.width, height=img.height, format=target.format,
                                            bytes=result.bytes, quality=result.quality, max_bytes=target.max_bytes,
                                            upscaled=upscaled, ssim=result.ssim, budget_note=result.reason,
                                            background=background_of(choice, target.format),
                                            crop_note=crop_note))
            made[same_output] = rendered[-1]
        if options.responsive:
            web_source = source if cutout is None else finish_background(cutout, choice)
            rendered += render_responsive(web_source, options.responsive, xmp=xmp, work_dir=work_dir,
                                          background=choice)
    return rendered


def cut_out_master(source: Image.Image, choice: str, master: ImageRef) -> Image.Image:
    """The master (decoded as `source`) with its background removed (RGBA), cut along the mask the gate
    found and kept for these bytes when there is one. A master the gate let through has a plausible
    subject; one that was never gated for it (a size-set run after the brief changed) fails here, by reason."""
    from imagegen.imaging.cutout import cut_out
    from imagegen.imaging.cutout_store import master_subject

    found = master_subject(master.path, master.sha256, source)
    if problem := found.problem():
        raise CutoutFailed(f"publish.background {choice}: {problem}")
    return cut_out(source, found.mask)


def render_cutout(cutout: Image.Image, choice: str, *, xmp: bytes, work_dir: Path) -> RenderedVariant:
    """The full-size cut-out as PNG: alpha for `remove`, the subject on the colour for a #rrggbb."""
    from imagegen.imaging.cutout import background_of, finish_background
    from imagegen.imaging.encode import encode_image

    img = finish_background(cutout, choice)
    result = encode_image(img, work_dir / f"{CUTOUT_VARIANT}.png", "PNG", xmp=xmp)
    return RenderedVariant(variant=CUTOUT_VARIANT, platform="master", path=str(result.path), width=img.width,
                           height=img.height, format="PNG", bytes=result.bytes,
                           background=background_of(choice, "PNG"))


def blurhash_of(master: ImageRef) -> str:
    from imagegen.imaging.blurhash import blurhash_placeholder

    with Image.open(master.path) as im:
        im.draft("RGB", (256, 256))  # JPEG masters decode at a fraction of their size
        return blurhash_placeholder(im.convert("RGB"))


def dominant_palette(master: ImageRef, k: int = 5) -> list[dict[str, Any]]:
    """The master's `k` dominant colours, most frequent first, with their shares (the seed's palette
    extraction), from a reduced decode: colour shares do not need every pixel."""
    from imagegen.imaging.brand import palette_swatch

    with Image.open(master.path) as im:
        im.draft("RGB", (512, 512))
        small = im.convert("RGB")
    small.thumbnail((512, 512))
    swatch = palette_swatch(small, k=k)
    return [{"hex": colour, "share": share} for colour, share in zip(swatch.hex, swatch.shares)]


def picture_snippet(files: list[PublishedFile], *, alt: str, sizes: str, url_for=None) -> str | None:
    """The <picture> over the responsive renditions (AVIF, WebP, then the JPEG/PNG fallback)."""
    from imagegen.imaging.picture import picture_html

    web = [f for f in files if RENDITION_NAME.match(f.variant)]
    fallback = [f for f in web if f.format in ("JPEG", "PNG")]
    if not fallback:
        return None
    url_for = url_for or (lambda f: f.stored.url)
    srcsets: dict[str, list[tuple[str, int]]] = {}
    for f in sorted(web, key=lambda f: f.width):
        srcsets.setdefault(f.format, []).append((url_for(f), f.width))
    largest = max(fallback, key=lambda f: f.width)
    return picture_html(srcsets, alt=alt, width=largest.width, height=largest.height, sizes=sizes)


def store_variant(variant: RenderedVariant, *, campaign: str, asset_id: str, router: SizeRouter,
                  verify: bool = True, recorded: RecordedFile | None = None) -> PublishedFile:
    """Store one rendered variant in the store its size routes to, then check its URL answers (a check
    that fails removes the file it checked again, AssetStore.verify_stored).

    The key is the variant's own: other bytes under it are replaced in place, so the canonical key
    always holds what its row will name. `recorded` (the catalog's row for this variant) tells an
    update from a file that was changed or removed behind the catalog's back, which is reported.
    """
    store: AssetStore = router.store_for(variant.bytes)
    key = variant_key(campaign, asset_id, variant.variant, variant.format)
    stored = store.put_file(key, Path(variant.path), FORMAT_CONTENT_TYPES[variant.format], replace=True)
    verified = store.verify_stored(stored) if verify else False
    return PublishedFile(variant=variant.variant, platform=variant.platform, width=variant.width,
                         height=variant.height, format=variant.format, stored=stored, quality=variant.quality,
                         max_bytes=variant.max_bytes, upscaled=variant.upscaled, verified=verified,
                         budget_note=variant.budget_note, content_credentials=variant.content_credentials,
                         background=variant.background,
                         crop_note=variant.crop_note,
                         repaired=found_problem(asset_id, variant.variant, store=stored.store, key=stored.key,
                                                written=stored.written, replaced_sha256=stored.replaced_sha256,
                                                recorded=recorded))


def edit_descriptions(master_metadata: dict[str, Any], *, logo: bool, options: WebOptions) -> list[str]:
    """What changed the pixels after generation, in words, for the C2PA manifest's edit actions."""
    described = []
    for edit in master_metadata.get("edits", []):
        if edit.get("kind") == "local":
            described.append("local fixes: " + ", ".join(edit.get("remedies", [])))
        else:
            described.append(f"{edit.get('kind', 'edit')}: {edit.get('instruction', '')}".strip(": "))
    if options.grade:
        described.append(f"colour grade: {options.grade}")
    if options.border_width:
        described.append("brand border")
    if logo:
        described.append("logo overlay")
    if options.background != KEEP_BACKGROUND:
        described.append("background removed" if options.background == "remove"
                         else f"background replaced with {options.background}")
    return described


def sign_variants(variants: list[RenderedVariant], signing, *, title: str, model: str, edits: list[str],
                  cache_dir: Path) -> list[RenderedVariant]:
    """Embed a signed C2PA manifest in every rendered file (`signing`: c2pa_signing.SigningFiles)."""
    from imagegen.imaging.c2pa_signing import build_manifest, sign_file

    signed = []
    for variant in variants:
        manifest = build_manifest(title=f"{title} / {variant.variant}", fmt=variant.format, edits=edits, model=model)
        size, unsigned = sign_file(Path(variant.path), variant.format, signing, manifest, cache_dir)
        signed.append(variant.model_copy(update={"bytes": size, "content_credentials": {
            "c2pa": "signed", "algorithm": signing.algorithm, "unsigned_sha256": unsigned}}))
    return signed


def render_master_set(master: GeneratedImage, *, campaign: str, asset_id: str, prompt: str, targets: list[Target],
                      work_dir: Path, logo_path: str | None = None, logo_options: dict | None = None,
                      logo_widths: list[int] | None = None, include_master: bool = True,
                      web: WebOptions | None = None, signing: SigningFiles | None = None,
                      signed_cache: str | None = None) -> RenderedSet:
    """Every target of `master` rendered into `work_dir/<asset_id>-<master sha256[:16]>`, with its
    BlurHash and palette; signed (C2PA) with `signing`. tasks/publish.py `render_master` says the rest."""
    # on a Dask cluster this runs on another machine: a path it does not share fails here, by name
    check_render_inputs({"the master": master.image.path, "the logo": logo_path,
                         "the signing certificate": signing.certificate_chain if signing else None,
                         "the signing key": signing.private_key if signing else None})
    web = web or WebOptions()
    altered = (bool(master.metadata.get("edits")) or logo_path is not None or bool(web.grade or web.border_width)
               or web.background != KEEP_BACKGROUND)
    xmp = provenance_xmp(prompt=prompt, model=master.model, provider=master.provider, seed=master.seed,
                         altered=altered, title=f"{campaign} / {asset_id}")
    folder = Path(work_dir) / f"{asset_id}-{master.image.sha256[:16]}"
    shutil.rmtree(folder, ignore_errors=True)  # what an earlier, failed attempt left
    with PIXEL_SLOTS:
        logo = None
        if logo_path is not None:
            scale = (logo_options or {}).get("scale", DEFAULT_LOGO_SCALE)
            widths = [*(logo_widths or []), *(target.width for target in targets)]
            logo = LogoMarks(prepare_marks(Path(logo_path), widths, scale, Path(work_dir)), scale)
        rendered = render_variants(master.image, targets, xmp=xmp, work_dir=folder, logo=logo,
                                   logo_options=logo_options, include_master=include_master, options=web)
        blurhash = blurhash_of(master.image)
        palette = dominant_palette(master.image)
        if signing is not None:
            rendered = sign_variants(rendered, signing, title=f"{campaign} / {asset_id}", model=master.model,
                                     edits=edit_descriptions(master.metadata, logo=logo_path is not None, options=web),
                                     cache_dir=Path(signed_cache or folder / ".signed"))
    return RenderedSet(directory=str(folder), master_sha256=master.image.sha256, variants=rendered,
                       blurhash=blurhash, palette=palette)
