"""Stage compositions shared by the flows: each submits tasks and gathers their small results.

No HTTP and no pixels here; everything heavy happens inside tasks.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, wait
from prefect.transactions import transaction

from imagegen.brief import Brief
from imagegen.catalog.base import CatalogRow, UpsertResult
from imagegen.catalog.rows import rows_for_files
from imagegen.errors import BudgetExhausted, ProviderError, QuotaExhausted, is_transient
from imagegen.gallery import GalleryCards, write_gallery
from imagegen.imaging.metrics import ImageMeasurements
from imagegen.models import GeneratedImage
from imagegen.pixelwork import return_free_memory
from imagegen.prompts import PromptSpec, build_prompt_specs
from imagegen.publishing import PublishedFile, RenderedSet, WebOptions
from imagegen.quality import GateReport, GateResult
from imagegen.remediation import edit_instruction, plan_remediation
from imagegen.sizes import (Target, aspect_groups, outpaint_groups, parse_ratio, resolve_targets,
                            size_for_ratio)
from imagegen.summary import FailedAsset, RunSummary
from imagegen_flows.tasks.catalog import write_catalog
from imagegen_flows.tasks.edit import fix_master_locally
from imagegen_flows.tasks.gate import gate_masters, measure_master
from imagegen_flows.tasks.generate import (adopt_into, generate_master, outpaint_master, provider_edit_master,
                            regenerate_master)
from imagegen_flows.tasks.providers import check_quota, read_usage, review_master
from imagegen_flows.tasks.publish import publish_master, quarantine_master, render_master


# Enough threads for ~30 provider calls in flight (40/min at 10-40 s each); pixel work is limited
# separately by imagegen.pixelwork.PIXEL_SLOTS, so memory stays flat as a batch grows.
TASK_THREADS = 48
# Submitted-but-unstarted tasks cost ~90 KB each (future, task run, copied context): keep at most this
# many in flight, so a 1000-master batch holds no more of them than a 100-master one.
STREAM_WINDOW = 2 * TASK_THREADS
# Masters published and cataloged per transaction: a catalog outage rolls back one chunk's files,
# and the rows of earlier chunks need not stay in memory until the end of the run.
CATALOG_CHUNK = 64

# ---------------------------------------------------------------------------------------------- prompt

def master_size(brief: Brief, caps, local_master_size: int) -> tuple[int, int]:
    """The brief's explicit size, else the provider's largest native size, else a square master."""
    if brief.provider.master_width and brief.provider.master_height:
        return brief.provider.master_width, brief.provider.master_height
    if caps.native_sizes:
        return max(caps.native_sizes, key=lambda wh: wh[0] * wh[1])
    side = min(caps.max_side, local_master_size)
    return side, side


def plan_masters(brief: Brief, providers: list, local_master_size: int
                 ) -> tuple[list[PromptSpec], dict[str, list[Target]]]:
    """Prompt stage, pure: the masters to make and the targets each one is cut into.

    Every guard runs here, before any quota is spent. Where the provider renders native aspect
    ratios (neuroflash), each subject variation gets one master per ratio its targets need, so a
    16:9 banner is not cropped out of a square; elsewhere one master serves every target.
    """
    primary = providers[0]
    caps = primary.get_generator().capabilities(brief.provider.model)
    width, height = master_size(brief, caps, local_master_size)
    model = brief.provider.model or getattr(primary, "model", None) or primary.provider_name
    explicit_size = bool(brief.provider.master_width and brief.provider.master_height)
    groups = aspect_groups(resolve_targets(brief.size_sets, brief.targets),
                           [] if explicit_size else caps.aspect_ratios)
    specs, targets_by_asset = [], {}
    for ratio, targets in groups.items():
        w, h = (width, height) if ratio is None else size_for_ratio(ratio, max(width, height))
        for spec in build_prompt_specs(brief, caps, provider=primary.provider_name, model=model, width=w, height=h):
            if len(groups) > 1:
                spec = spec.model_copy(update={"asset_id": f"{spec.asset_id}-{ratio.replace(':', 'x')}"})
            specs.append(spec)
            targets_by_asset[spec.asset_id] = targets
    if brief.publish.outpaint.enabled and caps.supports_edit and list(groups) == [None]:
        specs += outpainted_specs(specs, targets_by_asset, brief.publish.outpaint.min_crop)
    specs.sort(key=lambda s: (s.subject_index, s.variation, s.outpaint_ratio or ""))
    return specs, targets_by_asset


def outpainted_specs(specs: list[PromptSpec], targets_by_asset: dict[str, list[Target]], min_crop: float
                     ) -> list[PromptSpec]:
    """Masters extended to the aspects a crop would mutilate: each takes those targets from its base
    master (whose own list keeps the rest) and is made by the provider's edit once the base exists."""
    from imagegen.imaging.brand import outpaint_size

    derived = []
    for spec in specs:
        kept, extended = outpaint_groups(targets_by_asset[spec.asset_id], spec.width, spec.height, min_crop)
        targets_by_asset[spec.asset_id] = kept
        for ratio, targets in extended.items():
            width, height = outpaint_size(spec.width, spec.height, parse_ratio(ratio), multiple_of=16)
            child = spec.model_copy(update={"asset_id": f"{spec.asset_id}-{ratio.replace(':', 'x')}",
                                            "outpaint_from": spec.asset_id, "outpaint_ratio": ratio,
                                            "width": width, "height": height})
            derived.append(child)
            targets_by_asset[child.asset_id] = targets
    return derived


