"""Helpers shared by the server-backed catalogs (PostgreSQL, Supabase REST): retry classification,
password masking and the row <-> JSON mapping."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from imagegen.catalog.base import CatalogRow
from imagegen.errors import CatalogError, TransientCatalogError  # noqa: F401 (re-exported)

JSON_COLUMNS = ("gates", "metadata")
ROW_COLUMNS = tuple(CatalogRow.model_fields)




_USERINFO_PASSWORD = re.compile(r"(?P<user>[^\s:/@?#]*):(?P<password>[^\s/]*)@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """`url` with any password replaced by '***': URL userinfo (even unencoded '@' in it) and
    `password=` in a query string or a key=value DSN."""
    masked = _KV_PASSWORD.sub(r"\1***", url)
    return _USERINFO_PASSWORD.sub(lambda m: f"{m['user']}:***@", masked)


def passwords_of(url: str) -> list[str]:
    """The password in a DSN, as written and percent-decoded, so driver error texts can be scrubbed."""
    match = _KV_PASSWORD.search(url)
    if match:
        raw = match.group(2).strip("'")
    else:
        try:
            raw = urlsplit(url).password
        except ValueError:
            raw = None
    return [raw, unquote(raw)] if raw else []


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
