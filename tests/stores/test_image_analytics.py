"""The catalog database's `image_analytics`: one record per media_assets row, equal to the Python record
builder's, in step with every upsert and delete, on SQLite and a real PostgreSQL; a database made before
it existed gets it (with its existing rows) on first use."""

from __future__ import annotations

import sqlite3
from importlib import resources

import psycopg
import pytest
from psycopg.rows import dict_row

from imagegen.analytics import ANALYTICS_COLUMNS, analytics_record
from imagegen.catalog.base import CatalogRow
from imagegen.catalog.postgres import PostgresCatalog
from imagegen.catalog.sqlite import SqliteCatalog, _to_db
from tests.stores.test_catalogs import batch, make_row


def read_analytics(backend, where: str = "") -> list[dict]:
    query = f"SELECT * FROM image_analytics {where} ORDER BY campaign, asset_id, variant"
    if isinstance(backend, SqliteCatalog):
        with sqlite3.connect(backend.path) as conn:
            conn.row_factory = sqlite3.Row
            records = [dict(r) for r in conn.execute(query)]
        conn.close()
        return records
    with psycopg.connect(backend._dsn, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request, tmp_path):
    if request.param == "sqlite":
        return SqliteCatalog(tmp_path / "catalog.db")
    return PostgresCatalog(request.getfixturevalue("postgres_dsn"))


def expected(rows: list[CatalogRow]) -> list[dict]:
    return [analytics_record(r).model_dump() for r in sorted(rows, key=lambda r: r.key)]


def test_one_record_per_row_equal_to_the_record_builder(catalog):
    rows = [*batch(), make_row("odd", "tall", store_key="spring-2026/odd/tall.v2.webp", format="WEBP",
                               prompt="ünïcödé prompt ✓", generation_ms=1, metadata={})]
    catalog.upsert(rows)
    records = read_analytics(catalog)
    assert [tuple(r) for r in records] == [ANALYTICS_COLUMNS] * len(rows)  # the columns, in the model's order
    assert records == expected(rows)
    assert records[-1]["filename"] == "tall.v2.webp" and records[-1]["prompt_length"] == len("ünïcödé prompt ✓")
    assert records[-1]["platform"] == ""


def test_reruns_add_nothing_and_changes_show_at_once(catalog):
    catalog.upsert(batch())
    catalog.upsert(batch())  # an unchanged rerun
    assert len(read_analytics(catalog)) == len(batch())
    moved = make_row("hero", "square", status="quarantined", bytes=99, format="WEBP", store_key="q/hero.webp")
    catalog.upsert([moved], remove=[("spring-2026", "hero", "story")])
    records = {(r["asset_id"], r["variant"]): r for r in read_analytics(catalog)}
    assert set(records) == {("hero", "square"), ("banner", "wide")}
    assert records[("hero", "square")] == analytics_record(moved).model_dump()
    catalog.delete([("spring-2026", "banner", "wide")])
    assert [(r["asset_id"], r["variant"]) for r in read_analytics(catalog)] == [("hero", "square")]


def test_generation_time_follows_a_new_master_but_alone_is_no_update(catalog):
    catalog.upsert([make_row()])
    same_bytes_other_time = make_row(generation_ms=9000)  # the same master made again: no update
    assert catalog.upsert([same_bytes_other_time]).unchanged == 1
    assert read_analytics(catalog)[0]["generation_time"] == 1.5
    new_master = make_row(generation_ms=2750, sha256="cd" * 32, bytes=5000)  # a new master's file
    assert catalog.upsert([new_master]).updated == 1
    assert read_analytics(catalog) == expected([new_master])
    assert catalog.rows()[0].generation_ms == 2750


def test_the_readme_query_runs_as_written(catalog):
    from tests.flows.test_campaign_analytics import readme_query

    catalog.upsert([*batch(), make_row("hero", "story", campaign="spring-launch", metadata={"platform": "x"}),
                    make_row("hero", "square", campaign="spring-launch", bytes=2048)])
    sql = readme_query().split('"')[1]
    if isinstance(catalog, SqliteCatalog):
        with sqlite3.connect(catalog.path) as conn:
            answer = conn.execute(sql).fetchall()
        conn.close()
    else:
        with psycopg.connect(catalog._dsn) as conn:
            answer = [tuple(r) for r in conn.execute(sql).fetchall()]
    assert answer == [("x", 1, 121.0, 1.5), ("instagram", 1, 2.0, 1.5)]


def old_schema(dialect: str) -> str:
    """media_assets as shipped before image_analytics existed."""
    return resources.files("imagegen.sql").joinpath(f"media_assets.{dialect}.sql").read_text()


def test_an_existing_sqlite_catalog_gets_the_view_with_its_rows(tmp_path):
    path = tmp_path / "catalog.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(old_schema("sqlite"))
    conn.close()
    old = SqliteCatalog(path)
    # rows written by an older version: straight into the table, no view there yet
    conn = sqlite3.connect(path, isolation_level=None)
    columns = list(CatalogRow.model_fields)
    for r in batch():
        conn.execute(f"INSERT INTO media_assets ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                     [_to_db(c, getattr(r, c)) for c in columns])
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'image_analytics'").fetchall()
    conn.close()
    old.preflight()
    assert [r.key for r in old.rows()] == sorted(r.key for r in batch())  # first use: the view is made
    assert read_analytics(old) == expected(batch())


def test_an_existing_postgres_catalog_gets_the_view_with_its_rows(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(old_schema("postgres"))
    PostgresCatalog(postgres_dsn).upsert(batch())  # what an older version wrote: nothing reads image_analytics
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP VIEW image_analytics")
    catalog = PostgresCatalog(postgres_dsn)  # a new process, a version with the view
    catalog.preflight()
    assert [r.key for r in catalog.rows()] == sorted(r.key for r in batch())
    assert read_analytics(catalog) == expected(batch())
    # every later process runs the migration again: the view stays, and so do its rows
    PostgresCatalog(postgres_dsn).upsert([make_row("late", "one")])
    assert len(read_analytics(catalog)) == len(batch()) + 1
