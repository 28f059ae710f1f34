"""Generate and edit masters: the only tasks that spend provider quota."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from prefect import task
from prefect.context import TaskRunContext

from imagegen.budget import budget_for_run, paid_call
from imagegen.errors import MasterChanged
from imagegen.files import copy_atomically, sweep_once_in_a_while, write_atomically
from imagegen.imaging.brand import outpaint_canvas
from imagegen.ledger import file_state, ledger_for_run, ledger_key, paid_once
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef
from imagegen.paid_sends import charges_when_sending
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
                             steps=spec.steps, spec=spec.render_spec())


def adopt_into(result: GeneratedImage, masters_dir: Path) -> GeneratedImage:
    """Make sure a (possibly cached) master lives in this run's masters folder; copying costs no quota.
    Only the recorded bytes are copied, and a copy here that lost them is replaced; a master already
    in this folder was checked by the caller (`file_state`, before it asked the ledger). A master the
    shared (PostgreSQL) ledger gave back is in this folder already: it was fetched there by sha256.

    Every master of a run passes here, cached or not, so the first one sweeps the folder (its ledger
    and outpaint canvases too) of temp files a killed run left, as a store does when first used."""
    masters_dir.mkdir(parents=True, exist_ok=True)
    sweep_once_in_a_while(masters_dir.resolve())
    source = Path(result.image.path)
    target = masters_dir / source.name
    if source.resolve() == target.resolve():
        return result
    if file_state(result.image) != "intact":  # never copy bytes other than the recorded ones
        raise MasterChanged(f"{source}: the file is gone or its bytes differ from the recorded sha256 "
                            f"{result.image.sha256[:12]}")
    adopted = result.image.model_copy(update={"path": str(target.resolve())})
    if file_state(adopted) != "intact":  # missing here, or a changed copy: the intact source replaces it
        copy_atomically(source, target)
    return result.model_copy(update={"image": adopted})


@task(name="generate-master", task_run_name="generate {spec.asset_id}", cache_key_fn=generation_cache_key,
      persist_result=True, cache_result_in_memory=False, **RETRY_OPTIONS)
def generate_master(spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str, run_id: str) -> GeneratedImage:
    """Ask the provider for one master and store it content-addressed in `masters_dir`.

    Under the key's lock, a master another run made meanwhile is taken from the ledger instead of
    paying for it again.
    """
    def pay() -> GeneratedImage:
        generator = provider.get_generator()
        result = paid_call(budget_for_run(run_id), provider.provider_name,
                           lambda: generator.generate(request_for(spec), Path(masters_dir)),
                           charged_when_sent=charges_when_sending(generator))
        return result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling}})

    return paid_once(ledger_for_run(run_id, Path(masters_dir)), spec.cache_key(), GeneratedImage, pay)


@task(name="regenerate-master", task_run_name="regenerate {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def regenerate_master(spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str, run_id: str,
                      attempt: int) -> GeneratedImage:
    """A fresh master with a new seed derived from the attempt number (deterministic, so reruns repeat it);
    recorded in the ledger by spec and seed, so a rerun takes it from there instead of paying again."""
    new_seed = (spec.seed + 7919 * attempt) % (2**31 - 1) or 1

    def pay() -> GeneratedImage:
        generator = provider.get_generator()
        result = paid_call(budget_for_run(run_id), provider.provider_name,
                           lambda: generator.generate(request_for(spec, seed=new_seed), Path(masters_dir)),
                           charged_when_sent=charges_when_sending(generator))
        return result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling,
                                                      "regenerated": attempt}})

    key = ledger_key("regenerate", spec.cache_key(), new_seed)
    return paid_once(ledger_for_run(run_id, Path(masters_dir)), key, GeneratedImage, pay)


@task(name="edit-master", task_run_name="edit {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def provider_edit_master(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock,
                         instruction: str, masters_dir: str, run_id: str, attempt: int) -> GeneratedImage:
    """Image-to-image edit through the provider (FLUX.1-kontext, neuroflash /edit), recorded in the ledger
    by source bytes, instruction, provider, edit model and seed: a rerun takes it from there."""
    def annotate(result: GeneratedImage) -> GeneratedImage:
        edits = [*master.metadata.get("edits", []), {"attempt": attempt, "kind": "provider_edit",
                                                     "instruction": instruction}]
        return result.model_copy(update={"metadata": {**master.metadata, **result.metadata, "edits": edits}})

    return paid_edit(master, spec, provider, master.image, instruction, masters_dir, run_id, annotate=annotate)


def paid_edit(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock, source: ImageRef,
              instruction: str, masters_dir: str, run_id: str, *key_parts: object,
              annotate: Callable[[GeneratedImage], GeneratedImage] = lambda result: result,
              spec_extra: dict | None = None) -> GeneratedImage:
    """The provider's edit of `source` (the master or a canvas made from it), paid once per ledger: keyed by
    source bytes, instruction, provider, edit model, seed and `key_parts` (a mask's or style reference's
    sha256). `spec_extra` reaches the provider in the request spec; `annotate` shapes the recorded result."""
    request = request_for(spec)
    extra = dict(spec_extra or {})
    if "image_id" in master.metadata:  # neuroflash edits name their source by the provider's image id
        extra["neuroflash_image_id"] = master.metadata["image_id"]
    if extra:
        request = request.model_copy(update={"spec": {**request.spec, **extra}})
    edit_model = getattr(provider, "edit_model", None) or spec.model

    def pay() -> GeneratedImage:
        generator = provider.get_generator()
        return annotate(paid_call(budget_for_run(run_id), provider.provider_name,
                                  lambda: generator.edit(source, instruction, request, Path(masters_dir)),
                                  charged_when_sent=charges_when_sending(generator)))

    key = ledger_key("edit", source.sha256, instruction, provider.provider_name, edit_model, request.seed, *key_parts)
    return paid_once(ledger_for_run(run_id, Path(masters_dir)), key, GeneratedImage, pay)


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

    def pay() -> GeneratedImage:
        generator = provider.get_generator()
        result = paid_call(budget_for_run(run_id), provider.provider_name,
                           lambda: generator.edit(canvas, request.instruction, request_for(spec), Path(masters_dir)),
                           charged_when_sent=charges_when_sending(generator))
        edits = [*base.metadata.get("edits", []), {"kind": "outpaint", "ratio": spec.outpaint_ratio,
                                                   "instruction": request.instruction,
                                                   "source_sha256": base.image.sha256}]
        return result.model_copy(update={"metadata": {**result.metadata, "edits": edits,
                                                      "outpainted_from": spec.outpaint_from}})

    return paid_once(ledger_for_run(run_id, Path(masters_dir)), outpaint_slot_key(base, spec), GeneratedImage,
                     pay)


def outpaint_slot_key(base: GeneratedImage, spec: PromptSpec) -> str:
    """The ledger key: a concurrent run outpainting the same master to the same ratio waits and reuses it."""
    return ledger_key("outpaint", base.image.sha256, spec.outpaint_ratio, spec.cache_key())


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
