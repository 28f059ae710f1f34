"""Generate and edit masters: the only tasks that spend provider quota."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from prefect import task
from prefect.context import TaskRunContext

from imagegen.budget import budget_for_run, paid_call
from imagegen.files import copy_atomically, sweep_once_in_a_while, write_atomically
from imagegen.imaging.brand import outpaint_canvas
from imagegen.ledger import generation_slot
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.prompts import PromptSpec
from imagegen.sizes import parse_ratio
from imagegen_flows.blocks.providers import ImageProviderBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


def generation_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Prompt spec + provider + model + seed + size: an unchanged rerun spends no quota."""
    return f"imagegen-generate-{parameters['spec'].cache_key()}"


def request_for(spec: PromptSpec, seed: int | None = None) -> GenerationRequest:
    return GenerationRequest(prompt=spec.prompt, negative_prompt=spec.negative_prompt, width=spec.width,
                             height=spec.height, seed=spec.seed if seed is None else seed, model=spec.model,
                             spec=spec.render_spec())


def adopt_into(result: GeneratedImage, masters_dir: Path) -> GeneratedImage:
    """Make sure a (possibly cached) master lives in this run's masters folder; copying costs no quota.

    Every master of a run passes here, cached or not, so the first one sweeps the folder (its ledger
    and outpaint canvases too) of temp files a killed run left, as a store does when first used."""
    masters_dir.mkdir(parents=True, exist_ok=True)
    sweep_once_in_a_while(masters_dir.resolve())
    source = Path(result.image.path)
    target = masters_dir / source.name
    if source.resolve() == target.resolve():
        return result
    if not target.exists():
        copy_atomically(source, target)
    return result.model_copy(update={"image": ImageRef.from_file(target)})


@task(name="generate-master", task_run_name="generate {spec.asset_id}", cache_key_fn=generation_cache_key,
      persist_result=True, cache_result_in_memory=False, **RETRY_OPTIONS)
def generate_master(spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str, run_id: str) -> GeneratedImage:
    """Ask the provider for one master and store it content-addressed in `masters_dir`.

    Under the key's lock, a master another run made meanwhile is taken from the ledger instead of
    paying for it again.
    """
    with generation_slot(Path(masters_dir), spec.cache_key()) as entry:
        if (made := entry.read()) is not None:
            return made
        result = paid_call(budget_for_run(run_id), provider.provider_name,
                           lambda: provider.get_generator().generate(request_for(spec), Path(masters_dir)))
        result = result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling}})
        entry.write(result)
        return result


@task(name="regenerate-master", task_run_name="regenerate {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def regenerate_master(spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str, run_id: str,
                      attempt: int) -> GeneratedImage:
    """A fresh master with a new seed derived from the attempt number (deterministic, so reruns repeat it)."""
    new_seed = (spec.seed + 7919 * attempt) % (2**31 - 1) or 1
    result = paid_call(budget_for_run(run_id), provider.provider_name,
                       lambda: provider.get_generator().generate(request_for(spec, seed=new_seed), Path(masters_dir)))
    return result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling,
                                                  "regenerated": attempt}})


@task(name="edit-master", task_run_name="edit {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def provider_edit_master(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock,
                         instruction: str, masters_dir: str, run_id: str, attempt: int) -> GeneratedImage:
    """Image-to-image edit through the provider (FLUX.1-kontext, neuroflash /edit)."""
    request = request_for(spec)
    if "image_id" in master.metadata:  # neuroflash edits name their source by the provider's image id
        request = request.model_copy(update={"spec": {**request.spec,
                                                      "neuroflash_image_id": master.metadata["image_id"]}})
    result = paid_call(budget_for_run(run_id), provider.provider_name,
                       lambda: provider.get_generator().edit(master.image, instruction, request, Path(masters_dir)))
    edits = [*master.metadata.get("edits", []), {"attempt": attempt, "kind": "provider_edit",
                                                 "instruction": instruction}]
    return result.model_copy(update={"metadata": {**master.metadata, **result.metadata, "edits": edits}})


def outpaint_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Base master bytes + ratio + provider + edit prompt: an unchanged rerun spends no quota."""
    spec, base = parameters["spec"], parameters["base"]
    return f"imagegen-outpaint-{base.image.sha256}-{spec.outpaint_ratio}-{spec.cache_key()}"


@task(name="outpaint-master", task_run_name="outpaint {spec.asset_id}", cache_key_fn=outpaint_cache_key,
      persist_result=True, cache_result_in_memory=False, **RETRY_OPTIONS)
def outpaint_master(base: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str,
                    run_id: str) -> GeneratedImage:
    """Extend `base` to `spec.outpaint_ratio` through the provider's edit (FLUX.1 Kontext, neuroflash
    /edit): the base is placed on a canvas of the new aspect whose new area holds its own blurred,
    mirrored edges, and the provider is asked to paint the scene on into that area."""
    if spec.outpaint_ratio is None:  # the flow outpaints only specs made with a ratio
        raise ValueError(f"{spec.asset_id} is not an outpainted master: its spec has no outpaint_ratio")
    with PIXEL_SLOTS:
        with Image.open(base.image.path) as im:
            request = outpaint_canvas(im, parse_ratio(spec.outpaint_ratio), multiple_of=16, subject_hint=spec.subject)
        canvas = save_canvas(request.image, Path(masters_dir) / ".outpaint")
    with generation_slot(Path(masters_dir), outpaint_slot_key(base, spec)) as entry:
        if (made := entry.read()) is not None:
            return made
        result = paid_call(budget_for_run(run_id), provider.provider_name, lambda: provider.get_generator().edit(
            canvas, request.instruction, request_for(spec), Path(masters_dir)))
        edits = [*base.metadata.get("edits", []), {"kind": "outpaint", "ratio": spec.outpaint_ratio,
                                                   "instruction": request.instruction,
                                                   "source_sha256": base.image.sha256}]
        result = result.model_copy(update={"metadata": {**result.metadata, "edits": edits,
                                                        "outpainted_from": spec.outpaint_from}})
        entry.write(result)
        return result


def outpaint_slot_key(base: GeneratedImage, spec: PromptSpec) -> str:
    """The ledger key: a concurrent run outpainting the same master to the same ratio waits and reuses it."""
    return hashlib.sha256(f"outpaint|{base.image.sha256}|{spec.outpaint_ratio}|{spec.cache_key()}".encode()).hexdigest()


def save_canvas(image, folder: Path) -> ImageRef:
    """The outpaint canvas as a content-addressed PNG (the provider's edit reads it from disk)."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        write_atomically(path, data)
    return ImageRef.from_file(path)