# -------------------------------------------------------------------------------------------- helpers

def future_exception(future: PrefectFuture) -> BaseException | None:
    """The exception the task raised, or None when it completed (waits for it to finish)."""
    future.wait()
    state = future.state
    if state.is_completed():
        return None
    if isinstance(state.data, BaseException):
        return state.data
    try:
        state.result()
    except BaseException as exc:  # Prefect re-raises the task's own exception
        return exc
    return RuntimeError(f"task ended in state {state.name}")


class TaskStream:
    """Submit tasks with at most `window` of them in flight; hand them back in the order they finish.

    The flow reacts to each master as it arrives (measure it, render it) instead of waiting for the
    whole stage, so the pixel work overlaps the provider's rate-limited calls.
    """

    def __init__(self, window: int = STREAM_WINDOW):
        self.window = window
        self.in_flight = 0
        self._finished: queue.Queue = queue.Queue()
        self._settle: dict[int, Callable[[PrefectFuture], None]] = {}

    def has_room(self) -> bool:
        return self.in_flight < self.window

    def submit(self, key: Any, task, *args, **kwargs) -> PrefectFuture:
        future = task.submit(*args, **kwargs)
        self.in_flight += 1
        future.add_done_callback(lambda f: self._finished.put((key, f)))
        return future

    def on_finished(self, future: PrefectFuture, settle: Callable[[PrefectFuture], None]) -> None:
        """Run `settle(future)` in the flow's thread when `future` comes out of next_finished()."""
        self._settle[id(future)] = settle

    def next_finished(self) -> tuple[Any, PrefectFuture]:
        key, future = self._finished.get()
        self.in_flight -= 1
        forget_cancel_events([future.task_run_id])
        if (settle := self._settle.pop(id(future), None)) is not None:
            settle(future)
        return key, future


