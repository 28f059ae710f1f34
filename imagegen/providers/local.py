"""The `local` provider: the offline procedural renderer behind the ImageGenerator protocol.

The default provider for dry runs, demos and tests. It needs no network, no key and no quota,
renders any size in well under a second, and says plainly, in its capabilities and in every
result's metadata, that it is a stand-in and not a diffusion model.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

from PIL import Image

from imagegen.errors import ProviderRequestInvalid
from imagegen.guards import MAX_SEED
from imagegen.imaging.style import STYLE_REFERENCE_KEY, load_reference, transfer_colours
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef, ProviderCapabilities
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.providers.base import save_image_bytes
from imagegen.render.renderer import RENDERER_MODEL, describe_scene, render_local

PROVIDER = "local"
MAX_SIDE = 4096
STAND_IN_NOTE = "offline procedural renderer, not a diffusion model"
# zlib level 6: the default trade-off; level 9 is several times slower on grainy renders for a
# few per cent. Deterministic either way, so equal requests give byte-identical files.
PNG_COMPRESS_LEVEL = 6
# Spec keys the renderer reads; with no spec at all they are all looked up in the prompt text.
SPEC_KEYS = ("subject", "style", "lighting", "composition", "mood")


class LocalGenerator:
    """Renders `request.spec` with `request.seed` at `request.width` x `request.height` as PNG."""

    name = PROVIDER

    def __init__(self, master_size: int = 2048):
        if not 64 <= master_size <= MAX_SIDE:
            raise ValueError(f"master_size must be 64..{MAX_SIDE}, got {master_size}")
        # The side the pipeline asks this provider for; any requested size is rendered as asked.
        self.master_size = master_size

    def capabilities(self, model: str | None = None) -> ProviderCapabilities:
        return ProviderCapabilities(max_prompt_chars=500, negative_prompt="drop", max_side=MAX_SIDE,
                                    is_stand_in=True, supports_edit=False)

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        self._check_size(request)
        spec = _render_spec(request)
        with PIXEL_SLOTS:  # the stand-in "provider" is CPU work like the gate, not a remote call
            started = time.perf_counter()
            image = render_local(spec, request.seed, request.width, request.height)
            buf = io.BytesIO()
            image.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
            ref = save_image_bytes(buf.getvalue(), Path(dest_dir), provider=PROVIDER)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
        return GeneratedImage(image=ref, provider=PROVIDER, model=RENDERER_MODEL, seed=request.seed,
                              generation_ms=elapsed_ms, metadata=_metadata(request, spec))

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest,
             dest_dir: Path) -> GeneratedImage:
        """A deterministic stand-in for an image edit, for inpainting and style transfer without keys: it
        cannot follow the instruction's words. With `request.spec["style_reference_path"]` the reference's
        colour statistics move onto the source; otherwise the spec is rendered again, at the source's
        size, with a seed drawn from the instruction (new pixels for a mask to take). The gate's remedies
        never call it (capabilities keep supports_edit False): they regenerate, as before."""
        with PIXEL_SLOTS:
            started = time.perf_counter()
            reference_path = request.spec.get(STYLE_REFERENCE_KEY)
            if reference_path:
                with Image.open(source.path) as im:
                    image = transfer_colours(im, load_reference(Path(reference_path)).image)
                meta: dict[str, Any] = {"edit": "colour statistics of the style reference"}
            else:
                seed = edit_seed(request.seed, instruction)
                spec = {k: v for k, v in _render_spec(request).items() if k != STYLE_REFERENCE_KEY}
                image = render_local(spec, seed, source.width, source.height)
                meta = {"edit": "rendered again with a seed drawn from the instruction", "edit_seed": seed}
            buf = io.BytesIO()
            image.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
            ref = save_image_bytes(buf.getvalue(), Path(dest_dir), provider=PROVIDER)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
        return GeneratedImage(image=ref, provider=PROVIDER, model=RENDERER_MODEL, seed=request.seed,
                              generation_ms=elapsed_ms, metadata={"stand_in": True, "note": STAND_IN_NOTE,
                                                                  "source_sha256": source.sha256, **meta})

    @staticmethod
    def _check_size(request: GenerationRequest) -> None:
        if not (1 <= request.width <= MAX_SIDE and 1 <= request.height <= MAX_SIDE):
            raise ProviderRequestInvalid(
                f"the local provider renders 1..{MAX_SIDE} px per side, not {request.width}x{request.height}",
                provider=PROVIDER)


def edit_seed(seed: int, instruction: str) -> int:
    """The stand-in edit's render seed: the same instruction on the same master draws the same pixels."""
    digest = hashlib.sha256(f"{seed}|{instruction}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % MAX_SEED or 1


def _render_spec(request: GenerationRequest) -> dict[str, Any]:
    """The request's structured spec; a bare prompt is searched for style words instead."""
    if request.spec:
        return dict(request.spec)
    return {key: request.prompt for key in SPEC_KEYS} if request.prompt else {}


def _metadata(request: GenerationRequest, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"stand_in": True, "note": STAND_IN_NOTE, "renderer": RENDERER_MODEL}
    meta.update(describe_scene(spec, request.seed, request.width, request.height))
    if request.model and request.model != RENDERER_MODEL:
        meta["requested_model"] = request.model  # recorded, not honoured: there is one renderer
    return meta
