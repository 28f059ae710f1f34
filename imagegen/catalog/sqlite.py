"""SQLite catalog: the embedded default (`<out>/catalog.db`)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from imagegen.catalog.base import CONTENT_COLUMNS, Catalog, CatalogRow, UpsertResult, schema_sql
from imagegen.errors import CatalogError, TransientCatalogError

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

    def upsert(self, rows: list[CatalogRow]) -> UpsertResult:
        result = UpsertResult()
        if not rows:
            return result
        columns = list(CatalogRow.model_fields)
        assignments = ", ".join(f"{c}=?" for c in (*CONTENT_COLUMNS, "updated_at"))
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
                        [*(_to_db(c, getattr(row, c)) for c in CONTENT_COLUMNS), _to_db("updated_at", row.updated_at),
                         *row.key])
                    result.updated += 1
        return result

    def rows(self, campaign: str | None = None) -> list[CatalogRow]:
        if not self.path.exists():
            return []
        conn = self._connect()
        try:
            if campaign is None:
                cursor = conn.execute("SELECT * FROM media_assets ORDER BY campaign, asset_id, variant")
            else:
                cursor = conn.execute(
                    "SELECT * FROM media_assets WHERE campaign=? ORDER BY asset_id, variant", (campaign,))
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
