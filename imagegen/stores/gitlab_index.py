"""The key index of GitLab's `uploads` mode: which upload holds each of our store keys (see
imagegen.stores.gitlab: an upload's URL carries a random secret, so GitLab cannot answer that itself).

- `JsonFileUploadIndex`: a JSON file, `<out>/gitlab-uploads.json` by default (one output folder);
- `CatalogUploadIndex`: the catalog's own `media_assets` rows of the store;
- `PostgresUploadIndex`: the `gitlab_uploads` table of the catalog's PostgreSQL, shared by every worker.
  Its `claim` is a session advisory lock on (project, key), held while the key is looked up and
  uploaded: of two workers publishing the same file, one uploads and the other waits and finds that
  upload. A worker killed while holding it loses its connection, and with it the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from imagegen.errors import LedgerError, StoreError, TransientStoreError
from imagegen.files import open_text_atomically
from imagegen.postgres_connections import PostgresConnections
from imagegen.shared_schema import create_shared_schema


@dataclass(frozen=True)
class UploadRecord:
    """What GitLab gave back for the upload stored under one of our keys."""

    url: str
    sha256: str
    upload_id: int | None = None


class UploadIndex(Protocol):
    def get(self, key: str) -> UploadRecord | None: ...

    def put(self, key: str, record: UploadRecord) -> None: ...

    def remove(self, key: str) -> None: ...

    def claim(self, key: str) -> contextlib.AbstractContextManager[object]:
        """Held around looking `key` up and uploading it: a second uploader of the key waits, then finds
        the first one's upload (a no-op where one process owns the index)."""


