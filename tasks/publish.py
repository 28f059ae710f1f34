"""The publish stage: render a master's size set and store every file; quarantine what failed."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from prefect import task

from blocks.storage import AssetStoreBlock
from imagegen.models import FORMAT_CONTENT_TYPES, GeneratedImage
from imagegen.publishing import (MASTER_VARIANT, PublishedFile, provenance_xmp, render_variants, store_variant,
                                 variant_key)
from imagegen.sizes import Target
from imagegen.stores.base import SizeRouter
from tasks.retrying import RETRY_OPTIONS


@task(name="publish-master", task_run_name="publish {asset_id}", cache_result_in_memory=False, **RETRY_OPTIONS)
def publish_master(master: GeneratedImage, campaign: str, asset_id: str, prompt: str, targets: list[Target],
                   small_store: AssetStoreBlock,
                   large_store: AssetStoreBlock, threshold_bytes: int, work_root: str,
                   logo_path: str | None = None, logo_options: dict | None = None,
                   include_master: bool = True) -> list[PublishedFile]:
    """Render every target of `master` and store each file in the store its size routes to.

    Renders go to a scratch folder that is removed afterwards: the stores hold the only copies.
    """
    router = SizeRouter(small=small_store.get_store(), large=large_store.get_store(), threshold_bytes=threshold_bytes)
    altered = bool(master.metadata.get("edits")) or logo_path is not None
    xmp = provenance_xmp(prompt=prompt, model=master.model, provider=master.provider, seed=master.seed,
                         altered=altered, title=f"{campaign} / {asset_id}")
    Path(work_root).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{asset_id}-", dir=work_root))
    try:
        rendered = render_variants(master.image, targets, xmp=xmp, work_dir=scratch,
                                   logo_path=Path(logo_path) if logo_path else None, logo_options=logo_options,
                                   include_master=include_master)
        return [store_variant(variant, campaign=campaign, asset_id=asset_id, router=router)
                for variant in rendered]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@task(name="quarantine-master", task_run_name="quarantine {asset_id}", cache_result_in_memory=False,
      **RETRY_OPTIONS)
def quarantine_master(master: GeneratedImage, campaign: str, asset_id: str, prompt: str, reasons: list[dict],
                      store: AssetStoreBlock) -> list[PublishedFile]:
    """Keep a master that failed its gates, with its reasons beside it: never silently dropped."""
    target = store.get_store()
    key = variant_key(campaign, asset_id, MASTER_VARIANT, master.image.format)
    stored = target.put_file(key, Path(master.image.path), FORMAT_CONTENT_TYPES[master.image.format],
                             sha256=master.image.sha256)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"campaign": campaign, "asset_id": asset_id, "prompt": prompt,
                   "sha256": master.image.sha256, "reasons": reasons}, fh, indent=2, sort_keys=True)
        reasons_path = Path(fh.name)
    try:
        # sorted JSON: the same reasons give the same bytes, so a rerun writes nothing
        target.put_file(key.rsplit("/", 1)[0] + "/reasons.json", reasons_path, "application/json")
    finally:
        reasons_path.unlink(missing_ok=True)
    return [PublishedFile(variant=MASTER_VARIANT, platform="master", width=master.image.width,
                          height=master.image.height, format=master.image.format, stored=stored,
                          verified=target.verify(stored.key))]

