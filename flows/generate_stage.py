"""Generate stage: quota checks before any spend, then every master through the provider chain.

Masters stream back as they arrive, so the caller can measure and render each one while the provider
works on the rest; a provider that is out (or out of quota) hands its masters to the next in the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen.brief import Brief
from imagegen.errors import (
    BriefError,
    BudgetExhausted,
    ContentFiltered,
    ProviderRequestInvalid,
    fallback_worthy,
    safe_reason,
)
from imagegen.fallbacks import check_chain
from imagegen.ledger import file_state
from imagegen.models import GeneratedImage
from imagegen.planning import plan_masters
from imagegen.prompts import PromptSpec
from imagegen.sizes import Target
from imagegen.subject_edits import SubjectEdit
from imagegen.summary import FailedAsset
from imagegen_flows.flows.streaming import STREAM_WINDOW, TaskStream, future_exception, release_memory
from imagegen_flows.tasks.generate import adopt_into, generate_master, outpaint_master, regenerate_master
from imagegen_flows.tasks.providers import check_quota, read_usage
from imagegen_flows.tasks.subject_edits import edit_subject_master


def plan_for_providers(brief: Brief, providers: list, local_master_size: int
                       ) -> tuple[list[PromptSpec], dict[str, list[Target]]]:
    """The masters to make for the first provider of the chain, asking it for its capabilities (for
    neuroflash, its model list: the first request, made before any quota is spent)."""
    primary = providers[0]
    caps = primary.get_generator().capabilities(brief.provider.model)
    model = brief.provider.model or getattr(primary, "model", None) or primary.provider_name
    return plan_masters(brief, caps, primary.provider_name, model, local_master_size)


def plan_member(brief: Brief, provider, local_master_size: int, *, primary: bool, source: str | None = None
                ) -> tuple[list[PromptSpec], dict[str, list[Target]]]:
    """plan_for_providers with `provider` first. The provider's own model list refusing the model the
    brief names (no HTTP error involved) is the brief's error, not a reason to skip the provider."""
    try:
        return plan_for_providers(brief, [provider], local_master_size)
    except ProviderRequestInvalid as err:
        if primary and err.status is None and brief.provider.model:
            raise BriefError([("provider.model", str(err))], source) from None
        raise


def providers_with_quota(members: list, plan: Callable[[int, Any], Any], logger: Any,
                         reserve: Callable[[Any, list[PromptSpec]], None] | None = None
                         ) -> tuple[list, dict[str, dict], dict[str, str], Any]:
    """Pre-flight every member of the chain before any spend. Until one passes, `plan(position, provider)`
    asks a member for its capabilities (for neuroflash its model list, which proves the credentials) and
    its quota is checked for that plan; the members after it only have their quota checked for the same
    number of masters (for neuroflash that proves the credentials too; their capabilities are asked if a
    fallback happens). A member that fails, or whose credentials are missing (`members` holds its
    ProviderNotConfigured), is skipped with a warning, whatever its place in the chain; the run stops here
    only when every member fails, with the first one's error (saying how many images are needed and
    left, or what the provider said). The member that plans the run then `reserve`s the images of its
    daily budget that the plan pays for (imagegen_flows.flows.run_budget); too few left skips it too.

    Returns (usable providers, quota before per provider, {skipped name: reason}, the first usable
    provider's plan)."""
    before: dict[str, dict] = {}
    first_plan: list[Any] = []

    def check(position: int, provider) -> Any:
        planned = first_plan[0] if first_plan else plan(position, provider)
        future = check_quota.submit(provider, len(planned[0]))
        if (exc := future_exception(future)) is not None:
            raise exc
        if (quota := future.result()) is not None:
            before[provider.provider_name] = quota
        if reserve is not None and not first_plan:
            reserve(provider, planned[0])
        first_plan[:] = [planned]
        return planned

    chain = check_chain(members, check, on_skip=lambda name, reason: logger.warning(
        f"[generate] skipped {name}: {reason}; the next provider in the chain is used"))
    return chain.members(), before, chain.skipped, chain.usable[0][1]


