"""A run's provider calls counted in the catalog's PostgreSQL, so the tasks of one run in several
processes never together pass its budget (`max_provider_calls`).

One row of `imagegen_run_budgets` per run; a call is counted by one statement, `UPDATE ... SET spent =
spent + 1 WHERE spent < max_calls RETURNING`, whose row lock makes the check and the count one step.
The row goes when the run ends; a killed run's row is purged after a week (imagegen.shared_schema).
"""

from __future__ import annotations

from imagegen.errors import LedgerError
from imagegen.postgres_connections import PostgresConnections
from imagegen.shared_schema import create_shared_schema

TAKE_SQL = """UPDATE imagegen_run_budgets SET spent = spent + 1, updated_at = now()
WHERE run_id = %s AND (max_calls IS NULL OR spent < max_calls) RETURNING spent"""
GIVE_BACK_SQL = "UPDATE imagegen_run_budgets SET spent = greatest(spent - 1, 0), updated_at = now() WHERE run_id = %s"


class PostgresCallCount:
    """The `CallCount` (imagegen.budget) of run `run_id`, shared by every process that opens it."""

    def __init__(self, dsn: str, run_id: str, max_calls: int | None, *, connect_timeout: int = 10):
        self.connections = PostgresConnections(dsn, "imagegen_run_budgets", connect_timeout=connect_timeout)
        self.run_id = run_id
        create_shared_schema(self.connections)
        with self.connections.connection("opening the run's budget in") as conn:
            conn.execute("INSERT INTO imagegen_run_budgets (run_id, max_calls) VALUES (%s, %s) "
                         "ON CONFLICT (run_id) DO NOTHING", (run_id, max_calls))

    def take(self) -> bool:
        with self.connections.connection("counting a call in") as conn:
            return conn.execute(TAKE_SQL, (self.run_id,)).fetchone() is not None

    def give_back(self) -> None:
        with self.connections.connection("giving a call back in") as conn:
            conn.execute(GIVE_BACK_SQL, (self.run_id,))

    def value(self) -> int:
        with self.connections.connection("reading") as conn:
            row = conn.execute("SELECT spent FROM imagegen_run_budgets WHERE run_id = %s", (self.run_id,)).fetchone()
        return row[0] if row is not None else 0

    def close(self, *, forget: bool = True) -> None:
        """Close the connections; with `forget` (the run is over), delete the run's row first."""
        try:
            if forget:
                with self.connections.connection("closing the run's budget in") as conn:
                    conn.execute("DELETE FROM imagegen_run_budgets WHERE run_id = %s", (self.run_id,))
        except LedgerError:  # the run's result stands; its row is purged later (imagegen.shared_schema)
            pass
        finally:
            self.connections.close()