def forget_finished_results() -> int:
    """Drop Prefect's lineage records of task results that are gone or untrackable; return how many.

    Prefect keeps, for every task result and each object one level inside it, an entry (with a copy
    of the task's final state) in FlowRunContext.run_results until the flow run ends, so it can draw
    an edge when that object is passed to another task. Measured: ~110 KB per master (four tasks),
    +34 % peak RSS at 1000 masters. Entries whose object has died, or that name plain values
    (strings, lists: tracked by id() alone), are no use to us: our tasks pass the models on.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return 0
    stale = [key for key, (_, _, ref) in list(context.run_results.items()) if ref is None or ref() is None]
    for key in stale:
        context.run_results.pop(key, None)
    return len(stale)


def forget_cancel_events(task_run_ids) -> int:
    """Drop the cancel events Prefect's ThreadPoolTaskRunner keeps for these finished task runs.

    The runner keeps a threading.Event per submitted task (to cancel it while it runs) until the
    flow run ends: ~1 KB each, four or more per master. A finished task has nothing to cancel.
    """
    from prefect.context import FlowRunContext

    events = getattr(getattr(FlowRunContext.get(), "task_runner", None), "_cancel_events", None)
    if not isinstance(events, dict):
        return 0
    return sum(events.pop(task_run_id, None) is not None for task_run_id in task_run_ids)


def release_memory() -> None:
    """What a long batch has finished with goes: Prefect's lineage records, the C heap's free pages."""
    forget_finished_results()
    return_free_memory()


def resolved(value):
    """A future's result (waiting for it), or the value itself."""
    return value.result() if isinstance(value, PrefectFuture) else value


def safe_reason(exc: BaseException | None) -> str:
    """Our own exceptions carry no secrets by construction; anything else is reduced to its type."""
    if exc is None:
        return "unknown failure"
    if isinstance(exc, ProviderError) or type(exc).__module__.startswith("imagegen"):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def fallback_worthy(exc: BaseException | None) -> bool:
    """Outages and exhausted quota move a master to the next provider; bad requests do not."""
    return isinstance(exc, QuotaExhausted) or (exc is not None and is_transient(exc))


# ------------------------------------------------------------------------------------------- generate

def providers_with_quota(providers: list, needed: int, logger) -> tuple[list, dict[str, dict]]:
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
            fallback_specs, _ = plan_masters(brief, providers[position:], local_master_size)
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
                if not Path(result.image.path).exists():  # a cache hit whose file is gone: make it again
                    again = outpaint_master if spec.outpaint_from else generate_master
                    args = (generated[spec.outpaint_from], spec) if spec.outpaint_from else (spec,)
                    result = again.with_options(refresh_cache=True)(*args, provider, str(masters_dir), run_id)
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


# ----------------------------------------------------------------------------------------- gate, edit

def measure_all(masters: dict[str, GeneratedImage], palette: list[str],
                known: dict[str, Any]) -> list[ImageMeasurements]:
    """Measure each master once: bytes measured (or being measured) earlier are not measured again.

    `known` maps a master's sha256 to its measurements or to the future of a measure task that the
    generate stage submitted as the master arrived.
    """
    for aid, m in masters.items():
        if m.image.sha256 not in known:
            known[m.image.sha256] = measure_master.submit(m.image.path, aid, palette)
    for m in masters.values():
        known[m.image.sha256] = resolved(known[m.image.sha256])
    return [known[m.image.sha256].model_copy(update={"image_id": aid}) for aid, m in masters.items()]


def submit_remedy(aid: str, failures: list, remedies: list[str], master: GeneratedImage, spec: PromptSpec,
                  provider, masters_dir: Path, palette: list[str], run_id: str, attempt: int) -> PrefectFuture:
    if remedies == ["regenerate"]:
        return regenerate_master.submit(spec, provider, str(masters_dir), run_id, attempt)
    if remedies == ["provider_edit"]:
        return provider_edit_master.submit(master, spec, provider, edit_instruction(failures), str(masters_dir),
                                           run_id, attempt)
    return fix_master_locally.submit(master, aid, remedies, palette, str(masters_dir), attempt)


def review_all(masters: dict[str, GeneratedImage], specs: dict[str, PromptSpec], reviewer, run_id: str,
               known: dict[str, Any], logger) -> dict[str, Any]:
    """A VLM review per master (verdict, reasons, alt text); bytes reviewed in an earlier round are not
    reviewed again. A review that fails counts as a failing verdict, with its reason."""
    from imagegen.providers.vlm import Review

    futures = {m.image.sha256: review_master.submit(m.image.path, aid, reviewer,
                                                    {"campaign": specs[aid].campaign, "prompt": specs[aid].prompt,
                                                     "brand": specs[aid].brand_name}, run_id)
               for aid, m in masters.items() if m.image.sha256 not in known}
    wait(list(futures.values()))
    for sha, future in futures.items():
        exc = future_exception(future)
        if exc is None:
            known[sha] = future.result()
        else:
            logger.warning(f"[gate] review failed: {safe_reason(exc)}")
            known[sha] = Review(verdict="fail", reasons=[f"review failed: {safe_reason(exc)}"], alt_text="",
                                model=getattr(reviewer, "model", "vlm"))
    return {aid: known[m.image.sha256] for aid, m in masters.items()}


