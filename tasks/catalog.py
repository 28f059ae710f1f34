"""The catalog stage: every stored file becomes one upserted `media_assets` row, all in one transaction."""

from __future__ import annotations

from prefect import task

from imagegen.catalog.base import CatalogRow, UpsertResult
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


@task(name="write-catalog", cache_result_in_memory=False, **RETRY_OPTIONS)
def write_catalog(rows: list[CatalogRow], catalog: CatalogBlock) -> UpsertResult:
    backend = catalog.get_catalog()
    try:
        return backend.upsert(rows)
    finally:
        backend.close()
