"""The catalog stage: every stored file becomes one upserted `media_assets` row, all in one transaction,
with the rows an asset's earlier state leaves deleted in it; and the rows a publish starts from."""

from __future__ import annotations

from prefect import task

from imagegen.catalog.base import CatalogRow, RowKey, UpsertResult
from imagegen.reconcile import RecordedFile, recorded_files
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


@task(name="write-catalog", cache_result_in_memory=False, **RETRY_OPTIONS)
def write_catalog(rows: list[CatalogRow], catalog: CatalogBlock, remove: list[RowKey] | None = None
                  ) -> UpsertResult:
    backend = catalog.get_catalog()
    try:
        return backend.upsert(rows, remove or ())
    finally:
        backend.close()


@task(name="read-catalog", cache_result_in_memory=False, **RETRY_OPTIONS)
def read_recorded(catalog: CatalogBlock, campaign: str, asset_ids: list[str]) -> dict[str, list[RecordedFile]]:
    """What the catalog records of these assets now: each file's store, key, sha256 and status."""
    backend = catalog.get_catalog()
    try:
        return recorded_files(backend.rows(campaign, asset_ids))
    finally:
        backend.close()