def gate_and_edit(masters: dict[str, GeneratedImage], specs: dict[str, PromptSpec], brief: Brief, provider,
                  masters_dir: Path, docs_dir: Path, run_id: str, logger, reviewer=None,
                  measured: dict[str, Any] | None = None
                  ) -> tuple[GateReport, dict[str, list], dict[str, Any]]:
    """Gate every master; remedy failures and gate again, at most `max_edit_attempts` times.

    Every version an edit produces stays in the masters folder: edits add files, never replace them.
    With a reviewer, each master also gets a VLM review: its verdict is a gate when the policy asks
    for it, and its alt text is kept for the catalog. Returns the report, the edit history, and the
    latest review per master. `measured` holds measurements (or their futures) made as masters arrived.
    """
    policy = brief.quality
    palette = list(brief.brand.palette)
    known: dict[str, Any] = measured if measured is not None else {}
    reviewed: dict[str, Any] = {}
    reviews: dict[str, Any] = {}
    history: dict[str, list[dict]] = {aid: [] for aid in masters}
    supports_edit = provider.get_generator().capabilities(brief.provider.model).supports_edit
    for round_no in range(policy.max_edit_attempts + 1):
        measurements = measure_all(masters, palette, known)
        filtered = {aid: bool(m.content_filtered) for aid, m in masters.items()}
        if reviewer is not None:
            reviews = review_all(masters, specs, reviewer, run_id, reviewed, logger)
        verdicts = {aid: r.verdict for aid, r in reviews.items()} if policy.vlm_review else None
        report = gate_masters(measurements, filtered, policy, bool(palette), str(docs_dir), round_no, verdicts,
                              {aid: specs[aid].outpaint_from for aid in masters if specs[aid].outpaint_from})
        if verdicts:
            for aid, result in report.results.items():  # the model's own reasons, not just "verdict is 'fail'"
                for failure in result.failures:
                    if failure.gate == "vlm_review" and reviews[aid].reasons:
                        failure.reason = "VLM review: " + "; ".join(reviews[aid].reasons)
        failing = report.failed_ids()
        logger.info(f"[gate] round {round_no}: {len(masters) - len(failing)}/{len(masters)} passed")
        for aid in failing:
            history[aid].append({"round": round_no, "sha256": masters[aid].image.sha256,
                                 "failures": [f.model_dump() for f in report.results[aid].failures]})
        if not failing or round_no == policy.max_edit_attempts:
            return report, history, reviews
        attempt = round_no + 1
        futures = {}
        for aid in failing:
            failures = report.results[aid].failures
            remedies = plan_remediation(failures, provider_supports_edit=supports_edit)
            logger.info(f"[edit] {aid} attempt {attempt}: {', '.join(remedies)}")
            futures[aid] = submit_remedy(aid, failures, remedies, masters[aid], specs[aid], provider, masters_dir,
                                         palette, run_id, attempt)
        wait(list(futures.values()))
        for aid, future in futures.items():
            exc = future_exception(future)
            if exc is None:
                masters[aid] = future.result()
            else:  # the edit failed: the last version stays and is judged (and kept) as it is
                logger.warning(f"[edit] {aid} attempt {attempt} failed: {safe_reason(exc)}")
                history[aid].append({"round": round_no, "edit_error": safe_reason(exc)})
    raise AssertionError("unreachable: the last round returns")


# ------------------------------------------------------------------------------------ publish, catalog

