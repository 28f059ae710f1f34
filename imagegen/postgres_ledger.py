"""The paid-call ledger in the catalog's PostgreSQL: a call is paid for once by all workers on all machines.

The same `Ledger` interface as the file ledger (imagegen.ledger), with its guarantees held by the
database instead of one disk's flock:

- A claim is a row of `imagegen_ledger` taken with a lease, in one statement: `INSERT ... ON CONFLICT
  (key) DO UPDATE SET holder, lease_until WHERE the row has no holder or its lease has passed`. The row
  lock the statement takes makes it atomic; `now()` is the server's clock, so workers' clocks never
  matter. A claimant that finds a live lease polls (50 ms, growing to 1 s) until it can take the key,
  then reads what the holder recorded.
- While a claim is held, one thread per ledger renews the leases of all its claims every quarter lease.
  A holder killed with `kill -9` stops renewing: its lease runs out (120 s by default,
  IMAGEGEN_LEDGER_LEASE_SECONDS) and the next claimant takes the key over. The request the dead holder
  had in flight may have been billed; that one call is the lease's price.
- A recorded master's bytes go to `imagegen_masters` (imagegen.shared_masters) before the entry is
  written. Reading an entry gives the master at this worker's own `<out>/masters/<sha256>.<ext>`,
  fetched from there when this disk lacks it: a master paid for on another machine costs a download,
  not a second payment.
- Recording is fenced by the holder: only the claim's holder, or anyone while no value is recorded,
  writes the value (a holder frozen past its lease whose key was taken over still records its answer
  when the new holder has not).

Rows whose call failed (no value) are deleted when their claim ends; those of killed workers, by the first
claim of a later run (imagegen.shared_schema.purge_stale_rows). Polling, not LISTEN/NOTIFY, so a
transaction-mode pooler (Supabase's port 6543, PgBouncer) works as well as a direct connection.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from imagegen.catalog.base import PREFLIGHT_TIMEOUT_SECONDS
from imagegen.errors import LedgerError
from imagegen.ledger import file_state
from imagegen.models import GeneratedImage
from imagegen.postgres_connections import PostgresConnections
from imagegen.shared_masters import SharedMasters
from imagegen.shared_schema import SCHEMA_LOCK_ID, create_shared_schema, purge_stale_rows, shared_schema_sql

T = TypeVar("T", bound=BaseModel)

LEASE_SECONDS = 120.0
_FIRST_WAIT, _LONGEST_WAIT = 0.05, 1.0

ACQUIRE_SQL = """
INSERT INTO imagegen_ledger AS entry (key, kind, holder, lease_until)
VALUES (%(key)s, %(kind)s, %(holder)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
WHERE entry.holder IS NULL OR entry.lease_until < now()
RETURNING entry.value
"""
RENEW_SQL = """
UPDATE imagegen_ledger AS entry SET lease_until = now() + make_interval(secs => %s)
FROM unnest(%s::text[], %s::text[]) AS held(key, holder)
WHERE entry.key = held.key AND entry.holder = held.holder
"""
RECORD_SQL = """
INSERT INTO imagegen_ledger AS entry (key, kind, value, recorded_at) VALUES (%(key)s, %(kind)s, %(value)s, now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, recorded_at = now()
WHERE entry.holder = %(holder)s OR entry.value IS NULL
"""
RELEASE_SQL = """
WITH unpaid AS (DELETE FROM imagegen_ledger WHERE key = %(key)s AND holder = %(holder)s AND value IS NULL)
UPDATE imagegen_ledger SET holder = NULL, lease_until = NULL
WHERE key = %(key)s AND holder = %(holder)s AND value IS NOT NULL
"""


def check_ledger_schema(dsn: str, connect_timeout: int) -> None:
    """Before any spend: the ledger's tables (and every other shared one) are there or can be made (one
    transaction, always rolled back, waiting at most PREFLIGHT_TIMEOUT_SECONDS for the server or a lock).
    Raises LedgerError."""
    timeout = min(connect_timeout, PREFLIGHT_TIMEOUT_SECONDS)
    connections = PostgresConnections(dsn, "imagegen_ledger", connect_timeout=timeout)
    try:
        with connections.connection("checking") as conn, conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL statement_timeout = {timeout * 1000}")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            conn.execute(shared_schema_sql())
    finally:
        connections.close()


class LeasedClaim(Generic[T]):
    """One key of the ledger, held under a lease: what was recorded for it, or a place to record it."""

    def __init__(self, ledger: PostgresLedger, key: str, kind: type[T], holder: str, value: Any):
        self.name = f"imagegen_ledger row {key}"
        self._ledger, self._key, self._kind, self._holder, self._value = ledger, key, kind, holder, value

    def read(self) -> T | None:
        if self._value is None:
            return None
        try:
            value = self._kind.model_validate(self._value)
        except ValidationError:  # an entry this version cannot read is no entry, as a bad file is
            return None
        if isinstance(value, GeneratedImage):
            return self._ledger.localised(value)  # type: ignore[return-value]  # T is GeneratedImage here
        return value

    def write(self, value: T) -> None:
        if isinstance(value, GeneratedImage):
            self._ledger.masters.put(value.image)  # the bytes first: an entry never names a master nobody has
        with self._ledger.connections.connection("recording in") as conn:
            conn.execute(RECORD_SQL, {"value": Jsonb(value.model_dump(mode="json")), "key": self._key,
                                      "kind": self._kind.__name__, "holder": self._holder})
        self._value = value.model_dump(mode="json")


class PostgresLedger:
    """The ledger as rows of `imagegen_ledger`; masters read back into `masters_dir` (this worker's disk)."""

    def __init__(self, dsn: str, masters_dir: Path, *, lease_seconds: float = LEASE_SECONDS,
                 connect_timeout: int = 10):
        self.connections = PostgresConnections(dsn, "imagegen_ledger", connect_timeout=connect_timeout)
        # a pool of its own: a master's transfer never makes a claim or a lease renewal wait
        self.masters = SharedMasters(PostgresConnections(dsn, "imagegen_masters", connect_timeout=connect_timeout))
        self.masters_dir = Path(masters_dir)
        self.lease_seconds = float(lease_seconds)
        self._held: dict[str, str] = {}  # holder -> key, for the lease keeper
        self._lock = threading.Lock()
        self._schema_ready = False
        self._keeper: threading.Thread | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"PostgresLedger({self.connections!r}, lease {self.lease_seconds:g} s)"

    def prepare(self) -> None:
        """Create the tables if they are missing and purge what dead workers left (once per ledger)."""
        with self._lock:
            if self._schema_ready:
                return
            create_shared_schema(self.connections)
            purge_stale_rows(self.connections)
            self._schema_ready = True

    @contextlib.contextmanager
    def claim(self, key: str, kind: type[T]) -> Iterator[LeasedClaim[T]]:
        self.prepare()
        holder = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(6)}"
        value = self._acquire(key, kind, holder)
        try:
            yield LeasedClaim(self, key, kind, holder, value)
        finally:
            self._release(key, holder)

    def _acquire(self, key: str, kind: type[BaseModel], holder: str) -> Any:
        """Take `key` under a new lease, waiting while another claim's lease is live; its recorded value."""
        wait = _FIRST_WAIT
        params = {"key": key, "kind": kind.__name__, "holder": holder, "lease": self.lease_seconds}
        while True:
            with self.connections.connection("claiming in") as conn:
                row = conn.execute(ACQUIRE_SQL, params).fetchone()
            if row is not None:
                with self._lock:
                    self._held[holder] = key
                self._keep_leases()
                return row[0]
            time.sleep(wait)
            wait = min(wait * 1.5, _LONGEST_WAIT)

    def _release(self, key: str, holder: str) -> None:
        with self._lock:
            self._held.pop(holder, None)
        try:
            with self.connections.connection("releasing in") as conn:
                conn.execute(RELEASE_SQL, {"key": key, "holder": holder})
        except LedgerError:  # the lease runs out by itself: a waiter takes the key over a little later
            pass

    def _keep_leases(self) -> None:
        with self._lock:
            if self._keeper is None or not self._keeper.is_alive():
                self._stop.clear()
                self._keeper = threading.Thread(target=self._renew_until_closed, name="imagegen-ledger-leases",
                                                daemon=True)
                self._keeper.start()

    def _renew_until_closed(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            with self._lock:
                held = list(self._held.items())
            if not held:
                continue
            try:
                with self.connections.connection("renewing leases in") as conn:
                    conn.execute(RENEW_SQL, (self.lease_seconds, [k for _, k in held], [h for h, _ in held]))
            except LedgerError:  # the next beat tries again; a lease outlives three missed beats
                continue

    def localised(self, made: GeneratedImage, *, fetch: bool = True) -> GeneratedImage:
        """`made` with its master at this worker's `<masters_dir>/<name>`, fetched from the shared masters
        when this disk lacks it. A master nobody stored stays gone there: the ledger's reader pays again."""
        target = (self.masters_dir / Path(made.image.path).name).resolve()
        image = made.image.model_copy(update={"path": str(target)})
        if fetch and file_state(image) == "gone":
            self.masters.fetch_into(image.sha256, target)
        return made.model_copy(update={"image": image})

    def recorded(self, key: str, kind: type[T]) -> T | None:
        """What `key` recorded, read without its claim and without fetching anything (for a count, not for
        use): a master counts while this disk holds its recorded bytes, or the shared masters do."""
        try:
            with self.connections.connection("reading") as conn:
                row = conn.execute("SELECT value FROM imagegen_ledger WHERE key = %s", (key,)).fetchone()
            value = kind.model_validate(row[0]) if row is not None and row[0] is not None else None
            if isinstance(value, GeneratedImage):
                here = self.localised(value, fetch=False)
                state = file_state(here.image)
                if state == "changed" or (state == "gone" and not self.masters.has(here.image.sha256)):
                    return None
                return here  # type: ignore[return-value]  # T is GeneratedImage here
            return value
        except (LedgerError, ValidationError):  # a count is a courtesy: what cannot be read is not counted
            return None

    def close(self) -> None:
        """Stop renewing leases, give back the claims still held (a run that is ending: an interrupt) and
        close the connections."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=5)
        with self._lock:
            held, self._held = list(self._held.items()), {}
        for holder, key in held:
            self._release(key, holder)
        self.connections.close()
        self.masters.connections.close()
