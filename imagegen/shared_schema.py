"""The tables every worker of a PostgreSQL catalog shares, made idempotently under one advisory lock, and
the rows of dead workers purged so they never accumulate.

The tables: the paid-call ledger and the masters (ledger.postgres.sql), the run budgets and the GitLab
upload index (shared.postgres.sql), the daily image counts and reservations (daily_images.sql, which
the SQLite catalog holds too). What `purge_stale_rows` removes, on each run's first claim:

- ledger rows without a value whose lease passed more than a day ago: claims of workers killed before
  they paid, that nobody asked for again (a recorded value is kept: it is what was paid for);
- run budgets not counted on for a week (a killed run never deletes its own row);
- expired image reservations, and daily counts older than 90 days.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psycopg is imported where a PostgreSQL connection is made, not before
    from imagegen.postgres_connections import PostgresConnections

SCHEMA_LOCK_ID = 0x1A6E_1ED6  # pg_advisory_xact_lock key: "imagegen ledger"
SCHEMA_FILES = ("ledger.postgres.sql", "shared.postgres.sql", "daily_images.sql")
CLAIMS_KEPT_DAYS = 1
BUDGETS_KEPT_DAYS = 7
DAILY_COUNTS_KEPT_DAYS = 90

PURGE_STATEMENTS = (
    ("DELETE FROM imagegen_ledger WHERE value IS NULL AND lease_until < now() - make_interval(days => %s)",
     CLAIMS_KEPT_DAYS),
    ("DELETE FROM imagegen_run_budgets WHERE updated_at < now() - make_interval(days => %s)", BUDGETS_KEPT_DAYS),
    ("DELETE FROM imagegen_image_reservations WHERE expires_at < extract(epoch FROM now()) - %s", 0),
    ("DELETE FROM imagegen_daily_images WHERE day < to_char(now() AT TIME ZONE 'UTC' - make_interval(days => %s), "
     "'YYYY-MM-DD')", DAILY_COUNTS_KEPT_DAYS),
)


def shared_schema_sql() -> str:
    """The shipped migrations of every shared table, in order."""
    return "\n".join(resources.files("imagegen.sql").joinpath(name).read_text() for name in SCHEMA_FILES)


def create_shared_schema(connections: PostgresConnections) -> None:
    """Make the shared tables that are missing (one transaction under the schema's advisory lock)."""
    with connections.connection("creating") as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        conn.execute(shared_schema_sql())


def purge_stale_rows(connections: PostgresConnections) -> int:
    """Delete what dead workers left behind (see the module docstring); how many rows went."""
    removed = 0
    with connections.connection("purging stale rows of") as conn:
        for statement, days in PURGE_STATEMENTS:
            removed += conn.execute(statement, (days,)).rowcount
    return removed