def content_credentials(settings, out: Path) -> dict[str, Any]:
    """The C2PA signing identity from the settings (checked by signing a probe, before any spend) and
    where signed files are kept for reruns; both None when signing is not configured."""
    from imagegen.imaging.c2pa_signing import signing_from_settings

    signing = signing_from_settings(settings.c2pa_cert, settings.c2pa_key, settings.c2pa_algorithm,
                                    settings.c2pa_timestamp_url)
    return {"signing": signing, "signed_cache": out / ".c2pa-signed" if signing else None}


def master_template(spec: PromptSpec, master: GeneratedImage, result: GateResult, checked: list[str],
                    history: list[dict], alt_text: str) -> dict[str, Any]:
    """The catalog columns every file of one master shares."""
    return dict(
        campaign=spec.campaign, asset_id=spec.asset_id, phash=result.measurements.get("phash"), prompt=spec.prompt,
        negative_prompt=spec.negative_prompt, provider=master.provider, model=master.model, seed=master.seed,
        generation_ms=master.generation_ms, gates={**result.summary(), "checked": checked, "history": history},
        status="published" if result.passed else "quarantined", alt_text=alt_text,
        metadata={**master.metadata, "edits": master.metadata.get("edits", []),
                  "negatives_handling": spec.negatives_handling, "master_sha256": master.image.sha256,
                  "subject": spec.subject, "style": spec.style, "lighting": spec.lighting,
                  "composition": spec.composition, "mood": spec.mood},
    )


def alt_text_for(spec: PromptSpec, review=None) -> str:
    """The reviewer's alt text when a VLM reviewed the master, else a template from the prompt."""
    from imagegen.providers.vlm import template_alt_text

    if review is not None and review.alt_text:
        return review.alt_text
    return template_alt_text(spec.prompt, spec.brand_name)


def render_options(brief: Brief) -> dict[str, Any]:
    """The render_master arguments a brief decides: brand logo, grade, border, SSIM floor, responsive."""
    logo = brief.brand.logo
    responsive = brief.publish.responsive
    border = brief.brand.border
    web = WebOptions(grade=brief.brand.grade, border_width=border.width if border else None,
                     border_colour=border.colour if border else "#ffffff", ssim_floor=brief.publish.ssim_floor,
                     responsive=responsive.model_dump() if responsive.enabled else None)
    return {"logo_path": str(brief.logo_path) if brief.logo_path else None,
            "logo_options": {"position": logo.position, "opacity": logo.opacity, "scale": logo.scale,
                             "margin": logo.margin} if logo else None,
            "include_master": brief.publish.include_master, "web": web}


@dataclass
class PublishJob:
    """What publishing one master takes: quarantine it, or render it (unless rendered ahead) and store it."""

    template: dict[str, Any]
    master: GeneratedImage
    quarantine: dict[str, Any] | None = None  # quarantine_master arguments, for a master that failed its gates
    render: dict[str, Any] = field(default_factory=dict)  # render_master arguments
    store: dict[str, Any] = field(default_factory=dict)  # publish_master arguments besides `rendered`
    rendered: Any = None  # a RenderedSet, or the future of a render made while the run was generating


def render_arguments(master: GeneratedImage, *, campaign: str, asset_id: str, prompt: str, targets,
                     brief: Brief, work_dir: Path, signing=None, signed_cache: Path | None = None) -> dict[str, Any]:
    """render_master's arguments for one master (`signing`: c2pa_signing.SigningFiles, or None)."""
    return {"master": master, "campaign": campaign, "asset_id": asset_id, "prompt": prompt, "targets": targets,
            "work_dir": str(work_dir), **render_options(brief), "signing": signing,
            "signed_cache": str(signed_cache) if signed_cache else None}


