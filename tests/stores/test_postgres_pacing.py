"""imagegen.postgres_pacing against a real PostgreSQL: turns taken by many connections at once (other
processes, other machines) are one schedule per account on the server's clock, a pause moves every
worker's next turn, accounts are apart, and no credential ever reaches the table."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from imagegen.postgres_pacing import PostgresPacing
from imagegen.ratelimit import SharedPacer, pacing_through

SPACING = 10.0  # seconds between turns: far above any scheduling jitter, so counts decide, not timing


@pytest.fixture
def pacing(postgres_dsn):
    pacing = PostgresPacing(postgres_dsn)
    pacing.prepare()
    yield pacing
    pacing.close()


def test_turns_from_many_connections_are_one_schedule(postgres_dsn, pacing):
    """8 "workers" (each its own pool, as another process would have) take 40 turns at once: the turns
    are 40 distinct slots, SPACING apart, in the order the server took them."""
    workers = [PostgresPacing(postgres_dsn) for _ in range(8)]
    started = time.monotonic()
    slots: list[float] = []
    lock = threading.Lock()

    def take(worker: PostgresPacing) -> None:
        for _ in range(5):
            delay = worker.reserve("nvidia:shared", SPACING)
            with lock:
                slots.append(time.monotonic() - started + delay)  # the slot, on this clock

    threads = [threading.Thread(target=take, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for worker in workers:
        worker.close()
    assert len(slots) == 40
    assert sorted(round(slot / SPACING) for slot in slots) == list(range(40))


def test_the_first_turn_of_an_account_is_now_and_accounts_are_apart(pacing):
    assert pacing.reserve("nvidia:a", SPACING) <= 0.05
    assert pacing.reserve("nvidia:a", SPACING) == pytest.approx(SPACING, abs=1.0)
    assert pacing.reserve("neuroflash:b", SPACING) <= 0.05  # another account: its own schedule


def test_a_pause_moves_every_worker_s_next_turn(postgres_dsn, pacing):
    other_machine = PostgresPacing(postgres_dsn)
    try:
        assert pacing.paused_for("nvidia:a") == 0.0  # no row yet
        pacing.reserve("nvidia:a", 1.0)
        pacing.pause("nvidia:a", 100.0)
        assert 95.0 < other_machine.paused_for("nvidia:a") <= 100.0
        assert 95.0 < other_machine.reserve("nvidia:a", 1.0) <= 100.0
        pacing.pause("nvidia:a", 5.0)  # a shorter Retry-After never shortens a pause
        assert other_machine.paused_for("nvidia:a") > 90.0
        assert pacing.reserve("nvidia:b", 1.0) <= 0.05
    finally:
        other_machine.close()


def test_pacers_are_one_per_account_and_rate(pacing):
    pacer = pacing.limiter("nvidia:a", 40)
    assert isinstance(pacer, SharedPacer) and pacing.limiter("nvidia:a", 40) is pacer
    assert pacer.spacing == pytest.approx(60.5 / 40)
    assert pacing.limiter("nvidia:a", 20) is not pacer


def test_the_table_names_accounts_never_their_credentials(postgres_dsn, pacing):
    """The NVIDIA client and the VLM reviewer of one key share one row, named by a hash of the key; a
    neuroflash account's row is named by its (public) client id, never its secret."""
    from imagegen.providers.neuroflash_client import NeuroflashClient
    from imagegen.providers.nvidia import NvidiaClient
    from imagegen.providers.vlm import VisionReviewer

    key, secret = "nvapi-SENTINEL-pacing-key", "SENTINEL-neuroflash-secret"
    with pacing_through(pacing):
        NvidiaClient.for_account(key).limiter.acquire()
        VisionReviewer.for_account(key).limiter.acquire()
        NeuroflashClient("client-7", secret)._limiter.acquire()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT account, next_slot, paused_until FROM imagegen_pacing").fetchall()
    accounts = sorted(account for account, _, _ in rows)
    assert len(accounts) == 2 and accounts[0] == "neuroflash:client-7" and accounts[1].startswith("nvidia:")
    assert not any("SENTINEL" in str(value) for row in rows for value in row)


def test_the_postgres_catalog_block_paces_through_its_database_and_sqlite_does_not(postgres_dsn, tmp_path):
    from imagegen_flows.blocks.catalog import SqliteCatalogBlock
    from imagegen_flows.blocks.postgres import PostgresCatalogBlock

    pacing = PostgresCatalogBlock(dsn=postgres_dsn).account_pacing()
    try:
        assert isinstance(pacing, PostgresPacing)
        with psycopg.connect(postgres_dsn) as conn:  # made before any spend
            assert conn.execute("SELECT to_regclass('imagegen_pacing')").fetchone()[0] is not None
    finally:
        pacing.close()
    assert SqliteCatalogBlock(path=str(tmp_path / "catalog.db")).account_pacing() is None


def test_a_database_that_refuses_the_table_fails_in_one_line_without_the_password(postgres_server_dsn):
    from imagegen.errors import CatalogError
    from imagegen_flows.blocks.postgres import PostgresCatalogBlock

    dsn = re.sub(r"://([^@/]*@)?", "://nobody:SENTINEL-pw@", postgres_server_dsn, count=1)  # a role that is not there
    with pytest.raises(CatalogError) as caught:
        PostgresCatalogBlock(dsn=dsn, connect_timeout_seconds=3).account_pacing()
    message = str(caught.value)
    assert "imagegen_pacing" in message and "SENTINEL" not in message and "\n" not in message
