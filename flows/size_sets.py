"""Size-set flow: a named size set (e.g. `social_weekly`) for a campaign, on a schedule.

Masters already published are re-rendered from the catalog, with no provider call. A campaign
with no published masters yet runs the full campaign flow for that size set instead (its cached
masters still cost nothing).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import wait
from prefect.runtime import flow_run

from imagegen.brief_source import brief_from_source
from imagegen.catalog.rows import template_from_row
from imagegen.errors import safe_reason
from imagegen.files import sweep_once_in_a_while
from imagegen.publishing import MASTER_VARIANT
from imagegen.redaction import mask_url
from imagegen.scratch import run_scratch
from imagegen.settings import load_settings
from imagegen.sizes import BuiltinSizeSet, resolve_targets
from imagegen.summary import FailedAsset, RunSummary
from imagegen_flows.blocks.preflight import check_catalog, check_output_folder, check_stores
from imagegen_flows.blocks.resolve import catalog_block, publish_stores, quarantine_block
from imagegen_flows.flows.campaign import campaign_flow
from imagegen_flows.flows.interrupts import ending_promptly
from imagegen_flows.flows.publish_stage import content_credentials, publish_and_catalog, publish_job
from imagegen_flows.flows.render_cluster import dask_address_of, render_submitter
from imagegen_flows.flows.reporting import record_run
from imagegen_flows.flows.streaming import future_exception, thread_pool
from imagegen_flows.tasks.fetch import fetch_master


@flow(name="imagegen-size-set", log_prints=False, task_runner=thread_pool())
def size_set_flow(brief: str | dict, size_sets: list[BuiltinSizeSet], out_dir: str = "imagegen-output",
                  from_catalog: bool = True, brief_dir: str | None = None, dask_address: str | None = None
                  ) -> RunSummary:
    """Publish `size_sets` for the brief's campaign; re-render published masters when there are any.

    Args:
        brief: The campaign's brief: a path (relative to `brief_dir` or the worker's working directory),
            an https URL, or the brief itself as YAML/JSON text. Its campaign name finds the published masters.
        size_sets: The built-in size sets to publish, e.g. `social_weekly` (Instagram and Facebook) or
            `social` (every platform).
        out_dir: The output folder on the worker: the catalog (SQLite default), masters, local assets.
        from_catalog: Re-render masters already published in the catalog (no provider call); off runs the
            whole campaign flow for these size sets.
        brief_dir: The folder relative brief paths (and the brief's logo path) are read from.
        dask_address: A Dask scheduler (e.g. tcp://10.0.0.5:8786) to run the re-renders on, in place of
            IMAGEGEN_DASK_ADDRESS; with neither, they run on this worker's threads. The Dask workers need
            out_dir and the brief's logo at the same paths as this worker.
    """
    # an interrupt ends the process within seconds, see flows/interrupts.py
    with ending_promptly(), ExitStack() as run_scope:
        started = time.monotonic()
        logger = get_run_logger()
        settings = load_settings()
        the_brief = brief_from_source(brief, Path(brief_dir) if brief_dir else None)
        targets = resolve_targets(size_sets, [])
        out = Path(out_dir).resolve()
        catalog = catalog_block(settings, out)
        check_output_folder(out, "out_dir")
        check_catalog(catalog, settings.catalog_url, "out_dir")
        check_stores(*publish_stores(the_brief.publish, settings, out), the_brief.publish.small_store,
                     the_brief.publish.large_store)
        address, address_source = dask_address_of(dask_address, settings)
        # connects now: an unreachable scheduler ends the run with one line, before any work
        submit_render = run_scope.enter_context(render_submitter(address, address_source))
        published = [r for r in catalog.get_catalog().rows(the_brief.campaign)
                     if r.variant == MASTER_VARIANT and r.status == "published"] if from_catalog else []
        if not published:
            logger.info(f"[size-set] no published masters for {the_brief.campaign}: running the campaign flow"
                        + (" (on this worker: the Dask cluster takes re-renders only)" if address else ""))
            data = the_brief.model_dump(mode="json", exclude={"base_dir"})
            return campaign_flow(brief={**data, "size_sets": size_sets, "targets": []}, out_dir=out_dir,
                                 brief_dir=the_brief.base_dir)

        logger.info(f"[size-set] re-rendering {len(published)} published master(s) for {', '.join(size_sets)}"
                    + (f" on the Dask cluster at {mask_url(address)}" if address else ""))
        sweep_once_in_a_while(out)  # temp files of a killed run on this folder go now, not at the end
        small, large = publish_stores(the_brief.publish, settings, out)
        # read through the stores, with their credentials: a private bucket's URL does not answer
        fetches = {row.asset_id: fetch_master.submit(row, str(out / "masters"), [small, large]) for row in published}
        wait(list(fetches.values()))
        failed: list[FailedAsset] = []
        credentials = content_credentials(settings, out)
        brief_without_master = the_brief.model_copy(update={"publish": the_brief.publish.model_copy(
            update={"include_master": False})})
        with run_scratch(out / ".work", f"run-{flow_run.id or time.time_ns()}") as work_dir:
            jobs = {}
            for row in published:
                future = fetches[row.asset_id]
                if (exc := future_exception(future)) is not None:
                    failed.append(FailedAsset(asset_id=row.asset_id, stage="fetch", reason=safe_reason(exc)))
                    logger.warning(f"[fetch] {row.asset_id} failed: {safe_reason(exc)}")
                    continue
                jobs[row.asset_id] = publish_job(future.result(), template_from_row(row), targets=targets, small=small,
                                                 large=large, quarantine=quarantine_block(out),
                                                 brief=brief_without_master, work_dir=work_dir, **credentials)
            record = publish_and_catalog(jobs, catalog, logger, failed, out / "gallery.html",
                                         submit_render=submit_render)
        summary = RunSummary(campaign=the_brief.campaign, out_dir=str(out), masters=len(published),
                             generated=0, rerendered=len(jobs), failed=failed, provider_calls=0)
        return record_run(summary, record, catalog, out, started, str(flow_run.id or f"local-{time.time_ns()}"))
