"""Generate and edit masters: the only tasks that spend provider quota."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.context import TaskRunContext

from blocks.providers import ImageProviderBlock
from imagegen.budget import budget_for_run
from imagegen.ledger import generation_slot
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef
from imagegen.prompts import PromptSpec
from tasks.retrying import RETRY_OPTIONS


def generation_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Prompt spec + provider + model + seed + size: an unchanged rerun spends no quota."""
    return f"imagegen-generate-{parameters['spec'].cache_key()}"


def request_for(spec: PromptSpec, seed: int | None = None) -> GenerationRequest:
    return GenerationRequest(prompt=spec.prompt, negative_prompt=spec.negative_prompt, width=spec.width,
                             height=spec.height, seed=spec.seed if seed is None else seed, model=spec.model,
                             spec=spec.render_spec())


def adopt_into(result: GeneratedImage, masters_dir: Path) -> GeneratedImage:
    """Make sure a (possibly cached) master lives in this run's masters folder; copying costs no quota."""
    masters_dir.mkdir(parents=True, exist_ok=True)
    source = Path(result.image.path)
    target = masters_dir / source.name
    if source.resolve() == target.resolve():
        return result
    if not target.exists():
        shutil.copyfile(source, target)
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
        budget_for_run(run_id).spend(provider.provider_name)
        result = provider.get_generator().generate(request_for(spec), Path(masters_dir))
        result = result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling}})
        entry.write(result)
        return result


@task(name="regenerate-master", task_run_name="regenerate {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def regenerate_master(spec: PromptSpec, provider: ImageProviderBlock, masters_dir: str, run_id: str,
                      attempt: int) -> GeneratedImage:
    """A fresh master with a new seed derived from the attempt number (deterministic, so reruns repeat it)."""
    budget_for_run(run_id).spend(provider.provider_name)
    new_seed = (spec.seed + 7919 * attempt) % (2**31 - 1) or 1
    result = provider.get_generator().generate(request_for(spec, seed=new_seed), Path(masters_dir))
    return result.model_copy(update={"metadata": {**result.metadata, "negatives": spec.negatives_handling,
                                                  "regenerated": attempt}})


@task(name="edit-master", task_run_name="edit {spec.asset_id} (attempt {attempt})",
      cache_result_in_memory=False, **RETRY_OPTIONS)
def provider_edit_master(master: GeneratedImage, spec: PromptSpec, provider: ImageProviderBlock,
                         instruction: str, masters_dir: str, run_id: str, attempt: int) -> GeneratedImage:
    """Image-to-image edit through the provider (FLUX.1-kontext, neuroflash /edit)."""
    budget_for_run(run_id).spend(provider.provider_name)
    request = request_for(spec)
    if "image_id" in master.metadata:  # neuroflash edits name their source by the provider's image id
        request = request.model_copy(update={"spec": {**request.spec,
                                                      "neuroflash_image_id": master.metadata["image_id"]}})
    result = provider.get_generator().edit(master.image, instruction, request, Path(masters_dir))
    edits = [*master.metadata.get("edits", []), {"attempt": attempt, "kind": "provider_edit",
                                                 "instruction": instruction}]
    return result.model_copy(update={"metadata": {**master.metadata, **result.metadata, "edits": edits}})
