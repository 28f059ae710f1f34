"""Helpers shared by the server-backed catalogs (PostgreSQL, Supabase REST): retry classification
and the row <-> JSON mapping. (Masking a catalog URL's password is imagegen.redaction's job.)"""

from __future__ import annotations

from typing import Any

from imagegen.catalog.base import CatalogRow
from imagegen.errors import CatalogError, TransientCatalogError  # noqa: F401 (re-exported)

JSON_COLUMNS = ("gates", "metadata")
ROW_COLUMNS = tuple(CatalogRow.model_fields)


def row_to_json(row: CatalogRow) -> dict[str, Any]:
    """A row as JSON-ready values: JSON columns stay objects, timestamps become ISO 8601 strings."""
    return row.model_dump(mode="json")


def row_from_record(record: dict[str, Any]) -> CatalogRow:
    return CatalogRow.model_validate({c: record[c] for c in ROW_COLUMNS if c in record})


def same_content(a: CatalogRow, b: CatalogRow) -> bool:
    """Equal on CONTENT_COLUMNS, compared as JSON values (so 1 == 1.0 and key order never matter)."""
    return row_to_json_content(a) == row_to_json_content(b)


def row_to_json_content(row: CatalogRow) -> dict[str, Any]:
    return row.model_dump(mode="json", include=set(row.content()))
