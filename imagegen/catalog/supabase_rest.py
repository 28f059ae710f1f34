"""Supabase catalog over PostgREST (supabase-py `table(...)`), for projects reached with URL + API key only.

- `upsert` reads the batch's existing rows first (GET with filters), decides per row whether it is
  new, changed or unchanged, and then sends ONE `POST /rest/v1/media_assets?on_conflict=campaign,asset_id,variant`
  with `Prefer: resolution=merge-duplicates` carrying only new and changed rows. PostgREST runs one
  request in one transaction, so a row the database refuses (a CHECK, a NOT NULL) leaves no row written.
  Changed rows carry the stored `created_at`, so merge-duplicates keeps it; unchanged rows are not sent,
  so their `updated_at` stays. A writer racing between the read and the write can make the counts
  (not the data) off by its rows.
- JSON columns travel as JSON objects; timestamps as ISO 8601.
- Reads page through PostgREST's row cap (1000 on Supabase) ordered by the natural key.
- `delete` sends one DELETE per (campaign, asset_id) with `variant=in.(...)`; deleting is idempotent,
  so these requests need not share a transaction. `upsert(rows, remove)` sends the upsert, then those
  deletes: PostgREST has no transaction across requests, so a delete that fails after the upsert
  leaves the rows it named, and the run fails; the next run finds them again and deletes them.
- `preflight` reads one row naming every column, then writes a probe row (campaign
  `imagegen-preflight`, a fresh asset id) and deletes it at once: PostgREST has no transaction across
  requests, and only a real write shows that the key may write (an `anon` key under row-level
  security reads an empty table and deletes nothing without an error).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from postgrest.exceptions import APIError

from imagegen.catalog.base import NATURAL_KEY, Catalog, CatalogRow, RowKey, UpsertResult, missing_columns, probe_row
from imagegen.catalog.remote import (
    ROW_COLUMNS,
    TransientCatalogError,
    row_from_record,
    row_to_json,
    same_content,
)
from imagegen.errors import CatalogError, is_transient_status
from imagegen.redaction import url_secrets
from imagegen.stores.remote import short_server_message

Key = tuple[str, str, str]
ON_CONFLICT = ",".join(NATURAL_KEY)
# PostgREST could not reach or query its database: worth retrying.
_TRANSIENT_POSTGREST_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57P")


def _is_transient_code(code: str | None) -> bool:
    if not code:
        return False
    if code.isdigit() and len(code) == 3:  # postgrest-py puts the HTTP status here for non-JSON answers
        return is_transient_status(int(code))
    return code in _TRANSIENT_POSTGREST_CODES or (len(code) == 5 and code.startswith(_TRANSIENT_SQLSTATE_CLASSES))


class SupabaseRestCatalog(Catalog):
    name = "supabase"

    def __init__(self, client: Any, table: str = "media_assets", page_size: int = 1000):
        """`client` is a ready `supabase.Client` (tests pass one pointed at the emulator)."""
        self.client = client
        self.table = table
        self.page_size = page_size

    # -- plumbing --------------------------------------------------------------------------------

    def _error(self, exc: Exception, action: str) -> CatalogError:
        """Raised `from None`: postgrest's error can carry the gateway's echo of the key."""
        where = f"Supabase table {self.table!r}"
        if isinstance(exc, httpx.HTTPError):
            return TransientCatalogError(f"{action} {where}: transport error ({type(exc).__name__})")
        if not isinstance(exc, APIError):
            return CatalogError(f"{action} {where}: {type(exc).__name__}")
        url = getattr(self.client, "supabase_url", None)  # SUPABASE_URL may carry credentials too
        secrets = [getattr(self.client, "supabase_key", None), *url_secrets(str(url) if url else None)]
        detail = short_server_message(exc.message or exc.details or "no message", secrets)
        message = f"{action} {where}: {detail}" + (f" (code {exc.code})" if exc.code else "")
        return TransientCatalogError(message) if _is_transient_code(exc.code) else CatalogError(message)

    def _run(self, action: str, request: Callable[[], Any]) -> list[dict[str, Any]]:
        try:
            return request().data or []
        except (APIError, httpx.HTTPError) as exc:
            raise self._error(exc, action) from None

    def _select_all(self, action: str, filters: Callable[[Any], Any]) -> list[dict[str, Any]]:
        """All rows matching `filters(query)`, page by page in natural-key order."""
        records: list[dict[str, Any]] = []
        while True:
            offset = len(records)

            def page(offset: int = offset):
                query = filters(self.client.table(self.table).select("*"))
                for column in NATURAL_KEY:
                    query = query.order(column)
                return query.range(offset, offset + self.page_size - 1).execute()

            batch = self._run(action, page)
            records += batch
            if len(batch) < self.page_size:
                return records

    def _existing(self, keys: set[Key]) -> dict[Key, CatalogRow]:
        """The stored rows for `keys`: one read per campaign, filtered to exact keys here."""
        asset_ids: dict[str, set[str]] = defaultdict(set)
        for campaign, asset_id, _ in keys:
            asset_ids[campaign].add(asset_id)
        found: dict[Key, CatalogRow] = {}
        for campaign, ids in asset_ids.items():

            def in_campaign(query: Any, campaign: str = campaign, ids: list[str] = sorted(ids)) -> Any:
                return query.eq("campaign", campaign).in_("asset_id", ids)

            records = self._select_all("reading", in_campaign)
            for record in records:
                row = row_from_record(record)
                if row.key in keys:
                    found[row.key] = row
        return found

    # -- Catalog ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Reachable, the key accepted, every column there, and a probe row written and deleted."""
        # postgrest-py retries a GET on 503 and network errors for 7 s: the check asks once
        sample = self._run("checking", lambda: self.client.table(self.table).select(",".join(ROW_COLUMNS))
                           .limit(1).retry(False).execute())
        if sample and (missing := missing_columns(sample[0])):
            raise CatalogError(f"checking Supabase table {self.table!r}: it lacks the column(s) {', '.join(missing)}; "
                               "create it with imagegen/sql/media_assets.postgres.sql")
        probe = probe_row(f"probe-{uuid.uuid4().hex[:12]}")
        self._run("writing a probe row into", lambda: self.client.table(self.table).insert(
            row_to_json(probe), returning="minimal").execute())
        try:
            self.delete([probe.key])
        except CatalogError as exc:
            raise CatalogError(f"{exc}; the probe row {probe.key} of the pre-flight check is left, delete it") from None

    def upsert(self, rows: list[CatalogRow], remove: Iterable[RowKey] = ()) -> UpsertResult:
        result = UpsertResult()
        remove = [key for key in remove if key not in {row.key for row in rows}]
        if rows:
            result = self._upsert(rows)
        if remove:
            result.deleted = self.delete(remove)
        return result

    def _upsert(self, rows: list[CatalogRow]) -> UpsertResult:
        result = UpsertResult()
        state = self._existing({row.key for row in rows})
        to_send: dict[Key, CatalogRow] = {}
        for row in rows:  # in order, so a key named twice counts like the SQLite catalog counts it
            current = state.get(row.key)
            if current is None:
                result.inserted += 1
            elif same_content(current, row):
                result.unchanged += 1
                continue
            else:
                result.updated += 1
                row = row.model_copy(update={"created_at": current.created_at})
            state[row.key] = to_send[row.key] = row
        if to_send:
            payload = [row_to_json(row) for row in to_send.values()]
            self._run("upserting into", lambda: self.client.table(self.table).upsert(
                payload, on_conflict=ON_CONFLICT, returning="minimal").execute())
        return result

    def rows(self, campaign: str | None = None, asset_ids: Iterable[str] | None = None) -> list[CatalogRow]:
        ids = sorted(set(asset_ids)) if asset_ids is not None else None
        if ids == []:
            return []

        def filters(query: Any) -> Any:
            if campaign is not None:
                query = query.eq("campaign", campaign)
            return query.in_("asset_id", ids) if ids is not None else query

        return [row_from_record(record) for record in self._select_all("reading", filters)]

    def delete(self, keys: list[Key]) -> int:
        variants: dict[tuple[str, str], set[str]] = defaultdict(set)
        for campaign, asset_id, variant in keys:
            variants[(campaign, asset_id)].add(variant)
        deleted = 0
        for (campaign, asset_id), names in variants.items():

            def delete_variants(campaign: str = campaign, asset_id: str = asset_id,
                                names: list[str] = sorted(names)) -> Any:
                return (self.client.table(self.table).delete().eq("campaign", campaign).eq("asset_id", asset_id)
                        .in_("variant", names).execute())

            deleted += len(self._run("deleting from", delete_variants))
        return deleted
