"""The publish stage: render a master's size set, store every file; quarantine what failed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger

from imagegen.errors import StoreError, TransientStoreError, is_transient, safe_reason
from imagegen.files import transient_file
from imagegen.imaging.c2pa_signing import SigningFiles
from imagegen.models import FORMAT_CONTENT_TYPES, GeneratedImage, StoredObject
from imagegen.publishing import (
    MASTER_VARIANT,
    PublishedFile,
    PublishResult,
    RenderedSet,
    WebOptions,
    picture_snippet,
    render_master_set,
    store_variant,
    variant_key,
)
from imagegen.reconcile import Location, RecordedFile, found_problem, reasons_key
from imagegen.rollback import (
    left_behind,
    note_left_behind,
    removal_error,
    remove_written,
    removed_on_failure,
    second_error_line,
)
from imagegen.sizes import Target
from imagegen.stores.base import SizeRouter
from imagegen_flows.blocks.storage import AssetStoreBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


@task(name="render-master", task_run_name="render {asset_id}", cache_result_in_memory=False)
def render_master(master: GeneratedImage, campaign: str, asset_id: str, prompt: str, targets: list[Target],
                  work_dir: str, logo_path: str | None = None, logo_options: dict | None = None,
                  logo_widths: list[int] | None = None, include_master: bool = True, web: WebOptions | None = None,
                  signing: SigningFiles | None = None, signed_cache: str | None = None) -> RenderedSet:
    """Render every target of `master` into a scratch folder of its own, ready to be stored.

    Pure pixel work with no store or catalog involved, so the flow can render a master while the
    provider is still making the others. The folder is named by asset and master bytes: an edited
    master renders into a new one, and the same master always renders into the same one. With
    `signing`, every file gets a signed C2PA manifest (reused from `signed_cache` for the same pixels).

    The logo (`logo_path`, checked with the brief) is stamped from marks prepared once per run in
    `work_dir`, for every image width of the run (`logo_widths`) and of `targets`: the first render
    decodes the logo, the others read the small marks it left.
    """
    # The body is in the core: on a Dask cluster this function travels by value (its module attribute is
    # the Task, not the function), and a copy must not carry process globals such as PIXEL_SLOTS.
    return render_master_set(master, campaign=campaign, asset_id=asset_id, prompt=prompt, targets=targets,
                             work_dir=Path(work_dir), logo_path=logo_path, logo_options=logo_options,
                             logo_widths=logo_widths, include_master=include_master, web=web, signing=signing,
                             signed_cache=signed_cache)


@task(name="publish-master", task_run_name="publish {asset_id}", cache_result_in_memory=False, **RETRY_OPTIONS)
def publish_master(rendered: RenderedSet, campaign: str, asset_id: str, small_store: AssetStoreBlock,
                   large_store: AssetStoreBlock, threshold_bytes: int, alt_text: str = "",
                   sizes: str = "100vw", recorded: list[RecordedFile] | None = None) -> PublishResult:
    """Store each rendered file in the store its size routes to, then drop the scratch folder.

    `recorded` (the catalog's rows of the asset) tells each file whether its key held what its row
    says: a changed or missing file is rewritten and reported (PublishedFile.repaired).

    Files this attempt wrote are removed again if it fails (and by `unpublish` if the catalog refuses
    their rows), so no file is left without its catalog row. A failure is this master's alone: the
    other masters of its chunk keep their files. A retry stores the same rendered files again:
    nothing is rendered twice.
    """
    router = SizeRouter(small=small_store.get_store(), large=large_store.get_store(), threshold_bytes=threshold_bytes)
    rows = {r.variant: r for r in recorded or []}
    published: list[PublishedFile] = []
    written: list[StoredObject] = []  # what this attempt stored, removed again if a later file fails
    with rolled_back_on_failure(written, {s.name: s for s in (router.small, router.large)}, f"publishing {asset_id}"):
        for variant in rendered.variants:
            published.append(store_variant(variant, campaign=campaign, asset_id=asset_id, router=router,
                                           recorded=rows.get(variant.variant)))
            written.append(published[-1].stored)
    shutil.rmtree(rendered.directory, ignore_errors=True)  # the stores hold the only copies now
    return PublishResult(files=published, blurhash=rendered.blurhash, palette=rendered.palette,
                         picture=picture_snippet(published, alt=alt_text, sizes=sizes))


@contextmanager
def rolled_back_on_failure(written: list[StoredObject], stores: dict, what: str) -> Iterator[None]:
    """imagegen.rollback.removed_on_failure, plus the log line when a removal fails as well: that is a
    second error, logged here; the block's own exception stays the one raised (and reported)."""
    try:
        with removed_on_failure(written, stores):
            yield
    except BaseException as exc:
        if left := left_behind(exc):
            try:
                logger = get_run_logger()
            except MissingContextError:  # called as `.fn`, outside a task run
                logger = get_logger("imagegen")
            logger.error(second_error_line(exc, left, what))
        raise


@task(name="unpublish", cache_result_in_memory=False, **RETRY_OPTIONS)
def unpublish(files: list[PublishedFile], store_blocks: list[AssetStoreBlock]) -> None:
    """Remove the files a run wrote when the catalog refused their rows (idempotent; files that were already
    there, written=False, and files replaced in place stay), so no file is left without its catalog row.
    Every file is tried; the error for those that could not be removed lists them
    (imagegen.rollback.left_behind)."""
    stores = {}
    for block in store_blocks:
        store = block.get_store()
        stores[store.name] = store
    if left := remove_written([f.stored for f in files], stores):
        error = removal_error(left)
        note_left_behind(error, left)
        raise error


@task(name="quarantine-master", task_run_name="quarantine {asset_id}", cache_result_in_memory=False,
      **RETRY_OPTIONS)
def quarantine_master(master: GeneratedImage, campaign: str, asset_id: str, prompt: str, reasons: list[dict],
                      store: AssetStoreBlock, recorded: list[RecordedFile] | None = None) -> PublishResult:
    """Keep a master that failed its gates, with its reasons beside it: never silently dropped. Its key
    holds this master (other bytes are replaced, and reported when its row did not name them)."""
    target = store.get_store()
    key = variant_key(campaign, asset_id, MASTER_VARIANT, master.image.format)
    written: list[StoredObject] = []  # removed again if a later step fails: no file without its row
    with rolled_back_on_failure(written, {target.name: target}, f"quarantining {asset_id}"):
        stored = target.put_file(key, Path(master.image.path), FORMAT_CONTENT_TYPES[master.image.format],
                                 sha256=master.image.sha256, replace=True)
        written.append(stored)
        # sorted JSON: the same reasons give the same bytes, so a rerun writes nothing
        reasons_json = json.dumps({"campaign": campaign, "asset_id": asset_id, "prompt": prompt,
                                   "sha256": master.image.sha256, "reasons": reasons}, indent=2, sort_keys=True)
        with transient_file(reasons_json.encode(), suffix=".json") as reasons_path:
            written.append(target.put_file(reasons_key(key), reasons_path, "application/json", replace=True))
        verified = target.verify_stored(stored)
    row = next((r for r in recorded or [] if r.variant == MASTER_VARIANT), None)
    published = [PublishedFile(variant=MASTER_VARIANT, platform="master", width=master.image.width,
                               height=master.image.height, format=master.image.format, stored=stored,
                               verified=verified,
                               repaired=found_problem(asset_id, MASTER_VARIANT, store=stored.store, key=stored.key,
                                                      written=stored.written, replaced_sha256=stored.replaced_sha256,
                                                      recorded=row))]
    return PublishResult(files=published)


@task(name="remove-leftovers", cache_result_in_memory=False, **RETRY_OPTIONS)
def remove_leftovers(files: list[Location], store_blocks: list[AssetStoreBlock]) -> int:
    """Remove the files an asset's earlier state leaves behind (reconcile.leftovers), once the catalog
    no longer names them. Every file is tried; then one error names those that could not go (a
    retry removes the rest: removing is idempotent). Returns how many were removed."""
    stores = {}
    for block in store_blocks:
        store = block.get_store()
        stores[store.name] = store
    failures, transient = [], False
    for name, key in files:
        if name not in stores:
            failures.append(f"{name}:{key} (store {name!r} is not one this run publishes to)")
            continue
        try:
            stores[name].delete(key)
        except Exception as exc:
            failures.append(f"{name}:{key} ({safe_reason(exc)})")
            transient = transient or is_transient(exc)
    if failures:
        error = TransientStoreError if transient else StoreError
        raise error(f"{len(failures)} file(s) of an earlier state could not be removed: "
                    + "; ".join(failures[:5]) + (" ..." if len(failures) > 5 else ""))
    return len(files)


