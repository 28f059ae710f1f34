"""Daily image budgets per provider (IMAGEGEN_<PROVIDER>_IMAGES_PER_DAY), counted across runs in the
catalog's database: SQLite (`<out>/catalog.db`, one output folder) or PostgreSQL (every worker).

Two tables (imagegen/sql/daily_images.sql): the images each provider was sent per UTC day, and the
reservations of the runs in progress. Every operation is one transaction that holds the database's
write lock (SQLite's BEGIN IMMEDIATE, a PostgreSQL advisory transaction lock), so runs on any number of
processes see each other's counts and reservations and never together pass a limit:

- before spending, a run reserves the images of the masters it must pay for (masters its ledger
  already holds cost nothing and are not asked for); when fewer are left today, it stops there, with
  one line saying how many are left and when the day resets (UTC midnight);
- each paid image request is counted the moment it is sent, from the run's reservation while it lasts,
  past it only while the day's limit allows (regenerations, edits and outpaints are images too);
- the run's end gives back what it reserved and did not use. A run that dies stops renewing its
  reservation (each image sent renews it), which then stops counting after `reservation_seconds`.

A provider without a limit is still counted (the daily provider counts); `local` is free, never counted.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from imagegen.errors import CatalogError, QuotaExhausted
from imagegen.shared_schema import DAILY_COUNTS_KEPT_DAYS, create_shared_schema

FREE_PROVIDERS = frozenset({"local"})
RESERVATION_SECONDS = 600.0
_LOCK_ID = 0x1A6E_DA11  # pg_advisory_xact_lock key: "imagegen daily"

Statement = Callable[..., list[tuple[Any, ...]]]  # run(sql with %s placeholders, *params) -> rows


class DailyImagesExhausted(QuotaExhausted):
    """The provider's daily image budget cannot pay for what is asked: nothing was sent."""


def limit_variable(provider: str) -> str:
    """The setting that limits `provider`'s images per day."""
    return f"IMAGEGEN_{provider.upper()}_IMAGES_PER_DAY"


