"""Generate stage: quota checks before any spend, then every master through the provider chain.

Masters stream back as they arrive, so the caller can measure and render each one while the provider
works on the rest; a provider that is out (or out of quota) hands its masters to the next in the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen.brief import Brief
from imagegen.errors import BudgetExhausted, QuotaExhausted, fallback_worthy, safe_reason
from imagegen.ledger import file_state
from imagegen.models import GeneratedImage
from imagegen.planning import plan_masters
from imagegen.prompts import PromptSpec
from imagegen.sizes import Target
from imagegen.summary import FailedAsset
from imagegen_flows.flows.streaming import STREAM_WINDOW, TaskStream, future_exception, release_memory
from imagegen_flows.tasks.generate import adopt_into, generate_master, outpaint_master
from imagegen_flows.tasks.providers import check_quota, read_usage


def plan_for_providers(brief: Brief, providers: list, local_master_size: int
                       ) -> tuple[list[PromptSpec], dict[str, list[Target]]]:
    """The masters to make for the first provider of the chain, asking it for its capabilities (for
    neuroflash, its model list: the first request, made before any quota is spent)."""
    primary = providers[0]
    caps = primary.get_generator().capabilities(brief.provider.model)
    model = brief.provider.model or getattr(primary, "model", None) or primary.provider_name
    return plan_masters(brief, caps, primary.provider_name, model, local_master_size)


def providers_with_quota(providers: list, needed: int, logger: Any) -> tuple[list, dict[str, dict]]:
    """Check quota before any spend. A provider without room is skipped when a fallback follows it;
    without a fallback the run stops here, saying how many images are needed and left."""
    usable, before = [], {}
    for position, provider in enumerate(providers):
        future = check_quota.submit(provider, needed)
        exc = future_exception(future)
        if exc is None:
            usable.append(provider)
            if (quota := future.result()) is not None:
                before[provider.provider_name] = quota
        elif isinstance(exc, QuotaExhausted) and position + 1 < len(providers):
            logger.warning(f"[generate] {provider.provider_name}: {exc}; using the fallback")
        else:
            raise exc
    return usable, before


def usage_after(providers: list, before: dict[str, dict]) -> dict[str, dict]:
    usage = {}
    for provider in providers:
        if provider.provider_name in before:
            future = read_usage.submit(provider)
            after = future.result() if future_exception(future) is None else None
            usage[provider.provider_name] = {"before": before[provider.provider_name], "after": after}
    return usage


def from_ledger(spec: PromptSpec, generated: dict[str, GeneratedImage], provider, masters_dir: Path,
                run_id: str) -> tuple[Any, BaseException | None]:
    """(master, None) or (None, why): the task runs again past Prefect's cache, so the ledger decides
    what a cached master whose file is gone or changed becomes. A gone file is made again from the
    same request; changed bytes the ledger recorded are reported (MasterChanged), never paid for again."""
    try:
        if spec.outpaint_from:
            return outpaint_master.with_options(refresh_cache=True)(generated[spec.outpaint_from], spec, provider,
                                                                    str(masters_dir), run_id), None
        return generate_master.with_options(refresh_cache=True)(spec, provider, str(masters_dir), run_id), None
    except Exception as exc:  # an interrupt is no Exception: it ends the run
        return None, exc


def generate_all(specs: list[PromptSpec], brief: Brief, providers: list, masters_dir: Path, run_id: str,
                 local_master_size: int, failed: list[FailedAsset], logger,
                 on_master: Callable[[str, GeneratedImage, TaskStream], None] | None = None
                 ) -> dict[str, GeneratedImage]:
    """Generate every master, walking the fallback chain for masters whose provider is out or out of quota.

    Masters are handed to `on_master` as they arrive (with the stream, to submit follow-up work on);
    submissions are windowed so memory does not grow with the batch. Outpainted masters are made from
    their base master by the provider that made it, as soon as it exists.
    """
    generated: dict[str, GeneratedImage] = {}
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
                if spec.outpaint_from:
                    stream.submit(("generate", aid), outpaint_master, generated[spec.outpaint_from], spec, provider,
                                  str(masters_dir), run_id)
                else:
                    stream.submit(("generate", aid), generate_master, spec, provider, str(masters_dir), run_id)
                outstanding += 1
            (kind, aid), future = stream.next_finished()
            finished += 1
            if finished % STREAM_WINDOW == 0:
                release_memory()
            if kind != "generate":
                continue  # follow-up work finished: its future is read where it is used
            outstanding -= 1
            done += 1
            spec = in_progress[aid]
            exc = future_exception(future)
            if exc is None:
                result = future.result()
                if file_state(result.image) != "intact":  # a cache hit whose file is gone or changed
                    result, exc = from_ledger(spec, generated, provider, masters_dir, run_id)
            if exc is None:
                generated[aid] = adopt_into(result, masters_dir)
                logger.info(f"[generate] {done}/{total} {aid}: {result.provider} {result.model} seed {result.seed}"
                            + (f" (outpainted to {spec.outpaint_ratio})" if spec.outpaint_from else ""))
                if on_master is not None:
                    on_master(aid, generated[aid], stream)
                for child in children.get(aid, []):
                    in_progress[child.asset_id] = child
                    waiting.append((child.asset_id, child))
            elif not spec.outpaint_from and position + 1 < len(providers) and fallback_worthy(exc):
                still_pending[aid] = pending[aid]
            else:
                stage = "budget" if isinstance(exc, BudgetExhausted) else ("outpaint" if spec.outpaint_from
                                                                          else "generate")
                failed.append(FailedAsset(asset_id=aid, stage=stage, reason=safe_reason(exc)))
                logger.warning(f"[{stage}] {aid} failed: {safe_reason(exc)}")
                for child in children.get(aid, []):
                    failed.append(FailedAsset(asset_id=child.asset_id, stage="outpaint",
                                              reason=f"its master {aid} was not made"))
        pending = still_pending
    return {s.asset_id: generated[s.asset_id] for s in specs if s.asset_id in generated}
