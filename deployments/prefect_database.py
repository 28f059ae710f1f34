"""A fresh SQLite Prefect database migrated by Prefect's own migrations over the synchronous driver.

Prefect migrates a new database on the server's start through its async engine: aiosqlite hands each of the
~34,000 statements and fetches of its ~120 migrations (mostly SQLAlchemy reflecting tables for SQLite's batch
table rebuilds) to a thread and back, which is most of the 5-7 s a fresh `PREFECT_HOME` costs a run. The
same migration scripts run over the standard library's sqlite3 driver in about half the time
(bench/bench_fast_start.py). Everything else is Prefect's: its alembic.ini and version scripts, its models'
metadata (the naming convention batch rebuilds use), its connection pragmas and its `BEGIN IMMEDIATE` per
migration, its foreign keys off around the run, as its `_migrations/env.py` does. The server's own migrate
on start then finds the database at head and does nothing. Only a database file that does not exist yet is
migrated here; an existing one (older Prefect, half-migrated, anything) is left to Prefect.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sqlite_file_to_create() -> Path | None:
    """The SQLite file the temporary API will create, or None (PostgreSQL, in memory, existing, no migrate)."""
    from prefect.settings import get_current_settings
    from sqlalchemy.engine import make_url

    settings = get_current_settings().server.database
    if not settings.migrate_on_start:
        return None
    from prefect.server.database import provide_database_interface

    url = make_url(provide_database_interface().database_config.connection_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    if "mode=memory" in str(url):
        return None
    path = Path(url.database)
    return None if path.exists() else path


def migrate_fresh_database() -> bool:
    """Create and migrate the temporary API's SQLite database if it does not exist yet; True if it did."""
    path = sqlite_file_to_create()
    if path is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    migrate_sqlite_file(path)
    return True


def migrate_sqlite_file(path: Path) -> None:
    """Run Prefect's SQLite migrations up to head on `path` through a synchronous engine."""
    import sqlalchemy as sa
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory
    from prefect.server.database import provide_database_interface
    from prefect.server.database.alembic_commands import alembic_config
    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    interface = provide_database_interface()
    config = alembic_config()
    scripts = ScriptDirectory.from_config(config)
    scripts.version_locations = [str(interface.orm.versions_dir)]
    prefect_sqlite = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{path}")

    engine = sa.create_engine(f"sqlite:///{path}", paramstyle="named", poolclass=sa.pool.NullPool)

    def on_connect(connection: Any, record: Any) -> None:
        # Prefect's engine stops pysqlite's own BEGIN for the aiosqlite adapter only; do it for this one too,
        # so `begin_sqlite_stmt` below emits the transactions, as on Prefect's engine.
        connection.isolation_level = None
        prefect_sqlite.setup_sqlite(connection, record)

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", prefect_sqlite.begin_sqlite_stmt)

    def upgrade(revision: Any, context: Any) -> Any:
        return scripts._upgrade_revs("head", revision)

    token = SQLITE_BEGIN_MODE.set("IMMEDIATE")
    try:
        # Reflection skips Prefect's expression indexes on every batch rebuild of flow_run (the migrations
        # recreate them themselves); the warning would land on the run's terminal.
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        with EnvironmentContext(config, scripts, fn=upgrade, destination_rev="head") as environment:
            with engine.connect() as connection:
                environment.configure(
                    connection=connection,
                    target_metadata=interface.Base.metadata,
                    include_schemas=True,
                    render_as_batch=True,
                    transaction_per_migration=True,
                    template_args={"dialect": "sqlite"},
                )
                with foreign_keys_off(environment):
                    with environment.begin_transaction():
                        environment.run_migrations()
    finally:
        SQLITE_BEGIN_MODE.reset(token)
        engine.dispose()


@contextlib.contextmanager
def foreign_keys_off(environment: Any) -> Iterator[None]:
    """Prefect's `disable_sqlite_foreign_keys` (its _migrations/env.py): batch rebuilds drop referenced tables."""
    environment.execute("COMMIT")
    environment.execute("PRAGMA foreign_keys=OFF")
    environment.execute("BEGIN IMMEDIATE")
    yield
    environment.execute("END")
    environment.execute("PRAGMA foreign_keys=ON")
    environment.execute("BEGIN IMMEDIATE")
