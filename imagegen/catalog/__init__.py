"""The asset catalog: one row per stored file in `media_assets`."""

from imagegen.catalog.base import Catalog, CatalogRow, UpsertResult
from imagegen.catalog.sqlite import SqliteCatalog

__all__ = ["Catalog", "CatalogRow", "SqliteCatalog", "UpsertResult"]