def utc_day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def day_resets_at(epoch: float) -> str:
    """When the UTC day of `epoch` ends, as a person reads it: '2026-12-08 00:00 UTC (in 3 h 12 min)'."""
    now = datetime.fromtimestamp(epoch, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((midnight - now).total_seconds() // 60))
    return f"{midnight:%Y-%m-%d %H:%M} UTC (in {minutes // 60} h {minutes % 60:02d} min)"


def schema_sql() -> str:
    return resources.files("imagegen.sql").joinpath("daily_images.sql").read_text()


class CountsDatabase(Protocol):
    """Where the counts live: `transaction()` yields (run a statement, the database's time now) under a
    lock that serialises every writer of the counts."""

    def transaction(self) -> contextlib.AbstractContextManager[tuple[Statement, float]]: ...


class SqliteCounts:
    """The counts in a SQLite file (the catalog's): BEGIN IMMEDIATE is the lock, the machine's clock the time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[tuple[Statement, float]]:
        with self._lock:
            conn: sqlite3.Connection | None = None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")  # as the catalog itself opens the file
                conn.executescript(schema_sql())
                conn.execute("BEGIN IMMEDIATE")
                opened = conn

                def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                    return opened.execute(sql.replace("%s", "?"), params).fetchall()

                yield run, time.time()
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                raise CatalogError(f"daily image counts in {self.path}: {exc}") from None
            finally:
                if conn is not None:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    conn.close()


class PostgresCounts:
    """The counts in the catalog's PostgreSQL: an advisory transaction lock, the server's clock."""

    def __init__(self, dsn: str, *, connect_timeout: int = 10):
        from imagegen.postgres_connections import PostgresConnections  # psycopg only when PostgreSQL is used

        self.connections = PostgresConnections(dsn, "imagegen_daily_images", connect_timeout=connect_timeout)
        self._schema_ready = False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[tuple[Statement, float]]:
        if not self._schema_ready:
            create_shared_schema(self.connections)  # under the schema's own lock, as every shared table
            self._schema_ready = True
        with self.connections.connection("counting images in") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            now = float(row[0]) if row is not None else time.time()

            def run(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []

            yield run, now

    def close(self) -> None:
        self.connections.close()


@dataclass(frozen=True)
class Counted:
    """One image counted as sent: given back (`DailyImages.give_back`) when the call paid for nothing."""

    provider: str
    day: str
    reserved: bool


SENT_SQL = "SELECT images FROM imagegen_daily_images WHERE provider = %s AND day = %s"
RESERVED_SQL = """SELECT holder, images FROM imagegen_image_reservations
WHERE provider = %s AND day = %s AND expires_at > %s AND images > 0"""
RESERVE_SQL = """INSERT INTO imagegen_image_reservations (holder, provider, day, images, expires_at)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT (holder, provider)
DO UPDATE SET day = excluded.day, images = excluded.images, expires_at = excluded.expires_at"""
COUNT_SQL = """INSERT INTO imagegen_daily_images (provider, day, images) VALUES (%s, %s, 1)
ON CONFLICT (provider, day) DO UPDATE SET images = imagegen_daily_images.images + 1"""


class DailyImages:
    """One run's view of the daily budgets: `limits` maps a provider to its images per day (None: no limit)."""

    def __init__(self, database: CountsDatabase, limits: Mapping[str, int | None], *, holder: str,
                 reservation_seconds: float = RESERVATION_SECONDS):
        self.database = database
        self.limits = dict(limits)
        self.holder = holder
        self.reservation_seconds = reservation_seconds
        self._reserved = False  # only a run that reserved touches the tables when it ends

    def _state(self, run: Statement, provider: str, day: str, now: float) -> tuple[int, int, int]:
        """(sent today, reserved by other live runs, reserved by this one)."""
        sent = run(SENT_SQL, provider, day)
        others = mine = 0
        for holder, images in run(RESERVED_SQL, provider, day, now):
            if holder == self.holder:
                mine = images
            else:
                others += images
        return (sent[0][0] if sent else 0), others, mine

    def reserve(self, provider: str, images: int, *, hold: bool = True) -> None:
        """Set aside `images` of today's budget for this run, or raise DailyImagesExhausted saying how many
        are left and when the day resets. Without a limit there is nothing to reserve; `hold=False` only
        checks (the CLI's pre-flight, before the flow reserves)."""
        limit = self.limits.get(provider)
        if limit is None or provider in FREE_PROVIDERS or images <= 0:
            return
        with self.database.transaction() as (run, now):
            day = utc_day(now)
            sent, others, _ = self._state(run, provider, day, now)
            left = max(0, limit - sent - others)
            if images > left:
                raise DailyImagesExhausted(
                    f"{limit_variable(provider)}: this run needs {images} new {provider} image(s) but {left} of "
                    f"{limit} are left today; the day resets at {day_resets_at(now)}; nothing was sent",
                    provider=provider)
            if hold:
                run(RESERVE_SQL, self.holder, provider, day, images, now + self.reservation_seconds)
                self._reserved = True

    def count(self, provider: str) -> Counted | None:
        """Count one image as sent now (call it just before sending): from this run's reservation, else
        while the day's limit allows; raises DailyImagesExhausted otherwise. None for a free provider."""
        if provider in FREE_PROVIDERS:
            return None
        limit = self.limits.get(provider)
        with self.database.transaction() as (run, now):
            day = utc_day(now)
            sent, others, mine = self._state(run, provider, day, now)
            if mine <= 0 and limit is not None and sent + others >= limit:
                raise DailyImagesExhausted(
                    f"{limit_variable(provider)}: {limit - min(limit, sent + others)} of {limit} {provider} "
                    f"images are left today, none for this request; the day resets at {day_resets_at(now)}",
                    provider=provider)
            if mine > 0:
                run(RESERVE_SQL, self.holder, provider, day, mine - 1, now + self.reservation_seconds)
            run(COUNT_SQL, provider, day)
        return Counted(provider, day, reserved=mine > 0)

    def give_back(self, counted: Counted | None) -> None:
        """An image counted whose call paid for nothing (it polled a request paid earlier)."""
        if counted is None:
            return
        with self.database.transaction() as (run, now):
            run("UPDATE imagegen_daily_images SET images = images - 1 WHERE provider = %s AND day = %s "
                "AND images > 0", counted.provider, counted.day)
            if counted.reserved:
                run("UPDATE imagegen_image_reservations SET images = images + 1 WHERE holder = %s AND provider = %s",
                    self.holder, counted.provider)

    def sent_today(self, provider: str) -> int:
        with self.database.transaction() as (run, now):
            return self._state(run, provider, utc_day(now), now)[0]

    def release(self) -> None:
        """The run ended: what it reserved and did not use is free again; the connections close."""
        try:
            if self._reserved:
                with self.database.transaction() as (run, _):
                    run("DELETE FROM imagegen_image_reservations WHERE holder = %s", self.holder)
                self._reserved = False
        finally:
            if (close := getattr(self.database, "close", None)) is not None:
                close()

    def purge(self, keep_days: int = DAILY_COUNTS_KEPT_DAYS) -> None:
        """Drop expired reservations and the counts of days older than `keep_days` (for PostgreSQL, the
        ledger's first claim does it too: imagegen.shared_schema)."""
        with self.database.transaction() as (run, now):
            run("DELETE FROM imagegen_image_reservations WHERE expires_at < %s", now)
            run("DELETE FROM imagegen_daily_images WHERE day < %s", utc_day(now - keep_days * 86400))
