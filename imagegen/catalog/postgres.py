"""PostgreSQL catalog (psycopg 3): any PostgreSQL 13+ server, including a Supabase project's database
through its direct connection string.

- The shipped migration (media_assets.postgres.sql, idempotent) runs once per catalog object, under
  an advisory lock so parallel first uses do not race on CREATE TABLE.
- `upsert` is one transaction of `INSERT ... ON CONFLICT (campaign, asset_id, variant) DO UPDATE ...
  WHERE <content changed>`: an unchanged row is not touched (no new updated_at), created_at is never
  in the SET list, and `RETURNING (xmax = 0)` tells an insert (true) from an update (false); no row
  back means unchanged. Rows go through `executemany` (pipelined), one statement per row, so a batch
  that names a key twice behaves like the SQLite catalog instead of failing. The rows `remove` names
  are deleted in the same transaction.
- Prepared statements are off (`prepare_threshold=None`) so a transaction-mode pooler (Supabase's
  port 6543, PgBouncer) works too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from imagegen.catalog.base import (
    CARRIED_COLUMNS,
    CONTENT_COLUMNS,
    NATURAL_KEY,
    PREFLIGHT_TIMEOUT_SECONDS,
    Catalog,
    CatalogRow,
    RowKey,
    UpsertResult,
    missing_columns,
    probe_row,
    schema_sql,
)
from imagegen.catalog.remote import JSON_COLUMNS, ROW_COLUMNS, TransientCatalogError
from imagegen.errors import CatalogError
from imagegen.redaction import mask_url, mask_urls_in, url_secrets
from imagegen.stores.remote import scrub

_SCHEMA_LOCK_ID = 0x1A6E_A55E  # pg_advisory_xact_lock key: "imagegen assets"
_CONNECTION_FAILURE_STATES = ("08", "53", "57P")  # connection exceptions, insufficient resources, shutdowns


def _upsert_sql() -> str:
    columns = ", ".join(ROW_COLUMNS)
    placeholders = ", ".join(["%s"] * len(ROW_COLUMNS))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*CONTENT_COLUMNS, *CARRIED_COLUMNS, "updated_at"))
    current = ", ".join(f"media_assets.{c}" for c in CONTENT_COLUMNS)
    incoming = ", ".join(f"EXCLUDED.{c}" for c in CONTENT_COLUMNS)
    return (f"INSERT INTO media_assets ({columns}) VALUES ({placeholders}) "
            f"ON CONFLICT ({', '.join(NATURAL_KEY)}) DO UPDATE SET {updates} "
            f"WHERE ({current}) IS DISTINCT FROM ({incoming}) "
            "RETURNING (xmax = 0) AS inserted")


UPSERT_SQL = _upsert_sql()
_KEY_WHERE = " AND ".join(f"{c} = %s" for c in NATURAL_KEY)


def _params(row: CatalogRow) -> list:
    return [Jsonb(getattr(row, c)) if c in JSON_COLUMNS else getattr(row, c) for c in ROW_COLUMNS]


class PostgresCatalog(Catalog):
    name = "postgres"

    def __init__(self, dsn: str, *, connect_timeout: int = 10):
        self._dsn = dsn
        self.connect_timeout = connect_timeout
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresCatalog({mask_url(self._dsn)!r})"

    # -- plumbing --------------------------------------------------------------------------------

    def _error(self, exc: psycopg.Error, action: str) -> CatalogError:
        """CatalogError naming the (masked) server and SQLSTATE; connection trouble is transient."""
        state = getattr(exc, "sqlstate", None) or ""
        diag = getattr(exc, "diag", None)
        detail = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
        detail = mask_urls_in(scrub(detail, url_secrets(self._dsn)))
        message = (f"{action} media_assets on {mask_url(self._dsn)}: {detail}"
                   + (f" (SQLSTATE {state})" if state else ""))
        transient = isinstance(exc, psycopg.OperationalError) and (
            not state or state.startswith(_CONNECTION_FAILURE_STATES))
        return TransientCatalogError(message) if transient else CatalogError(message)

    @contextmanager
    def _transaction(self, action: str) -> Iterator[psycopg.Cursor[DictRow]]:
        """One connection and one transaction: commit on success, roll back on any error."""
        try:
            with psycopg.connect(self._dsn, connect_timeout=self.connect_timeout, prepare_threshold=None,
                                 row_factory=dict_row) as conn:
                self._ensure_schema(conn)
                with conn.transaction(), conn.cursor() as cursor:
                    yield cursor
        except psycopg.Error as exc:
            raise self._error(exc, action) from exc

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                conn.execute(schema_sql("postgres"))
            self._schema_ready = True

    # -- Catalog ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        """One connection (short timeout), one transaction that is always rolled back: the table is
        there with every column, or the shipped migration can create it; a probe upsert goes through
        (INSERT privilege, the natural-key constraint ON CONFLICT needs)."""
        timeout = min(self.connect_timeout, PREFLIGHT_TIMEOUT_SECONDS)
        try:
            with psycopg.connect(self._dsn, connect_timeout=timeout, prepare_threshold=None,
                                 row_factory=dict_row) as conn, conn.transaction(force_rollback=True):
                # statement and lock waits end too: a table locked by a long migration fails here
                conn.execute(f"SET LOCAL statement_timeout = {timeout * 1000}")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                record = conn.execute("SELECT to_regclass('media_assets') IS NOT NULL AS present").fetchone()
                if record is not None and record["present"]:
                    cursor = conn.execute("SELECT * FROM media_assets LIMIT 0")
                    if missing := missing_columns(column.name for column in cursor.description or ()):
                        raise CatalogError(
                            f"checking media_assets on {mask_url(self._dsn)}: the table lacks the column(s) "
                            f"{', '.join(missing)}; it was not made by imagegen/sql/media_assets.postgres.sql")
                conn.execute(schema_sql("postgres"))
                conn.execute(UPSERT_SQL, _params(probe_row()))
        except psycopg.Error as exc:
            raise self._error(exc, "checking") from None

    def upsert(self, rows: list[CatalogRow], remove: Iterable[RowKey] = ()) -> UpsertResult:
        result = UpsertResult()
        remove = [key for key in remove if key not in {row.key for row in rows}]
        if not rows and not remove:
            return result
        with self._transaction("upserting into") as cursor:
            if rows:
                cursor.executemany(UPSERT_SQL, [_params(row) for row in rows], returning=True)
                for _ in rows:
                    outcome = cursor.fetchone()
                    if outcome is None:
                        result.unchanged += 1
                    elif outcome["inserted"]:
                        result.inserted += 1
                    else:
                        result.updated += 1
                    cursor.nextset()
            for key in remove:
                cursor.execute(f"DELETE FROM media_assets WHERE {_KEY_WHERE}", list(key))
                result.deleted += cursor.rowcount
        return result

    def rows(self, campaign: str | None = None, asset_ids: Iterable[str] | None = None) -> list[CatalogRow]:
        clauses: list[str] = []
        params: list[Any] = []
        if campaign is not None:
            clauses.append("campaign = %s")
            params.append(campaign)
        if asset_ids is not None:
            clauses.append("asset_id = ANY(%s)")
            params.append(sorted(set(asset_ids)))
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        with self._transaction("reading") as cursor:
            cursor.execute(f"SELECT * FROM media_assets {where} ORDER BY campaign, asset_id, variant", params)
            return [CatalogRow.model_validate(record) for record in cursor.fetchall()]

    def delete(self, keys: list[tuple[str, str, str]]) -> int:
        if not keys:
            return 0
        deleted = 0
        with self._transaction("deleting from") as cursor:
            for key in keys:
                cursor.execute(f"DELETE FROM media_assets WHERE {_KEY_WHERE}", list(key))
                deleted += cursor.rowcount
        return deleted
