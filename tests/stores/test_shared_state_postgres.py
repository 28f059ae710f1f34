"""What the workers of one PostgreSQL catalog share besides the ledger, against a real PostgreSQL: the
GitLab upload index (each file uploaded once by concurrent uploaders), the daily image counts and
reservations, the run budget, and the purge of what dead workers leave behind. Every "worker" here
has its own objects and connections, as separate processes have."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from imagegen.budget import CallBudget, paid_call
from imagegen.daily_images import DailyImages, DailyImagesExhausted, PostgresCounts
from imagegen.errors import BudgetExhausted, StoreError
from imagegen.postgres_ledger import PostgresLedger, check_ledger_schema
from imagegen.postgres_run_budget import PostgresCallCount
from imagegen.shared_schema import create_shared_schema, purge_stale_rows
from imagegen.stores.gitlab import GitLabUploadStore
from imagegen.stores.gitlab_index import PostgresUploadIndex
from tests.emulators.gitlab import PROJECT_ID
from tests.stores.conftest import make_gitlab_client

KEY = "spring-2026/hero/master.png"


def all_at_once(workers: list[Callable[[], object]]) -> list[object]:
    """Run each worker in its own thread, released together; their results (or exceptions), in order."""
    start = threading.Barrier(len(workers))
    results: list[object] = [None] * len(workers)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except Exception as exc:  # noqa: BLE001 - the test looks at what each worker got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def rows(dsn: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


# -- the GitLab upload index ---------------------------------------------------------------------

def test_three_workers_uploading_the_same_file_upload_it_once(gitlab_emu, postgres_dsn, tmp_path):
    emulator, base_url = gitlab_emu
    emulator.faults.delay_seconds = 0.3  # every answer is slow: the three uploads overlap
    files = []
    for name in "abc":  # each worker's own copy of the same rendered file
        path = tmp_path / name / "master.png"
        path.parent.mkdir()
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
        files.append(path)
    indexes = [PostgresUploadIndex(postgres_dsn, str(PROJECT_ID)) for _ in files]
    stores = [GitLabUploadStore(make_gitlab_client(base_url), PROJECT_ID, index=index) for index in indexes]
    results = all_at_once([lambda s=s, f=f: s.put_file(KEY, f, "image/png") for s, f in zip(stores, files)])

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(emulator.uploads) == 1 and len(emulator.calls_to("POST", "/uploads")) == 1
    assert sorted(r.written for r in results) == [False, False, True]  # one uploaded, two found its upload
    assert len({r.url for r in results}) == 1
    recorded = rows(postgres_dsn, "SELECT project, path, sha256, url FROM gitlab_uploads")
    assert recorded == [(str(PROJECT_ID), KEY, results[0].sha256, results[0].url)]

    again = GitLabUploadStore(make_gitlab_client(base_url), PROJECT_ID,
                              index=PostgresUploadIndex(postgres_dsn, str(PROJECT_ID)))
    assert again.put_file(KEY, files[0], "image/png").written is False  # a later run on another machine
    again.delete(KEY)
    assert not emulator.uploads and not rows(postgres_dsn, "SELECT path FROM gitlab_uploads")
    for index in indexes:
        index.close()


def test_an_unreachable_index_is_one_store_error_without_the_password(gitlab_emu, tmp_path):
    _, base_url = gitlab_emu
    index = PostgresUploadIndex("postgresql://imagegen:s3cret-pw@127.0.0.1:1/nowhere", str(PROJECT_ID),
                                connect_timeout=2)
    store = GitLabUploadStore(make_gitlab_client(base_url), PROJECT_ID, index=index)
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(StoreError) as failed:
        store.put_file(KEY, path, "image/png")
    assert "GitLab upload index" in str(failed.value) and "s3cret-pw" not in str(failed.value)
    assert failed.value.transient, "a server that may come back: the publish task retries"


# -- daily image counts ----------------------------------------------------------------------------

def test_concurrent_runs_reserve_and_count_within_the_daily_limit(postgres_dsn):
    runs = [DailyImages(PostgresCounts(postgres_dsn), {"nvidia": 10}, holder=f"run-{i}") for i in range(3)]
    reserved = all_at_once([lambda r=r: r.reserve("nvidia", 4) for r in runs])
    refused = [r for r in reserved if isinstance(r, DailyImagesExhausted)]
    assert len(refused) == 1, "4 + 4 fit in 10, a third 4 does not"
    assert "2 of 10 are left today" in str(refused[0]) and "00:00 UTC" in str(refused[0])

    def spend(run: DailyImages) -> int:
        granted = 0
        for _ in range(6):
            try:
                run.count("nvidia")
                granted += 1
            except DailyImagesExhausted:
                pass
        return granted

    granted = all_at_once([lambda r=r: spend(r) for r in runs])
    assert sum(granted) == 10  # type: ignore[arg-type]
    reserved_runs = [run for run, got in zip(runs, reserved) if got is None]
    assert all(g >= 4 for run, g in zip(runs, granted) if run in reserved_runs), "a reservation is honoured"
    assert rows(postgres_dsn, "SELECT provider, images FROM imagegen_daily_images") == [("nvidia", 10)]
    for run in runs:
        run.release()
    assert not rows(postgres_dsn, "SELECT holder FROM imagegen_image_reservations")


# -- the run budget --------------------------------------------------------------------------------

def test_the_processes_of_one_run_never_together_pass_its_budget(postgres_dsn):
    counts = [PostgresCallCount(postgres_dsn, "run-1", 5) for _ in range(3)]
    budgets = [CallBudget(5, count=count) for count in counts]

    def spend(budget: CallBudget) -> int:
        paid = 0
        for _ in range(4):
            try:
                paid_call(budget, "nvidia", lambda: "image")
                paid += 1
            except BudgetExhausted:
                pass
        return paid

    paid = all_at_once([lambda b=b: spend(b) for b in budgets])
    assert sum(paid) == 5 and all(b.spent == 5 for b in budgets)  # type: ignore[arg-type]
    other = PostgresCallCount(postgres_dsn, "run-2", None)  # another run has its own count
    assert other.take() and other.value() == 1
    counts[0].close()
    assert rows(postgres_dsn, "SELECT run_id FROM imagegen_run_budgets") == [("run-2",)], "an ended run's row goes"
    other.close()


# -- what dead workers leave behind ----------------------------------------------------------------

def test_the_first_claim_of_a_run_purges_what_dead_workers_left(postgres_dsn, tmp_path):
    check_ledger_schema(postgres_dsn, 5)  # the pre-flight makes nothing
    assert rows(postgres_dsn, "SELECT to_regclass('gitlab_uploads')") == [(None,)]
    ledger = PostgresLedger(postgres_dsn, Path(tmp_path / "masters"))
    create_shared_schema(ledger.connections)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("""INSERT INTO imagegen_ledger (key, kind, holder, lease_until, value) VALUES
            ('dead-claim', 'GeneratedImage', 'host/1/x', now() - interval '3 days', NULL),
            ('live-claim', 'GeneratedImage', 'host/2/y', now() + interval '2 minutes', NULL),
            ('paid-long-ago', 'Review', NULL, NULL, '{"verdict": "pass"}')""")
        conn.execute("""INSERT INTO imagegen_run_budgets (run_id, max_calls, spent, updated_at) VALUES
            ('killed-run', 10, 3, now() - interval '8 days'), ('running', 10, 1, now())""")
        conn.execute("""INSERT INTO imagegen_image_reservations VALUES
            ('dead-run', 'nvidia', '2026-01-01', 5, 0), ('live-run', 'nvidia', '2999-01-01', 5, 1e12)""")
        conn.execute("""INSERT INTO imagegen_daily_images VALUES ('nvidia', '2001-01-01', 7),
            ('nvidia', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 3)""")
    ledger.prepare()  # what a run's first claim does
    assert rows(postgres_dsn, "SELECT key FROM imagegen_ledger ORDER BY key") == [("live-claim",), ("paid-long-ago",)]
    assert rows(postgres_dsn, "SELECT run_id FROM imagegen_run_budgets") == [("running",)]
    assert rows(postgres_dsn, "SELECT holder FROM imagegen_image_reservations") == [("live-run",)]
    assert [r[0] for r in rows(postgres_dsn, "SELECT images FROM imagegen_daily_images")] == [3]
    assert purge_stale_rows(ledger.connections) == 0
    ledger.close()


def test_the_gitlab_store_takes_the_catalogs_database_as_its_index_and_the_json_file_otherwise(tmp_path,
                                                                                            monkeypatch):
    from imagegen.settings import load_settings
    from imagegen.stores.gitlab_index import JsonFileUploadIndex
    from imagegen_flows.blocks.resolve import store_block

    monkeypatch.setenv("GITLAB_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-SENTINEL")
    monkeypatch.setenv("IMAGEGEN_GITLAB_PROJECT", str(PROJECT_ID))
    monkeypatch.delenv("IMAGEGEN_CATALOG_URL", raising=False)
    embedded = store_block("gitlab", load_settings(), tmp_path)
    assert embedded.index_dsn is None and embedded.index_path == str(tmp_path / "gitlab-uploads.json")
    store = embedded.get_store()
    assert isinstance(store.index, JsonFileUploadIndex) and store.index.path == tmp_path / "gitlab-uploads.json"

    dsn = "postgresql://imagegen:pw@db.example:5432/assets"
    monkeypatch.setenv("IMAGEGEN_CATALOG_URL", dsn)
    shared = store_block("gitlab", load_settings(), tmp_path)
    assert shared.index_dsn is not None and shared.index_dsn.get_secret_value() == dsn
    index = shared.get_store().index
    assert isinstance(index, PostgresUploadIndex) and index.project == str(PROJECT_ID)
    assert "pw" not in repr(shared), "the block's repr masks the connection string"
