"""PostgreSQL catalog block: the `media_assets` table in any PostgreSQL 13+ (a Supabase project's database too)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from imagegen.catalog.base import Catalog
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
