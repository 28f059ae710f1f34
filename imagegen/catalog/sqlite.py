"""SQLite catalog: the embedded default (`<out>/catalog.db`)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from imagegen.catalog.base import (
    CARRIED_COLUMNS,
    CONTENT_COLUMNS,
    PREFLIGHT_TIMEOUT_SECONDS,
    Catalog,
    CatalogRow,
    RowKey,
    UpsertResult,
    missing_columns,
    probe_row,
    schema_sql,
)
from imagegen.errors import CatalogError, TransientCatalogError
from imagegen.preflight import folder_problem

_JSON_COLUMNS = {"gates", "metadata"}


def _catalog_error(path: Path, exc: sqlite3.Error) -> CatalogError:
    """A locked or busy database may free up; a constraint or schema error will not."""
    kind = TransientCatalogError if isinstance(exc, sqlite3.OperationalError) else CatalogError
    return kind(f"sqlite catalog {path}: {type(exc).__name__}: {exc}; nothing was written")


def _to_db(column: str, value):
    if column in _JSON_COLUMNS:
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _statements(script: str) -> list[str]:
    """`script` split into complete statements (executescript would COMMIT an open transaction first)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


class SqliteCatalog(Catalog):
    name = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(schema_sql("sqlite"))
        except sqlite3.Error as exc:
            raise _catalog_error(self.path, exc) from exc
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: one writer), all or nothing, errors as CatalogError."""
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise _catalog_error(self.path, exc) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

    def preflight(self) -> None:
        """A missing file is fine when its folder can be made and written (the first write creates
        it; this check creates nothing). An existing one must open as SQLite, hold (or take) the
        table with every column, and accept a probe row inside a transaction that is rolled back."""
        if self.path.is_dir():
            raise CatalogError(f"sqlite catalog {self.path} is a folder, not a database file")
        if not self.path.exists():
            if problem := folder_problem(self.path.parent):
                raise CatalogError(f"sqlite catalog {self.path}: {problem}")
            return
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                   timeout=PREFLIGHT_TIMEOUT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise CatalogError(f"sqlite catalog {self.path} cannot be opened for writing: {exc}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_schema_and_write(conn)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise CatalogError(f"sqlite catalog {self.path}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()

    def _check_schema_and_write(self, conn: sqlite3.Connection) -> None:
        columns = [record[1] for record in conn.execute("PRAGMA table_info(media_assets)")]
        if columns and (missing := missing_columns(columns)):
            raise CatalogError(f"sqlite catalog {self.path}: table media_assets lacks the column(s) "
                               f"{', '.join(missing)}; it was not made by imagegen/sql/media_assets.sqlite.sql")
        for statement in _statements(schema_sql("sqlite")):
            conn.execute(statement)
        probe = probe_row()
        names = list(CatalogRow.model_fields)
        conn.execute(f"INSERT OR REPLACE INTO media_assets ({', '.join(names)}) "
                     f"VALUES ({', '.join('?' * len(names))})", [_to_db(c, getattr(probe, c)) for c in names])

    def upsert(self, rows: list[CatalogRow], remove: Iterable[RowKey] = ()) -> UpsertResult:
        result = UpsertResult()
        remove = [key for key in remove if key not in {row.key for row in rows}]
        if not rows and not remove:
            return result
        columns = list(CatalogRow.model_fields)
        updated = (*CONTENT_COLUMNS, *CARRIED_COLUMNS, "updated_at")
        assignments = ", ".join(f"{c}=?" for c in updated)
        with self._write() as conn:
            for row in rows:
                current = conn.execute(
                    "SELECT * FROM media_assets WHERE campaign=? AND asset_id=? AND variant=?", row.key).fetchone()
                if current is None:
                    conn.execute(
                        f"INSERT INTO media_assets ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        [_to_db(c, getattr(row, c)) for c in columns])
                    result.inserted += 1
                elif all(_to_db(c, getattr(row, c)) == current[c] for c in CONTENT_COLUMNS):
                    result.unchanged += 1
                else:
                    conn.execute(
                        f"UPDATE media_assets SET {assignments} WHERE campaign=? AND asset_id=? AND variant=?",
                        [*(_to_db(c, getattr(row, c)) for c in updated), *row.key])
                    result.updated += 1
            result.deleted = sum(conn.execute("DELETE FROM media_assets WHERE campaign=? AND asset_id=? AND variant=?",
                                              key).rowcount for key in remove)
        return result

    def rows(self, campaign: str | None = None, asset_ids: Iterable[str] | None = None) -> list[CatalogRow]:
        if not self.path.exists():
            return []
        where, params = [], []
        if campaign is not None:
            where.append("campaign=?")
            params.append(campaign)
        if asset_ids is not None:
            ids = sorted(set(asset_ids))
            where.append(f"asset_id IN ({', '.join('?' * len(ids))})" if ids else "0")
            params += ids
        conn = self._connect()
        try:
            cursor = conn.execute("SELECT * FROM media_assets" + (" WHERE " + " AND ".join(where) if where else "")
                                  + " ORDER BY campaign, asset_id, variant", params)
            out = []
            for record in cursor.fetchall():
                data = dict(record)
                for column in _JSON_COLUMNS:
                    data[column] = json.loads(data[column])
                out.append(CatalogRow.model_validate(data))
            return out
        finally:
            conn.close()

    def delete(self, keys: list[tuple[str, str, str]]) -> int:
        if not keys or not self.path.exists():
            return 0
        with self._write() as conn:
            return sum(conn.execute("DELETE FROM media_assets WHERE campaign=? AND asset_id=? AND variant=?",
                                    key).rowcount for key in keys)