def usage_after(providers: list, before: dict[str, dict]) -> dict[str, dict]:
    usage = {}
    for provider in providers:
        if provider.provider_name in before:
            future = read_usage.submit(provider)
            after = future.result() if future_exception(future) is None else None
            usage[provider.provider_name] = {"before": before[provider.provider_name], "after": after}
    return usage


def generation_call(spec: PromptSpec, provider, generated: dict[str, GeneratedImage], filtered: int,
                    masters_dir: Path, run_id: str) -> tuple[Any, tuple]:
    """The task that makes `spec`'s master now, and its arguments: an outpaint of its base master, a
    regeneration with the next new seed after `filtered` answers the safety filter withheld, or the
    first generation."""
    if spec.outpaint_from:
        return outpaint_master, (generated[spec.outpaint_from], spec, provider, str(masters_dir), run_id)
    if filtered:
        return regenerate_master, (spec, provider, str(masters_dir), run_id, filtered)
    return generate_master, (spec, provider, str(masters_dir), run_id)


def from_ledger(task, arguments: tuple) -> tuple[Any, BaseException | None]:
    """(master, None) or (None, why): the task runs again past Prefect's cache, so the ledger decides
    what a cached master whose file is gone or changed becomes. A gone file is made again from the
    same request; changed bytes the ledger recorded are reported (MasterChanged), never paid for again."""
    try:
        return task.with_options(refresh_cache=True)(*arguments), None
    except Exception as exc:  # an interrupt is no Exception: it ends the run
        return None, exc


