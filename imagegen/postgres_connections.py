"""Connections to the shared PostgreSQL (the catalog's database) for the ledger and the shared masters:
a few kept for reuse, and every database error turned into one line without a secret.

Statements run in autocommit (each is its own transaction: the ledger's claims are single statements
whose guarantees come from the database: a unique key, ON CONFLICT, `now()` on the server).
Prepared statements are off, so a transaction-mode pooler (Supabase's port 6543, PgBouncer) works too.
A connection that failed, or is left inside a transaction, is closed instead of kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from imagegen.errors import LedgerError, TransientLedgerError
from imagegen.redaction import REDACTED, mask_url, mask_urls_in, url_secrets

_CONNECTION_FAILURE_STATES = ("08", "53", "57P")  # connection exceptions, insufficient resources, shutdowns
_KEPT = 4  # idle connections kept per pool: the task threads of one run take turns on them


class PostgresConnections:
    """A small pool of autocommit connections to `dsn`, for statements about `what` (a table name)."""

    def __init__(self, dsn: str, what: str, *, connect_timeout: int = 10):
        self._dsn = dsn
        self.what = what
        self.connect_timeout = connect_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresConnections({mask_url(self._dsn)!r}, {self.what!r})"

    @contextmanager
    def connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection for a few statements; a psycopg error becomes a LedgerError saying `action`
        (transient when the connection failed: the task's retry may reach the server)."""
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = psycopg.connect(self._dsn, autocommit=True, prepare_threshold=None,
                                       connect_timeout=self.connect_timeout)
            yield conn
        except psycopg.Error as exc:
            self._discard(conn)
            raise self.error(exc, action) from None
        except BaseException:
            self._discard(conn)
            raise
        else:
            self._keep(conn)

    def _keep(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            self._discard(conn)
            return
        with self._lock:
            if len(self._idle) < _KEPT:
                self._idle.append(conn)
                return
        conn.close()

    @staticmethod
    def _discard(conn: psycopg.Connection[Any] | None) -> None:
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def error(self, exc: psycopg.Error, action: str) -> LedgerError:
        """LedgerError naming the (masked) server, `action` and the SQLSTATE; connection trouble is transient."""
        state = getattr(exc, "sqlstate", None) or ""
        diag = getattr(exc, "diag", None)
        detail = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
        for secret in url_secrets(self._dsn):
            detail = detail.replace(secret, REDACTED)
        message = (f"{action} {self.what} on {mask_url(self._dsn)}: {' '.join(mask_urls_in(detail).split())}"
                   + (f" (SQLSTATE {state})" if state else ""))
        transient = isinstance(exc, psycopg.OperationalError) and (
            not state or state.startswith(_CONNECTION_FAILURE_STATES))
        return TransientLedgerError(message) if transient else LedgerError(message)
