"""Publish stage: each master is quarantined, or rendered and stored, and its files cataloged chunk by chunk.

Rows are written only after their files, and when the catalog refuses a chunk's rows the files the run
wrote for that chunk are removed again: no file is left without a row and no row without a file. A
master that fails to publish fails alone; the other masters of its chunk are published and cataloged.

One asset, one status: each chunk starts from the catalog's rows of its assets. What an asset's new
state leaves of its earlier one (imagegen.reconcile: the variants of a master now quarantined, the
quarantined copy of a master published again, a file that moved) loses its rows in the transaction
that writes the new ones, and its files right after that transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.futures import PrefectFuture, wait

from imagegen.brief import Brief
from imagegen.catalog.base import CatalogRow, UpsertResult
from imagegen.catalog.rows import rows_for_files
from imagegen.errors import safe_reason
from imagegen.gallery import GalleryCards
from imagegen.imaging.c2pa_signing import signing_from_settings
from imagegen.models import GeneratedImage
from imagegen.prompts import PromptSpec
from imagegen.providers.vlm import template_alt_text
from imagegen.publishing import PublishedFile, WebOptions
from imagegen.quality import GateResult
from imagegen.reconcile import Leftovers, RecordedFile, leftovers
from imagegen.rollback import LeftBehind, left_behind
from imagegen.summary import FailedAsset
from imagegen_flows.flows.reporting import RunRecord
from imagegen_flows.flows.streaming import forget_cancel_events, future_exception, release_memory
from imagegen_flows.tasks.catalog import read_recorded, write_catalog
from imagegen_flows.tasks.publish import publish_master, quarantine_master, remove_leftovers, render_master, unpublish

# Masters published and cataloged per chunk: a catalog outage removes one chunk's files again,
# and the rows of earlier chunks need not stay in memory until the end of the run.
CATALOG_CHUNK = 64


def content_credentials(settings, out: Path) -> dict[str, Any]:
    """The C2PA signing identity from the settings (checked by signing a probe, before any spend) and
    where signed files are kept for reruns; both None when signing is not configured."""
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
                     responsive=responsive.model_dump() if responsive.enabled else None,
                     background=brief.publish.background)
    logo_path = brief.logo_path
    return {"logo_path": str(logo_path) if logo_path else None,
            "logo_options": {"position": logo.position, "opacity": logo.opacity, "scale": logo.scale,
                             "margin": logo.margin} if logo else None,
            # every width the run stamps the logo on: the first render prepares the marks for all of them
            "logo_widths": sorted({target.width for target in brief.all_targets}) if logo else None,
            "include_master": brief.publish.include_master, "web": web}


@dataclass
class PublishJob:
    """What publishing one master takes: quarantine it, or render it (unless rendered ahead) and store it."""

    template: dict[str, Any]
    master: GeneratedImage | None  # None once the master is published and let go
    quarantine: dict[str, Any] | None = None  # quarantine_master arguments, for a master that failed its gates
    render: dict[str, Any] = field(default_factory=dict)  # render_master arguments
    store: dict[str, Any] = field(default_factory=dict)  # publish_master arguments besides `rendered`
    rendered: Any = None  # a RenderedSet, or the future of a render made while the run was generating
    run_stores: list[Any] = field(default_factory=list)  # every store block of the run: earlier files may be in any

    def store_blocks(self) -> list[Any]:
        """The store blocks this job writes to."""
        if self.quarantine is not None:
            return [self.quarantine["store"]]
        return [self.store["small_store"], self.store["large_store"]]


def render_arguments(master: GeneratedImage, *, campaign: str, asset_id: str, prompt: str, targets,
                     brief: Brief, work_dir: Path, signing=None, signed_cache: Path | None = None,
                     style: str | None = None) -> dict[str, Any]:
    """render_master's arguments for one master (`signing`: c2pa_signing.SigningFiles, or None); `style`,
    its subject's, decides whether its crops keep detected faces whole (QualityPolicy.checks_faces)."""
    options = render_options(brief)
    if brief.quality.checks_faces(style):
        options["web"] = options["web"].model_copy(update={"faces": True})
    return {"master": master, "campaign": campaign, "asset_id": asset_id, "prompt": prompt, "targets": targets,
            "work_dir": str(work_dir), **options, "signing": signing,
            "signed_cache": str(signed_cache) if signed_cache else None}