_FILE_LOCKS: dict[Path, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


class JsonFileUploadIndex:
    """key -> UploadRecord in a JSON file, re-read on every call so store instances share it.

    `path=None` keeps the index in memory only (one store instance's lifetime). Every publish task
    opens a store of its own, so each read-modify-write holds a lock for the file that all instances
    in the process share, and an flock on `.<file>.lock` against other processes: a lost remove would
    leave the record of a deleted upload, and the next run would skip uploading that file. Writes
    are atomic (temp file + rename).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).resolve() if path else None
        self._memory: dict[str, dict[str, Any]] = {}
        if self.path is None:
            self._thread_lock = threading.Lock()
        else:
            with _FILE_LOCKS_GUARD:
                self._thread_lock = _FILE_LOCKS.setdefault(self.path, threading.Lock())

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with self._thread_lock:
            if self.path is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
                yield

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return self._memory
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"GitLab upload index {self.path} is unreadable: {exc}") from exc

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        if self.path is None:
            self._memory = entries
            return
        with open_text_atomically(self.path) as fh:
            json.dump(entries, fh, indent=1, sort_keys=True)

    def get(self, key: str) -> UploadRecord | None:
        with self._lock():
            entry = self._load().get(key)
        return UploadRecord(**entry) if entry else None

    def put(self, key: str, record: UploadRecord) -> None:
        with self._lock():
            entries = dict(self._load())
            entries[key] = asdict(record)
            self._save(entries)

    def remove(self, key: str) -> None:
        with self._lock():
            entries = dict(self._load())
            if entries.pop(key, None) is not None:
                self._save(entries)

    def claim(self, key: str) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


class CatalogUploadIndex:
    """Reads records from the catalog (`media_assets` rows of this store: store_key -> url, sha256).

    The pipeline writes the catalog after publishing, so this run's own uploads and deletions are
    kept in memory on top of it.
    """

    def __init__(self, catalog: Any, store_name: str = "gitlab"):
        self.catalog = catalog
        self.store_name = store_name
        self._overlay: dict[str, UploadRecord | None] = {}
        self._campaigns: dict[str, dict[str, UploadRecord]] = {}  # one catalog read per campaign

    def _recorded(self, campaign: str) -> dict[str, UploadRecord]:
        if campaign not in self._campaigns:
            self._campaigns[campaign] = {row.store_key: UploadRecord(url=row.url, sha256=row.sha256)
                                         for row in self.catalog.rows(campaign) if row.store == self.store_name}
        return self._campaigns[campaign]

    def get(self, key: str) -> UploadRecord | None:
        if key in self._overlay:
            return self._overlay[key]
        return self._recorded(key.split("/", 1)[0]).get(key)

    def put(self, key: str, record: UploadRecord) -> None:
        self._overlay[key] = record

    def remove(self, key: str) -> None:
        self._overlay[key] = None

    def claim(self, key: str) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


PUT_SQL = """INSERT INTO gitlab_uploads (project, path, sha256, url, upload_id) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (project, path) DO UPDATE SET sha256 = excluded.sha256, url = excluded.url,
upload_id = excluded.upload_id, uploaded_at = now()"""


def _lock_keys(project: str, key: str) -> tuple[int, int]:
    """Two signed 32-bit advisory-lock keys for (project, key): a class of our own, then the key's hash."""
    digest = hashlib.sha256(f"{project}\x00{key}".encode()).digest()
    return 0x1A6E_6170, int.from_bytes(digest[:4], "big", signed=True)


class PostgresUploadIndex:
    """key -> UploadRecord as rows of `gitlab_uploads` for one project, in the catalog's PostgreSQL."""

    def __init__(self, dsn: str, project: str, *, connect_timeout: int = 10):
        self.connections = PostgresConnections(dsn, "gitlab_uploads", connect_timeout=connect_timeout)
        self.project = str(project)
        self._schema_ready = False
        self._lock = threading.Lock()

    def _prepared(self) -> PostgresConnections:
        with self._lock:
            if not self._schema_ready:
                self._as_store_error(create_shared_schema, self.connections)
                self._schema_ready = True
        return self.connections

    @staticmethod
    def _as_store_error(action: Any, *args: Any) -> Any:
        """The database's errors as the store's: a publish task retries what is transient."""
        try:
            return action(*args)
        except LedgerError as exc:
            raise (TransientStoreError if exc.transient else StoreError)(f"GitLab upload index: {exc}") from None

    def _run(self, what: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._prepared().connection(what) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        return self._as_store_error(run)

    def get(self, key: str) -> UploadRecord | None:
        rows = self._run("reading", "SELECT url, sha256, upload_id FROM gitlab_uploads WHERE project = %s AND "
                                    "path = %s", (self.project, key))
        return UploadRecord(url=rows[0][0], sha256=rows[0][1], upload_id=rows[0][2]) if rows else None

    def put(self, key: str, record: UploadRecord) -> None:
        self._run("recording in", PUT_SQL, (self.project, key, record.sha256, record.url, record.upload_id))

    def remove(self, key: str) -> None:
        self._run("removing from", "DELETE FROM gitlab_uploads WHERE project = %s AND path = %s", (self.project, key))

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[object]:
        keys = _lock_keys(self.project, key)
        connections = self._prepared()
        try:
            with connections.connection("locking a key in") as conn:
                conn.execute("SELECT pg_advisory_lock(%s, %s)", keys)
                try:
                    yield conn
                finally:  # an unlock that fails discards the connection, and closing it releases the lock
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
        except LedgerError as exc:
            raise (TransientStoreError if exc.transient else StoreError)(f"GitLab upload index: {exc}") from None

    def close(self) -> None:
        self.connections.close()


_shared: dict[tuple[str, str], PostgresUploadIndex] = {}
_shared_lock = threading.Lock()


def shared_upload_index(dsn: str, project: str) -> PostgresUploadIndex:
    """The process's one index per database and project: every store a publish task opens shares its connections."""
    with _shared_lock:
        index = _shared.get((dsn, str(project)))
        if index is None:
            index = _shared[(dsn, str(project))] = PostgresUploadIndex(dsn, project)
        return index
