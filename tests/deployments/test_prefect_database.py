"""A fresh temporary API's SQLite database, migrated over the synchronous driver (deployments/prefect_database.py):

- the schema equals the one Prefect's own start-up migration builds (same tables, indexes, triggers, the
  same columns and constraints; SQLite keeps a rebuilt table's constraints in an order Prefect's own runs
  do not keep either, so the lines of each statement are compared as a set), at the same Alembic head,
  with Prefect's WAL journal; and Prefect's own start on it finds nothing left to migrate;
- only a database file that does not exist yet is migrated here: an existing one, an in-memory one, or a
  server with migrate-on-start turned off is left to Prefect.

Each side runs in a subprocess of its own (Prefect caches its database interface per process).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.deployments.test_temporary_api import run_script

OURS = """
    import json
    from imagegen_flows.deployments.prefect_database import migrate_fresh_database
    print(json.dumps({"migrated": migrate_fresh_database()}))
"""
PREFECTS = """
    import asyncio, json
    from prefect.server.database import provide_database_interface
    asyncio.run(provide_database_interface().create_db())
    print(json.dumps({"migrated": True}))
"""


def schema(path: Path) -> dict[tuple[str, str], frozenset[str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    return {(kind, name): frozenset(line.strip().rstrip(",") for line in (sql or "").splitlines())
            for kind, name, sql in rows}


def head_and_journal(path: Path) -> tuple[list, str]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version_num FROM alembic_version").fetchall(), \
            db.execute("PRAGMA journal_mode").fetchone()[0]


def database_url(path: Path) -> dict[str, str]:
    return {"PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{path}"}


def test_the_fresh_database_is_the_one_prefect_builds_and_prefect_finds_it_at_head(tmp_path):
    ours, prefects = tmp_path / "ours" / "prefect.db", tmp_path / "prefects.db"
    assert run_script(OURS, tmp_path / "home-ours", **database_url(ours)) == {"migrated": True}
    run_script(PREFECTS, tmp_path / "home-prefect", **database_url(prefects))

    ours_schema, prefects_schema = schema(ours), schema(prefects)
    assert len(ours_schema) > 100, "Prefect's tables, indexes and triggers"
    assert ours_schema == prefects_schema
    assert head_and_journal(ours) == head_and_journal(prefects)
    assert head_and_journal(ours)[1] == "wal"

    before = ours.stat().st_mtime_ns, head_and_journal(ours)
    run_script(PREFECTS, tmp_path / "home-ours", **database_url(ours))
    assert (ours.stat().st_mtime_ns, head_and_journal(ours)) == before, "Prefect's start migrates nothing more"


def test_only_a_database_that_does_not_exist_yet_is_migrated_here(tmp_path):
    existing = tmp_path / "existing.db"
    sqlite3.connect(existing).close()
    assert run_script(OURS, tmp_path / "home", **database_url(existing)) == {"migrated": False}
    with sqlite3.connect(existing) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [], "left to Prefect, untouched"

    memory = {"PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///:memory:"}
    assert run_script(OURS, tmp_path / "home", **memory) == {"migrated": False}

    fresh = tmp_path / "fresh.db"
    assert run_script(OURS, tmp_path / "home", PREFECT_API_DATABASE_MIGRATE_ON_START="false",
                      **database_url(fresh)) == {"migrated": False}
    assert not fresh.exists()
