"""Provider pacing in the catalog's PostgreSQL: one schedule per account for every worker on every machine.

A row of `imagegen_pacing` per account holds the time its next request may start. Taking a turn is one
statement, `UPDATE ... SET next_slot = greatest(next_slot, paused_until, clock_timestamp()) + spacing
RETURNING` (an upsert, for the account's first request): the row lock serialises the takers, and the
slot is on the server's clock, so workers' clocks never matter; the taker gets back the seconds until
its slot and sleeps that long on its own. A 429's Retry-After sets `paused_until` for everyone. The
spacing and the sliding-window guard are imagegen.ratelimit.SharedPacer's.

Why not Prefect's global concurrency limits: their `rate_limit()` granted 29/min of 40/min here
(bench/bench_rate_limit.py), and a turn here is one short statement on a database the workers already
use for the ledger. A database error is a LedgerError naming the table and the (masked) server.
"""

from __future__ import annotations

import logging
import threading
from importlib import resources

from imagegen.errors import LedgerError
from imagegen.postgres_connections import PostgresConnections
from imagegen.ratelimit import PROVIDER_WINDOW_SECONDS, WINDOW_GUARD, SharedPacer

logger = logging.getLogger(__name__)

_SCHEMA_LOCK_ID = 0x1A6E_9ACE  # pg_advisory_xact_lock key: "imagegen pace"

RESERVE_SQL = """
INSERT INTO imagegen_pacing AS pace (account, next_slot)
VALUES (%(account)s, clock_timestamp() + make_interval(secs => %(spacing)s))
ON CONFLICT (account) DO UPDATE
SET next_slot = greatest(pace.next_slot, pace.paused_until, clock_timestamp()) + make_interval(secs => %(spacing)s),
    updated_at = clock_timestamp()
RETURNING extract(epoch FROM pace.next_slot - make_interval(secs => %(spacing)s) - clock_timestamp())
"""
PAUSE_SQL = """
INSERT INTO imagegen_pacing AS pace (account, next_slot, paused_until)
VALUES (%(account)s, clock_timestamp(), clock_timestamp() + make_interval(secs => %(seconds)s))
ON CONFLICT (account) DO UPDATE
SET paused_until = greatest(pace.paused_until, EXCLUDED.paused_until), updated_at = clock_timestamp()
"""
PAUSED_FOR_SQL = """
SELECT coalesce(extract(epoch FROM paused_until - clock_timestamp()), 0) FROM imagegen_pacing WHERE account = %s
"""


def pacing_schema_sql() -> str:
    """The shipped migration (imagegen/sql/pacing.postgres.sql): imagegen_pacing."""
    return resources.files("imagegen.sql").joinpath("pacing.postgres.sql").read_text()


class PostgresPacing:
    """The SlotBook of imagegen.ratelimit in `imagegen_pacing`, and the SharedPacer of each account on it.

    `window_seconds` and `guard_seconds` describe the provider's sliding window (60 s) and the room left
    for jitter; tests and benchmarks scale them down.
    """

    def __init__(self, dsn: str, *, window_seconds: float = PROVIDER_WINDOW_SECONDS,
                 guard_seconds: float = WINDOW_GUARD, connect_timeout: int = 10):
        self.connections = PostgresConnections(dsn, "imagegen_pacing", connect_timeout=connect_timeout)
        self.window_seconds = window_seconds
        self.guard_seconds = guard_seconds
        self._pacers: dict[tuple[str, float], SharedPacer] = {}
        self._lock = threading.Lock()
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"PostgresPacing({self.connections!r})"

    def prepare(self) -> None:
        """Create the table if it is missing (once, under an advisory lock). Raises LedgerError."""
        with self._lock:
            if self._schema_ready:
                return
            with self.connections.connection("creating") as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                conn.execute(pacing_schema_sql())
            self._schema_ready = True

    def limiter(self, account: str, rate_per_minute: float) -> SharedPacer:
        """The pacer of `account` at `rate_per_minute` (one per account and rate, like the buckets)."""
        self.prepare()
        with self._lock:
            pacer = self._pacers.get((account, rate_per_minute))
            if pacer is None:
                pacer = self._pacers[(account, rate_per_minute)] = SharedPacer(
                    self, account, rate_per_minute, window_seconds=self.window_seconds,
                    guard_seconds=self.guard_seconds)
            return pacer

    def reserve(self, account: str, spacing: float) -> float:
        with self.connections.connection("reserving a slot in") as conn:
            row = conn.execute(RESERVE_SQL, {"account": account, "spacing": spacing}).fetchone()
        return float(row[0]) if row is not None else 0.0

    def paused_for(self, account: str) -> float:
        with self.connections.connection("reading the pause in") as conn:
            row = conn.execute(PAUSED_FOR_SQL, (account,)).fetchone()
        return max(0.0, float(row[0])) if row is not None else 0.0

    def pause(self, account: str, seconds: float) -> None:
        """Push every worker's next slot past `seconds` from now. A database error is logged, not raised:
        this runs while a 429 is being reported, which then stands as it is."""
        try:
            with self.connections.connection("pausing in") as conn:
                conn.execute(PAUSE_SQL, {"account": account, "seconds": max(0.0, seconds)})
        except LedgerError as err:
            logger.warning("%s (the other workers keep their pace)", err)

    def close(self) -> None:
        self.connections.close()
