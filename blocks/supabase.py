"""Supabase blocks: credentials, Storage as the small-image asset store, and the PostgREST catalog.

Seed 000 sends images under 2 MB to Supabase Storage and records every asset in the `media_assets`
table (imagegen/sql/media_assets.postgres.sql: run it once in the project's SQL editor).
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from imagegen.catalog.base import PREFLIGHT_TIMEOUT_SECONDS, Catalog
from imagegen.errors import CatalogError, ImagegenError, StoreError
from imagegen.redaction import mask_url, mask_url_fields, url_secrets
from imagegen.stores.base import AssetStore
from imagegen.stores.remote import short_server_message
from imagegen_flows.blocks.catalog import CatalogBlock
from imagegen_flows.blocks.storage import AssetStoreBlock


class SupabaseCredentials(CredentialsBlock):
    """A Supabase project's URL and API key (service role for server-side publishing).

    Example:
        ```python
        from imagegen_flows.blocks.supabase import SupabaseCredentials
        client = SupabaseCredentials.load("BLOCK_NAME").get_client()
        ```
    """

    _block_type_name = "Imagegen Supabase Credentials"
    _block_type_slug = "imagegen-supabase-credentials"
    _description = "URL and API key of a Supabase project."

    url: str = Field(..., title="Project URL", description="https://<project-ref>.supabase.co (env SUPABASE_URL)")
    key: SecretStr = Field(..., title="API key",
                           description="Service-role key for server-side writes (env SUPABASE_KEY); never logged")
    timeout_seconds: float = Field(30.0, gt=0, title="Timeout", description="HTTP timeout of Storage and REST calls")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def get_client(self) -> Any:
        """A ready `supabase.Client` whose Storage and REST calls share one httpx client with our timeout
        (supabase-py's own timeout options are deprecated and truncate to whole seconds)."""
        import httpx
        from supabase import ClientOptions, create_client

        http = httpx.Client(timeout=self.timeout_seconds, follow_redirects=True)
        return create_client(self.url, self.key.get_secret_value(), options=ClientOptions(httpx_client=http))

    def get_preflight_client(self, error: type[ImagegenError]) -> Any:
        """A client with the short pre-flight timeout, for a store's or catalog's check; a URL or key that
        supabase-py refuses becomes `error` (StoreError or CatalogError), with the URL masked."""
        quick = self.model_copy(update={"timeout_seconds": min(self.timeout_seconds, PREFLIGHT_TIMEOUT_SECONDS)})
        try:
            return quick.get_client()
        except Exception as exc:  # noqa: BLE001 - supabase-py refuses a malformed URL or key with its own type
            reason = short_server_message(exc, [self.key.get_secret_value(), *url_secrets(self.url)])
            raise error(f"no Supabase client for {mask_url(self.url)!r}: {reason}") from None


class SupabaseStorage(AssetStoreBlock):
    """A Supabase Storage bucket that receives published assets (seed 000: files under 2 MB).

    Example:
        ```python
        from imagegen_flows.blocks.supabase import SupabaseStorage
        store = SupabaseStorage.load("BLOCK_NAME").get_store()
        ```
    """

    _block_type_name = "Imagegen Supabase Storage"
    _block_type_slug = "imagegen-supabase-storage"
    _description = "Publishes assets into a Supabase Storage bucket, never overwriting."

    credentials: SupabaseCredentials = Field(..., title="Credentials", description="Supabase project and key")
    bucket: str = Field("media-assets", title="Bucket", description="Bucket name (env IMAGEGEN_SUPABASE_BUCKET)")
    public: bool = Field(True, title="Public bucket",
                         description="Public buckets get permanent public URLs; private ones signed URLs")
    signed_url_seconds: int = Field(7 * 24 * 3600, ge=60, title="Signed URL lifetime",
                                    description="Seconds a signed URL stays valid (private buckets only)")
    store_name: str = Field("supabase", title="Store name", description="Name recorded in the catalog's `store` column")

    def get_store(self) -> AssetStore:
        from imagegen.stores.supabase import SupabaseStorageStore

        return SupabaseStorageStore(self.credentials.get_client(), self.bucket, public=self.public,
                                    signed_url_seconds=self.signed_url_seconds, name=self.store_name)

    def check_store(self) -> None:
        """The bucket's pre-flight through a client with the short pre-flight timeout."""
        from imagegen.stores.supabase import SupabaseStorageStore

        client = self.credentials.get_preflight_client(StoreError)
        SupabaseStorageStore(client, self.bucket, public=self.public, name=self.store_name).preflight()


class SupabaseCatalogBlock(CatalogBlock):
    """The `media_assets` table of a Supabase project, written through its REST API (PostgREST).

    Example:
        ```python
        from imagegen_flows.blocks.supabase import SupabaseCatalogBlock
        catalog = SupabaseCatalogBlock.load("BLOCK_NAME").get_catalog()
        ```
    """

    _block_type_name = "Imagegen Supabase Catalog"
    _block_type_slug = "imagegen-supabase-catalog"
    _description = "The media_assets table of a Supabase project, over its REST API."

    credentials: SupabaseCredentials = Field(..., title="Credentials", description="Supabase project and key")
    table: str = Field("media_assets", title="Table", description="Table created by media_assets.postgres.sql")

    def get_catalog(self) -> Catalog:
        from imagegen.catalog.supabase_rest import SupabaseRestCatalog

        return SupabaseRestCatalog(self.credentials.get_client(), table=self.table)

    def check_catalog(self) -> None:
        """The REST catalog's pre-flight through a client with the short pre-flight timeout."""
        from imagegen.catalog.supabase_rest import SupabaseRestCatalog

        SupabaseRestCatalog(self.credentials.get_preflight_client(CatalogError), table=self.table).preflight()
