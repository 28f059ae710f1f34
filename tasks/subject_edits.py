"""Style transfer and masked inpainting of a freshly generated master: paid edits, each once per ledger.

The provider edits the whole image (FLUX.1 Kontext and neuroflash take no mask); the edit is recorded in
the ledger under a key holding the mask's or style reference's sha256, so an unchanged rerun pays nothing
and a changed file pays again. Compositing and cropping are local and deterministic (imagegen.imaging),
done again on every run from the recorded edit.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image
from prefect import task

from imagegen.errors import BriefError
from imagegen.imaging.masking import inpaint_composite, load_mask
from imagegen.imaging.style import STYLE_REFERENCE_KEY, left_panel, load_reference, two_panel_canvas
from imagegen.models import GeneratedImage
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.prompts import PromptSpec
from imagegen.providers.base import save_image_bytes
from imagegen.subject_edits import SubjectEdit, style_input, style_instruction
from imagegen_flows.blocks.providers import ImageProviderBlock
from imagegen_flows.tasks.generate import paid_edit, save_canvas
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


@task(name="edit-subject-master", task_run_name="edit {spec.asset_id} ({edits[0].kind}...)",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def edit_subject_master(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock,
                        edits: list[SubjectEdit], masters_dir: str, run_id: str) -> GeneratedImage:
    """`master` after its subject's edits, in order (style, then inpainting)."""
    for edit in edits:
        if edit.kind == "style":
            master = restyle(master, spec, provider, edit, masters_dir, run_id)
        else:
            master = inpaint(master, spec, provider, edit, masters_dir, run_id)
    return master


def _png(image: Image.Image, masters_dir: str, provider: str):
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=6)  # lossless: kept pixels stay exactly what they were
    return save_image_bytes(buffer.getvalue(), Path(masters_dir), provider=provider)


def _same_file(sha256: str, recorded: str | None, edit: SubjectEdit) -> None:
    if sha256 != recorded:
        raise BriefError([(edit.field, "the file changed while the run was going: run again to use the new one")])


def _edited(master: GeneratedImage, result: GeneratedImage, ref, record: dict[str, Any],
            extra: dict[str, Any]) -> GeneratedImage:
    """The new master: the provenance of `master`, the edit in its history, the file `ref`."""
    metadata = {**master.metadata, **extra, "edits": [*master.metadata.get("edits", []), record]}
    return master.model_copy(update={"image": ref, "metadata": metadata,
                                     "generation_ms": master.generation_ms + result.generation_ms})


def inpaint(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock, edit: SubjectEdit,
            masters_dir: str, run_id: str) -> GeneratedImage:
    """The provider's whole-image edit composited onto `master` inside the feathered mask."""
    assert edit.mask_path is not None
    mask = load_mask(Path(edit.mask_path))
    _same_file(mask.sha256, edit.mask_sha256, edit)
    result = paid_edit(master, spec, provider, master.image, edit.instruction, masters_dir, run_id, edit.key_part())
    with PIXEL_SLOTS:
        with Image.open(master.image.path) as original, Image.open(result.image.path) as edited:
            original.load()
            merged, _ = inpaint_composite(original, edited, mask.weights, edit.feather)
        ref = _png(merged, masters_dir, "inpaint")
    record = {"kind": "inpaint", "instruction": edit.instruction, "mask_sha256": mask.sha256,
              "feather": edit.feather, "source_sha256": master.image.sha256, "edited_sha256": result.image.sha256,
              "provider": result.provider, "model": result.model}
    edited_master = _edited(master, result, ref, record, {"mask_sha256": mask.sha256})
    # the composite is no image the provider made: a later neuroflash edit cannot name it by an id
    edited_master.metadata.pop("image_id", None)
    return edited_master


def restyle(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock, edit: SubjectEdit,
            masters_dir: str, run_id: str) -> GeneratedImage:
    """`master` in the style of the reference (or description): keep the content, take the style."""
    how = style_input(provider.provider_name, edit)
    instruction = style_instruction(edit, how)
    reference = load_reference(Path(edit.reference_path)) if edit.reference_path is not None else None
    if reference is not None:
        _same_file(reference.sha256, edit.reference_sha256, edit)
    record: dict[str, Any] = {"kind": "style", "instruction": instruction, "style_input": how,
                              "source_sha256": master.image.sha256}
    extra: dict[str, Any] = {}
    if edit.reference_sha256:
        record["style_reference_sha256"] = extra["style_reference_sha256"] = edit.reference_sha256
    else:
        record["style_description"] = extra["style_description"] = edit.description
    if how == "two_panel" and reference is not None:
        with PIXEL_SLOTS:
            with Image.open(master.image.path) as content:
                canvas = save_canvas(two_panel_canvas(content, reference.image), Path(masters_dir) / ".style")
        result = paid_edit(master, spec, provider, canvas, instruction, masters_dir, run_id, edit.key_part())
        with PIXEL_SLOTS:
            with Image.open(result.image.path) as edited:
                ref = _png(left_panel(edited, (master.image.width, master.image.height)), masters_dir, "style")
        record.update(edited_sha256=result.image.sha256, provider=result.provider, model=result.model)
        return _edited(master, result, ref, record, extra)
    spec_extra = {STYLE_REFERENCE_KEY: edit.reference_path} if how == "reference_file" else None
    result = paid_edit(master, spec, provider, master.image, instruction, masters_dir, run_id, edit.key_part(),
                       spec_extra=spec_extra)
    record.update(edited_sha256=result.image.sha256, provider=result.provider, model=result.model)
    extra.update({k: v for k, v in result.metadata.items() if k == "image_id"})  # neuroflash: the edit's own id
    return _edited(master, result, result.image, record, extra)
