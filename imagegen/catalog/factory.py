"""Pick the catalog backend from IMAGEGEN_CATALOG_URL (the no-server path's single setting)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagegen.catalog.base import Catalog
from imagegen.catalog.remote import mask_url
from imagegen.errors import CatalogError

ACCEPTED_FORMS = ("unset (SQLite in the output folder), sqlite:///path, postgresql://... (or postgres://...), "
                  "or 'supabase'")


def default_supabase_client() -> Any:
    """A supabase-py client from SUPABASE_URL and SUPABASE_KEY."""
    from supabase import create_client

    from imagegen.settings import load_settings

    settings = load_settings()
    if not settings.supabase_url or settings.supabase_key is None:
        raise CatalogError("IMAGEGEN_CATALOG_URL=supabase needs SUPABASE_URL and SUPABASE_KEY to be set")
    return create_client(settings.supabase_url, settings.supabase_key.get_secret_value())


def catalog_from_url(url: str | None, default_sqlite_path: Path,
                     supabase_client_factory: Callable[[], Any] | None = None) -> Catalog:
    """None -> SQLite at `default_sqlite_path`; sqlite:///path; postgresql:// or postgres:// -> PostgreSQL;
    'supabase' -> PostgREST with the client `supabase_client_factory()` returns (default: from the env)."""
    text = (url or "").strip()
    if not text:
        from imagegen.catalog.sqlite import SqliteCatalog

        return SqliteCatalog(default_sqlite_path)
    if text.startswith("sqlite:///") and len(text) > len("sqlite:///"):
        from imagegen.catalog.sqlite import SqliteCatalog

        return SqliteCatalog(Path(text[len("sqlite:///"):]))
    if text.startswith(("postgresql://", "postgres://")):
        from imagegen.catalog.postgres import PostgresCatalog

        return PostgresCatalog(text)
    if text.lower() == "supabase":
        from imagegen.catalog.supabase_rest import SupabaseRestCatalog

        return SupabaseRestCatalog((supabase_client_factory or default_supabase_client)())
    raise CatalogError(f"IMAGEGEN_CATALOG_URL={mask_url(text)!r} is not a catalog URL; use {ACCEPTED_FORMS}")