def generate_all(specs: list[PromptSpec], brief: Brief, providers: list, masters_dir: Path, run_id: str,
                 local_master_size: int, failed: list[FailedAsset], logger,
                 on_master: Callable[[str, GeneratedImage, TaskStream], None] | None = None,
                 subject_edits: dict[str, list[SubjectEdit]] | None = None) -> dict[str, GeneratedImage]:
    """Generate every master, walking the fallback chain for masters whose provider is out or out of quota.

    Masters are handed to `on_master` as they arrive (with the stream, to submit follow-up work on);
    submissions are windowed so memory does not grow with the batch. Outpainted masters are made from
    their base master by the provider that made it, as soon as it exists. A generation the provider's
    safety filter withheld is asked again with a new seed, up to `quality.max_edit_attempts` times;
    still filtered, it fails with the filter's reason (there are no pixels to quarantine). A master with
    `subject_edits` (style transfer, inpainting) is edited by the provider that made it before it counts
    as arrived; an edit that fails fails the asset (stage "edit"), never publishing the unedited master.
    """
    generated: dict[str, GeneratedImage] = {}
    filtered: dict[str, list[str]] = {}  # asset id -> the filter's reasons, one per withheld attempt
    children: dict[str, list[PromptSpec]] = {}
    for spec in specs:
        if spec.outpaint_from:
            children.setdefault(spec.outpaint_from, []).append(spec)
    pending = {spec.asset_id: spec for spec in specs if not spec.outpaint_from}
    stream = TaskStream()
    finished = 0
    for position, provider in enumerate(providers):
        if not pending:
            break
        if position > 0:
            logger.info(f"[generate] falling back to {provider.provider_name} for {len(pending)} master(s)")
            fallback_specs, _ = plan_for_providers(brief, providers[position:], local_master_size)
            fallback = {(s.subject_index, s.variation): s for s in fallback_specs if not s.outpaint_from}
            keeps_size = not provider.get_generator().capabilities(None).native_sizes
            # the asset keeps its identity (and, where the provider can, its aspect) whoever makes it
            pending = {aid: fallback[(s.subject_index, s.variation)].model_copy(update={
                "asset_id": aid, **({"width": s.width, "height": s.height} if keeps_size else {})})
                for aid, s in pending.items()}
        waiting, outstanding, done = list(pending.items()), 0, 0
        total = len(pending) + sum(len(children.get(aid, [])) for aid in pending)
        in_progress: dict[str, PromptSpec] = dict(pending)
        still_pending: dict[str, PromptSpec] = {}
        while waiting or outstanding:
            while waiting and stream.has_room():
                aid, spec = waiting.pop(0)
                task, arguments = generation_call(spec, provider, generated, len(filtered.get(aid, [])),
                                                  masters_dir, run_id)
                stream.submit(("generate", aid), task, *arguments)
                outstanding += 1
            (kind, aid), future = stream.next_finished()
            finished += 1
            if finished % STREAM_WINDOW == 0:
                release_memory()
            if kind not in ("generate", "subject_edit"):
                continue  # follow-up work finished: its future is read where it is used
            outstanding -= 1
            spec = in_progress[aid]
            exc = future_exception(future)
            if kind == "subject_edit" and exc is not None:
                fail_with_children(aid, "edit", safe_reason(exc), children, failed, logger)
                continue
            if kind == "generate":
                done += 1
            if exc is None and kind == "generate":
                result = future.result()
                if file_state(result.image) != "intact":  # a cache hit whose file is gone or changed
                    result, exc = from_ledger(*generation_call(spec, provider, generated, len(filtered.get(aid, [])),
                                                               masters_dir, run_id))
                if exc is None and (edits := (subject_edits or {}).get(aid)):
                    stream.submit(("subject_edit", aid), edit_subject_master, adopt_into(result, masters_dir), spec,
                                  provider, edits, str(masters_dir), run_id)
                    outstanding += 1
                    continue
            elif exc is None:
                result = future.result()
                logger.info(f"[edit] {aid}: " + ", ".join(e["kind"] for e in result.metadata.get("edits", [])))
            if exc is None:
                if aid in filtered:  # kept with the master: the catalog says which seeds the filter withheld
                    result = result.model_copy(update={"metadata": {
                        **result.metadata, "filtered_reasons": filtered[aid], "filtered_retries": len(filtered[aid])}})
                generated[aid] = adopt_into(result, masters_dir)
                logger.info(f"[generate] {done}/{total} {aid}: {result.provider} {result.model} seed {result.seed}"
                            + (f" (outpainted to {spec.outpaint_ratio})" if spec.outpaint_from else ""))
                if on_master is not None:
                    on_master(aid, generated[aid], stream)
                for child in children.get(aid, []):
                    in_progress[child.asset_id] = child
                    waiting.append((child.asset_id, child))
            elif (isinstance(exc, ContentFiltered) and not spec.outpaint_from
                  and len(filtered.get(aid, [])) < brief.quality.max_edit_attempts):
                filtered.setdefault(aid, []).append(safe_reason(exc))
                logger.warning(f"[generate] {aid}: {safe_reason(exc)}; asking again with a new seed "
                               f"({len(filtered[aid])} of {brief.quality.max_edit_attempts})")
                waiting.append((aid, spec))
                total += 1
            elif not spec.outpaint_from and position + 1 < len(providers) and fallback_worthy(exc):
                still_pending[aid] = pending[aid]
            else:
                stage = "budget" if isinstance(exc, BudgetExhausted) else ("outpaint" if spec.outpaint_from
                                                                          else "generate")
                reason = safe_reason(exc)
                if isinstance(exc, ContentFiltered) and aid in filtered:
                    reason += f"; still filtered after {len(filtered[aid])} new seed(s)"
                fail_with_children(aid, stage, reason, children, failed, logger)
        pending = still_pending
    return {s.asset_id: generated[s.asset_id] for s in specs if s.asset_id in generated}


def fail_with_children(aid: str, stage: str, reason: str, children: dict[str, list[PromptSpec]],
                       failed: list[FailedAsset], logger) -> None:
    """`aid` failed at `stage`; the masters to be outpainted from it fail with it."""
    failed.append(FailedAsset(asset_id=aid, stage=stage, reason=reason))
    logger.warning(f"[{stage}] {aid} failed: {reason}")
    for child in children.get(aid, []):
        failed.append(FailedAsset(asset_id=child.asset_id, stage="outpaint", reason=f"its master {aid} was not made"))