def publish_job(master: GeneratedImage, template: dict[str, Any], *, targets, small, large, quarantine,
                brief: Brief, work_dir: Path, rendered=None, signing=None, signed_cache: Path | None = None
                ) -> PublishJob:
    common = dict(campaign=template["campaign"], asset_id=template["asset_id"])
    if template["status"] == "quarantined":
        return PublishJob(template=template, master=master, quarantine={
            **common, "master": master, "prompt": template["prompt"], "reasons": template["gates"]["failures"],
            "store": quarantine})
    responsive = brief.publish.responsive
    return PublishJob(
        template=template, master=master, rendered=rendered,
        render=render_arguments(master, prompt=template["prompt"], targets=targets, brief=brief, work_dir=work_dir,
                                signing=signing, signed_cache=signed_cache, **common),
        store={**common, "small_store": small, "large_store": large,
               "threshold_bytes": brief.publish.size_threshold_bytes, "alt_text": template["alt_text"],
               "sizes": responsive.sizes if responsive.enabled else "100vw"})


def publish_chunk(jobs: dict[str, PublishJob], logger, failed: list[FailedAsset], counter: list[int], total: int
                  ) -> tuple[list[CatalogRow], list[PublishedFile]]:
    """Publish or quarantine one chunk of masters; gather catalog rows for the files that were stored."""
    futures = {}
    for aid, job in jobs.items():
        if job.quarantine is not None:
            futures[aid] = quarantine_master.submit(**job.quarantine)
        else:
            futures[aid] = publish_master.submit(rendered=job.rendered, **job.store)
    wait(list(futures.values()))
    renders = [job.rendered for job in jobs.values() if isinstance(job.rendered, PrefectFuture)]
    forget_cancel_events([f.task_run_id for f in [*futures.values(), *renders]])
    rows: list[CatalogRow] = []
    stored: list[PublishedFile] = []
    for aid, future in futures.items():
        counter[0] += 1
        render = jobs[aid].rendered
        render_exc = future_exception(render) if isinstance(render, PrefectFuture) else None
        exc = render_exc or future_exception(future)
        if exc is not None:
            stage = "render" if render_exc is not None else "publish"
            failed.append(FailedAsset(asset_id=aid, stage=stage, reason=safe_reason(exc)))
            logger.warning(f"[{stage}] {aid} failed: {safe_reason(exc)}")
            continue
        result = future.result()
        stored += result.files
        extras = {k: v for k, v in (("picture", result.picture), ("blurhash", result.blurhash),
                                    ("palette", result.palette)) if v}
        rows += rows_for_files(jobs[aid].template, result.files, extras)
        logger.info(f"[publish] {counter[0]}/{total} {aid}: {jobs[aid].template['status']}, "
                    f"{len(result.files)} file(s), {sum(f.stored.written for f in result.files)} written")
        for f in result.files:
            if f.budget_note:
                logger.warning(f"[publish] {aid} {f.variant}: {f.budget_note}")
    return rows, stored


def ensure_rendered(jobs: list[PublishJob]) -> None:
    """Submit the renders that were not made ahead (renders of a master that an edit changed, or of a
    size-set run), so they run while the chunk before them is being stored."""
    for job in jobs:
        if job.quarantine is None and job.rendered is None:
            job.rendered = render_master.submit(**job.render)


@dataclass
class RunRecord:
    """What the run's record (summary, gallery, table artifact) needs of its catalog rows, gathered
    chunk by chunk so that a long run lets each chunk's rows (4-6 KB each) go once they are written."""

    gallery: GalleryCards | None  # None: the page shows the whole campaign, drawn from the catalog
    statuses: dict[str, str] = field(default_factory=dict)  # asset id -> published / quarantined
    files_stored: int = 0
    files_written: int = 0
    table: list[dict[str, Any]] = field(default_factory=list)  # the assets artifact, a line per file
    upserted: UpsertResult = field(default_factory=UpsertResult)

    def add(self, rows: list[CatalogRow], stored: list[PublishedFile]) -> None:
        self.statuses.update((row.asset_id, row.status) for row in rows)
        self.files_stored += len(stored)
        self.files_written += sum(1 for f in stored if f.stored.written)
        self.table += [{"asset_id": r.asset_id, "variant": r.variant, "status": r.status, "store": r.store,
                        "size": f"{r.width}x{r.height}", "format": r.format, "bytes": r.bytes,
                        "gates": "pass" if r.gates.get("passed") else "; ".join(
                            f["reason"] for f in r.gates.get("failures", [])), "url": r.url} for r in rows]
        if self.gallery is not None:
            self.gallery.add(rows)


