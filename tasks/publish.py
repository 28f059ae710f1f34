"""The publish stage: render a master's size set, store every file; quarantine what failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from prefect import task

from imagegen.files import transient_file
from imagegen.imaging.c2pa_signing import SigningFiles
from imagegen.models import FORMAT_CONTENT_TYPES, GeneratedImage
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
                   sizes: str = "100vw") -> PublishResult:
    """Store each rendered file in the store its size routes to, then drop the scratch folder.

    Files this attempt wrote are removed again if it fails (and by `unpublish` if the catalog refuses
    their rows), so no file is left without its catalog row. A failure is this master's alone: the
    other masters of its chunk keep their files. A retry stores the same rendered files again:
    nothing is rendered twice.
    """
    router = SizeRouter(small=small_store.get_store(), large=large_store.get_store(), threshold_bytes=threshold_bytes)
    published: list[PublishedFile] = []
    try:
        for variant in rendered.variants:
            published.append(store_variant(variant, campaign=campaign, asset_id=asset_id, router=router))
    except BaseException:
        remove_written(published, {s.name: s for s in (router.small, router.large)})
        raise
    shutil.rmtree(rendered.directory, ignore_errors=True)  # the stores hold the only copies now
    return PublishResult(files=published, blurhash=rendered.blurhash, palette=rendered.palette,
                         picture=picture_snippet(published, alt=alt_text, sizes=sizes))


def remove_written(files: list[PublishedFile], stores: dict) -> None:
    """Delete what this attempt wrote; files that were already there (written=False) stay."""
    for f in files:
        if f.stored.written:
            stores[f.stored.store].delete(f.stored.key)


@task(name="unpublish", cache_result_in_memory=False, **RETRY_OPTIONS)
def unpublish(files: list[PublishedFile], store_blocks: list[AssetStoreBlock]) -> None:
    """Remove the files a run wrote when the catalog refused their rows (idempotent; files that were already
    there, written=False, stay), so no file is left without its catalog row."""
    stores = {}
    for block in store_blocks:
        store = block.get_store()
        stores[store.name] = store
    remove_written(files, stores)


@task(name="quarantine-master", task_run_name="quarantine {asset_id}", cache_result_in_memory=False,
      **RETRY_OPTIONS)
def quarantine_master(master: GeneratedImage, campaign: str, asset_id: str, prompt: str, reasons: list[dict],
                      store: AssetStoreBlock) -> PublishResult:
    """Keep a master that failed its gates, with its reasons beside it: never silently dropped."""
    target = store.get_store()
    key = variant_key(campaign, asset_id, MASTER_VARIANT, master.image.format)
    stored = target.put_file(key, Path(master.image.path), FORMAT_CONTENT_TYPES[master.image.format],
                             sha256=master.image.sha256)
    # sorted JSON: the same reasons give the same bytes, so a rerun writes nothing
    reasons_json = json.dumps({"campaign": campaign, "asset_id": asset_id, "prompt": prompt,
                               "sha256": master.image.sha256, "reasons": reasons}, indent=2, sort_keys=True)
    with transient_file(reasons_json.encode(), suffix=".json") as reasons_path:
        target.put_file(key.rsplit("/", 1)[0] + "/reasons.json", reasons_path, "application/json")
    published = [PublishedFile(variant=MASTER_VARIANT, platform="master", width=master.image.width,
                               height=master.image.height, format=master.image.format, stored=stored,
                               verified=target.verify(stored.key))]
    return PublishResult(files=published)


