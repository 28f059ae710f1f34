"""Fetch task: a published master back as a local file, for a size-set run that re-renders it.

The master is read through the store that holds it (the brief's store whose name the catalog row
records), with that store's credentials, else from its catalogued URL; either way its bytes must hash to
the sha256 the catalog recorded before the file takes its name (imagegen.master_fetch).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from imagegen.catalog.base import CatalogRow
from imagegen.master_fetch import fetch_master_file
from imagegen.models import GeneratedImage, ImageRef
from imagegen.stores.base import AssetStore
from imagegen_flows.blocks.storage import AssetStoreBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


def holding_store(name: str, blocks: list[AssetStoreBlock]) -> AssetStore | None:
    """The store among `blocks` that is recorded under `name` in the catalog, if any."""
    for block in blocks:
        store = block.get_store()
        if store.name == name:
            return store
    return None


@task(name="fetch-master", task_run_name="fetch {row.asset_id}", cache_result_in_memory=False, **RETRY_OPTIONS)
def fetch_master(row: CatalogRow, masters_dir: str, stores: list[AssetStoreBlock] | None = None) -> GeneratedImage:
    """The published master as a local file in `masters_dir`, named by its sha256, verified against the catalog."""
    target = Path(masters_dir) / f"{row.sha256}.{row.store_key.rsplit('.', 1)[-1]}"
    fetch_master_file(row.asset_id, row.sha256, row.url, target, store=holding_store(row.store, stores or []),
                      key=row.store_key)
    return GeneratedImage(image=ImageRef.from_file(target), provider=row.provider, model=row.model, seed=row.seed,
                          generation_ms=row.generation_ms, metadata=row.metadata)