def publish_job(master: GeneratedImage, template: dict[str, Any], *, targets, small, large, quarantine,
                brief: Brief, work_dir: Path, rendered=None, signing=None, signed_cache: Path | None = None
                ) -> PublishJob:
    common = dict(campaign=template["campaign"], asset_id=template["asset_id"])
    run_stores = [small, large, quarantine]
    if template["status"] == "quarantined":
        return PublishJob(template=template, master=master, run_stores=run_stores, quarantine={
            **common, "master": master, "prompt": template["prompt"], "reasons": template["gates"]["failures"],
            "store": quarantine})
    responsive = brief.publish.responsive
    return PublishJob(
        template=template, master=master, rendered=rendered, run_stores=run_stores,
        render=render_arguments(master, prompt=template["prompt"], targets=targets, brief=brief, work_dir=work_dir,
                                signing=signing, signed_cache=signed_cache,
                                style=template.get("metadata", {}).get("style"), **common),
        store={**common, "small_store": small, "large_store": large,
               "threshold_bytes": brief.publish.size_threshold_bytes, "alt_text": template["alt_text"],
               "sizes": responsive.sizes if responsive.enabled else "100vw"})


def publish_chunk(jobs: dict[str, PublishJob], recorded: dict[str, list[RecordedFile]], logger,
                  failed: list[FailedAsset], counter: list[int], total: int
                  ) -> tuple[list[CatalogRow], list[PublishedFile], dict[str, Leftovers]]:
    """Publish or quarantine one chunk of masters; gather catalog rows for the files that were stored,
    and what each published asset leaves of its `recorded` state (a failed one leaves it as it was)."""
    futures = {}
    for aid, job in jobs.items():
        if job.quarantine is not None:
            futures[aid] = quarantine_master.submit(**job.quarantine, recorded=recorded.get(aid, []))
        else:
            futures[aid] = publish_master.submit(rendered=job.rendered, **job.store, recorded=recorded.get(aid, []))
    wait(list(futures.values()))
    renders = [job.rendered for job in jobs.values() if isinstance(job.rendered, PrefectFuture)]
    forget_cancel_events([f.task_run_id for f in [*futures.values(), *renders]])
    rows: list[CatalogRow] = []
    stored: list[PublishedFile] = []
    left: dict[str, Leftovers] = {}
    for aid, future in futures.items():
        counter[0] += 1
        render = jobs[aid].rendered
        render_exc = future_exception(render) if isinstance(render, PrefectFuture) else None
        exc = render_exc or future_exception(future)
        if exc is not None:  # the first failure is the reason; files its rollback could not remove go beside it
            stage = "render" if render_exc is not None else "publish"
            failed.append(FailedAsset(asset_id=aid, stage=stage, reason=safe_reason(exc),
                                      left_behind=[item.line() for item in left_behind(exc)]))
            logger.warning(f"[{stage}] {aid} failed: {safe_reason(exc)}")
            continue
        result = future.result()
        stored += result.files
        extras = {k: v for k, v in (("picture", result.picture), ("blurhash", result.blurhash),
                                    ("palette", result.palette)) if v}
        template = jobs[aid].template
        rows += rows_for_files(template, result.files, extras)
        left[aid] = leftovers(template["campaign"], aid, recorded.get(aid, []),
                              [(f.variant, (f.stored.store, f.stored.key)) for f in result.files],
                              status=template["status"], master_sha256=template["metadata"].get("master_sha256"))
        logger.info(f"[publish] {counter[0]}/{total} {aid}: {template['status']}, "
                    f"{len(result.files)} file(s), {sum(f.stored.written for f in result.files)} written")
        for f in result.files:
            if f.budget_note:
                logger.warning(f"[publish] {aid} {f.variant}: {f.budget_note}")
            if f.crop_note:
                logger.warning(f"[publish] {aid} {f.variant}: {f.crop_note}")
            if f.repaired:
                logger.warning(f"[publish] {aid} {f.variant}: {f.repaired.line()}")
    return rows, stored, left


def ensure_rendered(jobs: list[PublishJob], submit_render: Callable[..., PrefectFuture]) -> None:
    """Submit the renders that were not made ahead (renders of a master that an edit changed, or of a
    size-set run), so they run while the chunk before them is being stored."""
    for job in jobs:
        if job.quarantine is None and job.rendered is None:
            job.rendered = submit_render(**job.render)


