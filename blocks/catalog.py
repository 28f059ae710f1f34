"""Catalog blocks: where the `media_assets` rows go. SQLite in the output folder by default."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from imagegen.budget import CallCount, LocalCallCount
from imagegen.catalog.base import Catalog
from imagegen.daily_images import CountsDatabase
from imagegen.ledger import FileLedger, Ledger
from imagegen.ratelimit import AccountPacing


class CatalogBlock(Block, ABC):
    """Base type of every catalog block: `get_catalog()` returns an imagegen Catalog."""

    _block_type_name = "Asset Catalog"

    @abstractmethod
    def get_catalog(self) -> Catalog:
        """A catalog whose upsert is one transaction on the natural key (campaign, asset_id, variant)."""

    def check_catalog(self) -> None:
        """Before any spend: reachable, schema there or creatable, writable (Catalog.preflight, short
        timeout, no retries, nothing left written). Raises CatalogError with the reason."""
        self.get_catalog().preflight()

    def paid_call_ledger(self, masters_dir: Path, lease_seconds: float) -> Ledger:
        """Where a run records its paid calls: the files under `masters_dir` (one output folder), unless
        the catalog's database can hold a ledger every worker shares (PostgreSQL)."""
        return FileLedger(masters_dir)

    def account_pacing(self) -> AccountPacing | None:
        """The schedule a run paces provider accounts through: None (each process its own token buckets),
        unless the catalog's database can hold one every worker shares (PostgreSQL)."""
        return None

    def daily_image_counts(self) -> CountsDatabase | None:
        """Where the providers' daily image counts live: the catalog's database, or None when it has no
        SQL access (the Supabase REST catalog)."""
        return None

    def run_call_count(self, run_id: str, max_calls: int | None) -> CallCount:
        """Where run `run_id` counts its provider calls: this process, unless every worker shares the
        catalog's database (PostgreSQL)."""
        return LocalCallCount(max_calls)


class SqliteCatalogBlock(CatalogBlock):
    """A SQLite file holding the `media_assets` table.

    Example:
        ```python
        from imagegen_flows.blocks.catalog import SqliteCatalogBlock
        catalog = SqliteCatalogBlock.load("BLOCK_NAME").get_catalog()
        ```
    """

    _block_type_name = "Imagegen SQLite Catalog"
    _block_type_slug = "imagegen-sqlite-catalog"
    _description = "The media_assets table in a SQLite file."

    path: str = Field(..., description="Path of the SQLite database file")

    def get_catalog(self) -> Catalog:
        from imagegen.catalog.sqlite import SqliteCatalog

        return SqliteCatalog(self.path)

    def daily_image_counts(self) -> CountsDatabase | None:
        from imagegen.daily_images import SqliteCounts

        return SqliteCounts(self.path)
