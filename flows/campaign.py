"""The campaign flow: brief -> prompt -> generate -> gate -> edit -> publish -> catalog.

The flow composes tasks and moves small references between them; it does no HTTP and touches no
pixels itself. Tasks run on a bounded thread pool, one per master per stage; each master is measured
and rendered as soon as it arrives, while the provider works on the rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run

from imagegen.brief import Brief
from imagegen.brief_source import brief_from_source
from imagegen.budget import budget_for_run, release_run
from imagegen.files import sweep_once_in_a_while
from imagegen.ledger import release_ledger, use_ledger_for_run
from imagegen.models import GeneratedImage
from imagegen.pixelwork import limit_malloc_arenas
from imagegen.prompts import PromptSpec
from imagegen.quality import checks_for_policy, preload_in_background
from imagegen.ratelimit import pacing_through
from imagegen.scratch import run_scratch
from imagegen.settings import load_settings
from imagegen.sizes import resolve_targets
from imagegen.subject_edits import plan_subject_edits
from imagegen.summary import FailedAsset, RunSummary, tally_faces
from imagegen_flows.blocks.preflight import check_catalog, check_output_folder, check_stores
from imagegen_flows.blocks.resolve import catalog_block, provider_chain_members, publish_stores, quarantine_block
from imagegen_flows.flows.event_inputs import confined_inputs
from imagegen_flows.flows.gate_stage import gate_and_edit
from imagegen_flows.flows.generate_stage import generate_all, plan_member, providers_with_quota, usage_after
from imagegen_flows.flows.interrupts import ending_promptly
from imagegen_flows.flows.publish_stage import (
    alt_text_for,
    content_credentials,
    master_template,
    publish_and_catalog,
    publish_job,
    render_arguments,
)
from imagegen_flows.flows.reporting import record_run
from imagegen_flows.flows.run_budget import daily_reservation, open_run_budget
from imagegen_flows.flows.streaming import TaskStream, future_exception, thread_pool
from imagegen_flows.tasks.gate import measure_master
from imagegen_flows.tasks.publish import render_master


@task(name="build-prompts", cache_result_in_memory=False)
def build_prompts(brief: Brief, provider, local_master_size: int, primary: bool = True
                  ) -> tuple[list[PromptSpec], dict]:
    """The masters to make with `provider` first in the chain (imagegen_flows.flows.generate_stage.plan_member)."""
    return plan_member(brief, provider, local_master_size, primary=primary)


def vlm_reviewer(brief: Brief, settings):
    """The VLM reviewer when the policy gates on it or IMAGEGEN_VLM_MODEL asks for reviewed alt text."""
    from imagegen.errors import SettingsError
    from imagegen_flows.blocks.nvidia import vision_reviewer_from_settings

    if not (brief.quality.vlm_review or settings.vlm_model):
        return None
    reviewer = vision_reviewer_from_settings(settings)
    if reviewer is None and brief.quality.vlm_review:  # the brief is fine; the environment lacks the key
        raise SettingsError([("NVIDIA_API_KEY", "the brief's quality.vlm_review needs a reviewer: set it (and "
                                                "IMAGEGEN_VLM_MODEL, IMAGEGEN_VLM_BASE_URL for another "
                                                "OpenAI-compatible endpoint)")])
    return reviewer


@flow(name="imagegen-campaign", log_prints=False, task_runner=thread_pool())
def campaign_flow(brief: str | dict, out_dir: str = "imagegen-output", provider: str | None = None,
                  max_provider_calls: int | None = None, brief_dir: str | None = None,
                  confined: bool = False) -> RunSummary:
    """Turn a campaign brief into published, quality-gated image sets.

    Args:
        brief: The campaign brief: a path (relative to `brief_dir` or the worker's working directory), an
            https URL, the brief itself as YAML/JSON text, or a mapping.
        out_dir: The output folder on the worker: masters, local assets, quarantine, the catalog (SQLite
            default), the gallery and the run summary.
        provider: Overrides the brief's provider: `local`, `nvidia`, `nim` or `neuroflash`, or a saved block
            `<block-type-slug>/<name>`. Empty keeps the brief's.
        max_provider_calls: Stop spending after this many provider calls in this run. Empty means no limit
            beyond `IMAGEGEN_MAX_PROVIDER_CALLS`.
        brief_dir: The folder relative brief paths (and the brief's logo path) are read from.
        confined: For runs started by an event (untrusted input): `brief` and `out_dir` must stay under
            IMAGEGEN_BRIEFS_ROOT and IMAGEGEN_OUTPUT_ROOT, and brief URLs must be https to public addresses;
            a refused payload fails the run with the reason and emits `imagegen.brief.rejected`.
    """
    with ending_promptly():  # an interrupt ends the process within seconds, see flows/interrupts.py
        started = time.monotonic()
        limit_malloc_arenas()  # before the task threads start: freed pixel buffers go back to few arenas
        logger = get_run_logger()
        settings = load_settings(provider=provider, max_provider_calls=max_provider_calls)
        if confined:
            the_brief, out = confined_inputs(brief, out_dir, brief_dir, settings)
        else:
            the_brief, out = brief_from_source(brief, Path(brief_dir) if brief_dir else None), Path(out_dir).resolve()
        members = provider_chain_members(the_brief.provider, settings, override=settings.provider)
        small, large = publish_stores(the_brief.publish, settings, out)  # a bad store name fails before any spend
        catalog = catalog_block(settings, out)
        check_output_folder(out, "out_dir")  # runs that never passed the CLI (deployments, events) check here
        check_catalog(catalog, settings.catalog_url, "out_dir")
        check_stores(small, large, the_brief.publish.small_store, the_brief.publish.large_store)
        credentials = content_credentials(settings, out)  # a broken signing identity fails before any spend
        run_id = str(flow_run.id or f"local-{time.time_ns()}")
        budget = open_run_budget(catalog, settings, run_id)  # calls and daily images, counted where the catalog is
        try:
            # every provider call of the run, from the quota check on, takes its turn in the account's schedule:
            # with a PostgreSQL catalog one schedule in its database, shared by every worker (imagegen.ratelimit)
            with pacing_through(catalog.account_pacing()):
                # prompt: every guard runs before any quota is spent or any file is written; a provider of the
                # chain that fails its pre-flight (credentials, quota, its daily images) is skipped, and the
                # plan is the first usable one's
                providers, quota_before, skipped, (specs, targets_by_asset) = providers_with_quota(
                    members, lambda position, provider: build_prompts(the_brief, provider,
                                                                      settings.local_master_size,
                                                                      primary=position == 0), logger,
                    reserve=daily_reservation(budget, catalog, settings, out / "masters"))
                targets = resolve_targets(the_brief.size_sets, the_brief.targets)
                logger.info(f"[prompt] {len(specs)} master(s) x {len(targets)} target(s) for campaign "
                            f"{the_brief.campaign}")
                # style references and masks read, and masks fitted to the planned sizes, before any spend
                edits = plan_subject_edits(the_brief, specs,
                                           providers[0].get_generator().capabilities(the_brief.provider.model))

                sweep_once_in_a_while(out)  # temp files of a killed run on this folder go now, not at the end
                with run_scratch(out / ".work", f"run-{run_id}") as work_dir:
                    return run_stages(the_brief, settings, specs, targets_by_asset, providers, quota_before, out,
                                      work_dir, run_id,
                                      stores=dict(small=small, large=large, quarantine=quarantine_block(out)),
                                      credentials=credentials, catalog=catalog, started=started, logger=logger,
                                      skipped=skipped, subject_edits=edits)
        finally:
            release_run(run_id)  # a run stopped before its stages gives back what it reserved (run_stages did)


def run_stages(the_brief: Brief, settings, specs: list[PromptSpec], targets_by_asset: dict, providers: list,
               quota_before: dict, out: Path, work_dir: Path, run_id: str, *, stores: dict, credentials: dict,
               catalog, started: float, logger, skipped: dict[str, str] | None = None,
               subject_edits: dict | None = None) -> RunSummary:
    """generate -> gate -> edit -> publish -> catalog, with each master measured and rendered as it
    arrives, so the pixel work overlaps the provider's rate-limited calls."""
    budget = budget_for_run(run_id, settings.max_provider_calls)
    masters_dir, docs_dir = out / "masters", out / "gx-report"
    failed: list[FailedAsset] = []
    reviewer = vlm_reviewer(the_brief, settings)
    spec_by_id = {s.asset_id: s for s in specs}
    palette = list(the_brief.brand.palette)
    measured: dict[str, Any] = {}  # master sha256 -> measurements or their future
    rendered: dict[str, tuple[str, Any]] = {}  # asset id -> (master sha256, future of its render made ahead)
    unused: list = []  # renders made ahead of an edit that changed the master

    def measure_and_render(aid: str, master: GeneratedImage, stream: TaskStream) -> None:
        sha, spec = master.image.sha256, spec_by_id[aid]
        measuring = stream.submit(("measure", aid), measure_master, master.image.path, aid, palette,
                                  the_brief.publish.background, the_brief.quality.checks_faces(spec.style))
        rendering = stream.submit(("render", aid), render_master, **render_arguments(
            master, campaign=spec.campaign, asset_id=aid, prompt=spec.prompt, targets=targets_by_asset[aid],
            brief=the_brief, work_dir=work_dir, style=spec.style, **credentials))
        measured[sha], rendered[aid] = measuring, (sha, rendering)
        # keep results, not futures (each holds its task's states): a failed one stays a future, to report
        stream.on_finished(measuring, lambda f: measured.__setitem__(sha, f.result())
                           if future_exception(f) is None else None)
        stream.on_finished(rendering, lambda f: rendered.__setitem__(aid, (sha, f.result()))
                           if future_exception(f) is None and aid in rendered else None)

    preload_in_background()  # the gate's GX import happens while the provider works
    interrupted = False
    # the paid tasks of this run claim here: with a PostgreSQL catalog, in its database, shared by every worker
    use_ledger_for_run(run_id, catalog.paid_call_ledger(masters_dir, settings.ledger_lease_seconds), masters_dir)
    try:
        try:
            masters = generate_all(specs, the_brief, providers, masters_dir, run_id, settings.local_master_size,
                                   failed, logger, on_master=measure_and_render, subject_edits=subject_edits)
            for aid, master in masters.items():  # record what made it (a fallback changes provider and model)
                spec_by_id[aid] = spec_by_id[aid].model_copy(update={"provider": master.provider,
                                                                     "model": master.model})
            report, history, reviews = (gate_and_edit(masters, spec_by_id, the_brief, providers[0], masters_dir,
                                                      docs_dir, run_id, logger, reviewer, measured, failed)
                                        if masters else (None, {}, {}))
            usage = usage_after(providers, quota_before)
        finally:
            provider_calls, outcome_unknown, recovered = budget.spent, budget.outcome_unknown, budget.recovered
            calls_by_provider = {name: n for name, n in budget.by_provider.items() if n}
            release_run(run_id)
            release_ledger(run_id)

        checked = {faces: sorted({c.gate for c in checks_for_policy(
                       the_brief.quality, has_palette=bool(the_brief.brand.palette),
                       with_vlm=the_brief.quality.vlm_review, with_cutout=the_brief.publish.background != "keep",
                       with_faces=faces)})
                   for faces in (False, True)}
        results = report.results if report else {}
        jobs = {}
        for aid, master in masters.items():
            template = master_template(spec_by_id[aid], master, results[aid],
                                       checked[the_brief.quality.checks_faces(spec_by_id[aid].style)], history[aid],
                                       alt_text_for(spec_by_id[aid], reviews.get(aid)))
            sha, ahead = rendered.pop(aid, (None, None))
            usable = sha == master.image.sha256 and template["status"] == "published"  # not if edited or failed
            if isinstance(ahead, PrefectFuture) and not usable:
                unused.append(ahead)
            jobs[aid] = publish_job(master, template, targets=targets_by_asset[aid], brief=the_brief,
                                    work_dir=work_dir, **stores, **credentials, rendered=ahead if usable else None)
        record = publish_and_catalog(jobs, catalog, logger, failed, out / "gallery.html")
    except (KeyboardInterrupt, TerminationSignal):
        interrupted = True  # the process ends within seconds (flows/interrupts.py): renders in flight are left
        raise
    finally:
        if not interrupted:  # renders nobody will store (of quarantined or edited masters) finish first
            wait([f for f in unused + [f for _, f in rendered.values()] if isinstance(f, PrefectFuture)])

    summary = RunSummary(
        campaign=the_brief.campaign, out_dir=str(out), masters=len(specs), generated=len(masters), failed=failed,
        provider_calls=provider_calls, provider_calls_by_provider=calls_by_provider, outcome_unknown=outcome_unknown,
        answers_recovered=recovered,
        provider_usage=usage, providers_skipped=skipped or {},
        providers_used={p: sum(1 for m in masters.values() if m.provider == p)
                        for p in {m.provider for m in masters.values()}},
        gx_report=report.docs_index if report else None, faces=tally_faces(report.results) if report else None)
    return record_run(summary, record, catalog, out, started, run_id)