def publish_and_catalog(jobs: dict[str, PublishJob], catalog, logger, failed: list[FailedAsset],
                        gallery_page: Path, chunk: int = CATALOG_CHUNK,
                        submit_render: Callable[..., PrefectFuture] | None = None) -> RunRecord:
    """Publish and catalog in chunks: if the catalog refuses a chunk's rows, the files this run wrote for
    that chunk are removed (`unpublish_chunk`) and the refusal ends the run. Earlier chunks stay published
    and cataloged; a rerun of the same brief completes the set.
    The gallery's cards for `gallery_page` are drawn chunk by chunk. Renders not made ahead go to
    `submit_render` (default: render_master on the flow's own task runner; the size-set flow may pass
    a Dask cluster's, see flows/render_cluster.py)."""
    submit_render = submit_render or render_master.submit
    record = RunRecord(GalleryCards(gallery_page))

    ids = list(jobs)
    chunks = [ids[i:i + chunk] for i in range(0, len(ids), chunk)]
    total = UpsertResult()
    counter = [0]
    for index, part in enumerate(chunks):
        ensure_rendered([jobs[aid] for aid in part + (chunks[index + 1] if index + 1 < len(chunks) else [])],
                        submit_render)
        recorded = read_recorded(catalog, jobs[part[0]].template["campaign"], part)
        part_rows, part_stored, left = publish_chunk({aid: jobs[aid] for aid in part}, recorded, logger, failed,
                                                     counter, len(ids))
        try:
            upserted = write_catalog(part_rows, catalog, remove=[key for found in left.values() for key in found.rows])
        except Exception:
            unpublish_chunk(part_stored, [jobs[aid] for aid in part], logger)
            raise  # the catalog's refusal is what the run reports
        record.files_removed += remove_earlier_files(left, jobs, logger, failed)
        for aid in part:  # the chunk's masters and renders are done with: let them go
            jobs[aid].rendered = jobs[aid].master = None
        record.add(part_rows, part_stored)
        del part_rows, part_stored
        release_memory()
        total = UpsertResult(inserted=total.inserted + upserted.inserted, updated=total.updated + upserted.updated,
                             unchanged=total.unchanged + upserted.unchanged, deleted=total.deleted + upserted.deleted)
    logger.info(f"[catalog] {total.inserted} new, {total.updated} updated, {total.unchanged} unchanged"
                + (f", {total.deleted} deleted" if total.deleted else ""))
    record.upserted = total
    return record


def remove_earlier_files(left: dict[str, Leftovers], jobs: dict[str, PublishJob], logger,
                         failed: list[FailedAsset]) -> int:
    """The catalog no longer names these files: remove them from their stores, asset by asset. A store
    that refuses fails that asset (stage "unpublish"), naming the files left; the others go on."""
    removed = 0
    for aid, found in left.items():
        if not found:
            continue
        status = jobs[aid].template["status"]
        change = f"{found.previous_status} -> {status}" if found.previous_status not in (None, status) else status
        try:
            removed += remove_leftovers(found.files, jobs[aid].run_stores) if found.files else 0
        except Exception as exc:
            failed.append(FailedAsset(asset_id=aid, stage="unpublish", reason=safe_reason(exc)))
            logger.error(f"[publish] {aid} ({change}): its earlier rows are gone, but {safe_reason(exc)}")
            continue
        logger.info(f"[publish] {aid} ({change}): {len(found.rows)} row(s) and {len(found.files)} file(s) "
                    "of its earlier state removed")
    return removed


def unpublish_chunk(stored: list[PublishedFile], chunk_jobs: list[PublishJob], logger) -> None:
    """The catalog refused a chunk's rows: remove the files this run wrote for them. A removal that fails
    as well is logged as a second error, so the catalog's refusal stays the cause the run reports."""
    blocks = {id(block): block for job in chunk_jobs for block in job.store_blocks()}
    written = [f for f in stored if f.stored.written]
    try:
        unpublish(written, list(blocks.values()))
    except Exception as exc:
        left = left_behind(exc) or [LeftBehind(f.stored.store, f.stored.key, safe_reason(exc)) for f in written]
        logger.error(f"[catalog] the catalog refused the rows, and removing the {len(written)} file(s) written for "
                     f"them failed too; {len(left)} left without rows: "
                     + ", ".join(item.line() for item in left[:10]) + (" ..." if len(left) > 10 else ""))
