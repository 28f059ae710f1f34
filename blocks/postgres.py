"""PostgreSQL catalog block: the `media_assets` table in any PostgreSQL 13+ (a Supabase project's database too),
and beside it what every worker using this catalog shares: the paid-call ledger and the masters, the
provider pacing, the run budgets and the daily image counts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from imagegen.budget import CallCount
from imagegen.catalog.base import Catalog
from imagegen.daily_images import CountsDatabase
from imagegen.errors import CatalogError, LedgerError
from imagegen.ledger import Ledger
from imagegen.ratelimit import AccountPacing
from imagegen_flows.blocks.catalog import CatalogBlock


class PostgresCatalogBlock(CatalogBlock):
    """A PostgreSQL database holding the `media_assets` table (created on first use).

    Example:
        ```python
        from imagegen_flows.blocks.postgres import PostgresCatalogBlock
        catalog = PostgresCatalogBlock.load("BLOCK_NAME").get_catalog()
        ```
    """

    _block_type_name = "Imagegen PostgreSQL Catalog"
    _block_type_slug = "imagegen-postgres-catalog"
    _description = "The media_assets table in a PostgreSQL database (direct or Supabase connection string)."

    dsn: SecretStr = Field(..., title="Connection string",
                           description="postgresql://user:password@host:5432/dbname; a Supabase project's "
                                       "direct or pooler connection string works too")
    connect_timeout_seconds: int = Field(10, ge=1, title="Connect timeout",
                                         description="Seconds to wait for a connection")

    def get_catalog(self) -> Catalog:
        from imagegen.catalog.postgres import PostgresCatalog

        return PostgresCatalog(self.dsn.get_secret_value(), connect_timeout=self.connect_timeout_seconds)

    def check_catalog(self) -> None:
        """The catalog's checks, then the shared ledger's tables can be made (in a transaction rolled back)."""
        super().check_catalog()
        from imagegen.postgres_ledger import check_ledger_schema

        try:
            check_ledger_schema(self.dsn.get_secret_value(), self.connect_timeout_seconds)
        except LedgerError as err:
            raise CatalogError(str(err)) from None

    def paid_call_ledger(self, masters_dir: Path, lease_seconds: float) -> Ledger:
        """The ledger in this database: a call is paid for once by all workers, masters are shared."""
        from imagegen.postgres_ledger import PostgresLedger

        return PostgresLedger(self.dsn.get_secret_value(), masters_dir, lease_seconds=lease_seconds,
                              connect_timeout=self.connect_timeout_seconds)

    def account_pacing(self) -> AccountPacing:
        """Provider pacing in this database: one schedule per account for all workers (table made now,
        before any spend; a database that refuses it fails the run with the reason)."""
        from imagegen.postgres_pacing import PostgresPacing

        pacing = PostgresPacing(self.dsn.get_secret_value(), connect_timeout=self.connect_timeout_seconds)
        try:
            pacing.prepare()
        except LedgerError as err:
            pacing.close()
            raise CatalogError(str(err)) from None
        return pacing

    def daily_image_counts(self) -> CountsDatabase | None:
        """The daily image counts in this database: every worker counts against the same limits."""
        from imagegen.daily_images import PostgresCounts

        return PostgresCounts(self.dsn.get_secret_value(), connect_timeout=self.connect_timeout_seconds)

    def run_call_count(self, run_id: str, max_calls: int | None) -> CallCount:
        """The run's provider calls counted in this database, whichever process of the run makes them."""
        from imagegen.postgres_run_budget import PostgresCallCount

        return PostgresCallCount(self.dsn.get_secret_value(), run_id, max_calls,
                                 connect_timeout=self.connect_timeout_seconds)