def publish_and_catalog(jobs: dict[str, PublishJob], catalog, logger, failed: list[FailedAsset],
                        gallery_page: Path | None, chunk: int = CATALOG_CHUNK) -> RunRecord:
    """Publish and catalog in chunks, each chunk one transaction: if the catalog refuses a chunk's rows,
    every publish task of that chunk has its rollback hook delete the files it wrote, so no file is
    left without a row (and no row without a file, since rows are written only after their files).
    Earlier chunks stay published and cataloged; a rerun of the same brief completes the set.
    The gallery's cards for `gallery_page` are drawn chunk by chunk (None: the caller draws them)."""
    record = RunRecord(GalleryCards(gallery_page) if gallery_page is not None else None)

    ids = list(jobs)
    chunks = [ids[i:i + chunk] for i in range(0, len(ids), chunk)]
    total = UpsertResult()
    counter = [0]
    for index, part in enumerate(chunks):
        ensure_rendered([jobs[aid] for aid in part + (chunks[index + 1] if index + 1 < len(chunks) else [])])
        with transaction():
            part_rows, part_stored = publish_chunk({aid: jobs[aid] for aid in part}, logger, failed, counter,
                                                   len(ids))
            upserted = write_catalog(part_rows, catalog)
        for aid in part:  # the chunk's masters and renders are done with: let them go
            jobs[aid].rendered = jobs[aid].master = None
        record.add(part_rows, part_stored)
        del part_rows, part_stored
        release_memory()
        total = UpsertResult(inserted=total.inserted + upserted.inserted, updated=total.updated + upserted.updated,
                             unchanged=total.unchanged + upserted.unchanged)
    logger.info(f"[catalog] {total.inserted} new, {total.updated} updated, {total.unchanged} unchanged")
    record.upserted = total
    return record


def record_run(summary: RunSummary, record: RunRecord, catalog, out: Path, started: float) -> RunSummary:
    """The run's record: gallery page, summary file, Prefect artifacts.

    The gallery shows this run's masters, or, when the record drew no cards, every master of the
    campaign (a size-set run adds variants to masters published earlier, and the page should show
    them together).
    """
    statuses = record.statuses.values()
    summary = summary.model_copy(update=dict(
        published=sum(1 for s in statuses if s == "published"),
        quarantined=sum(1 for s in statuses if s == "quarantined"),
        files_stored=record.files_stored, files_written=record.files_written,
        catalog_inserted=record.upserted.inserted, catalog_updated=record.upserted.updated,
        catalog_unchanged=record.upserted.unchanged,
        catalog=getattr(catalog, "path", None) or catalog.get_block_type_slug(),
        gallery=str(out / "gallery.html"), seconds=round(time.monotonic() - started, 2)))
    cards = record.gallery
    if cards is None:  # the whole campaign's masters, as the catalog holds them
        cards = GalleryCards(out / "gallery.html")
        cards.add(catalog.get_catalog().rows(summary.campaign))
    try:
        write_gallery(cards, out / "gallery.html", campaign=summary.campaign,
                      summary={"masters": summary.masters, "published": summary.published,
                               "quarantined": summary.quarantined, "files": summary.files_stored,
                               "provider_calls": summary.provider_calls},
                      gx_report=summary.gx_report)
    finally:
        cards.close()
    (out / "run-summary.json").write_text(summary.model_dump_json(indent=2))
    report_artifacts(summary, record.table)
    return summary


def report_artifacts(summary: RunSummary, table: list[dict[str, Any]]) -> None:
    key = summary.campaign.lower()
    create_table_artifact(key=f"{key}-assets", table=table, description=f"Assets of campaign {summary.campaign}")
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown="## imagegen run\n\n" + "\n".join(f"- {line}" for line in summary.lines()),
        description=f"Run summary of campaign {summary.campaign}")
