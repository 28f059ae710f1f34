"""imagegen.postgres_ledger against a real PostgreSQL: claims are rows under a lease kept alive by a
heartbeat, concurrent claimants (other threads, other "machines" with other masters folders) wait and
read what was paid for, a lease nobody renews is taken over, and recorded masters are fetched by
sha256 into a worker's own folder, verified."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from imagegen import shared_masters
from imagegen.errors import ContentFiltered, MasterChanged
from imagegen.ledger import FileLedger, ledger_key, paid_once
from imagegen.models import GeneratedImage, sha256_file
from imagegen.postgres_ledger import PostgresLedger, check_ledger_schema
from imagegen.providers.base import save_image_bytes
from imagegen.providers.vlm import Review


def master_in(folder: Path, colour: str = "red", size: tuple[int, int] = (32, 24)) -> GeneratedImage:
    buffer = io.BytesIO()
    image = Image.effect_noise(size, 80).convert("RGB") if colour == "noise" else Image.new("RGB", size, colour)
    image.save(buffer, "PNG")
    ref = save_image_bytes(buffer.getvalue(), folder, provider="test")
    return GeneratedImage(image=ref, provider="test", model="m", seed=1, generation_ms=1)


class Payer:
    """A paid call that counts how often it was made, and notes the server's clock when it was."""

    def __init__(self, value, delay: float = 0.0, dsn: str | None = None):
        self.value, self.delay, self.dsn = value, delay, dsn
        self.calls = 0
        self.paid_at: list[datetime] = []

    def __call__(self):
        self.calls += 1
        if self.dsn:
            with psycopg.connect(self.dsn) as conn:
                self.paid_at.append(conn.execute("SELECT now()").fetchone()[0])
        time.sleep(self.delay)
        return self.value() if callable(self.value) else self.value


@pytest.fixture
def ledgers(postgres_dsn, tmp_path):
    """ledger(name, lease) -> a PostgresLedger of worker `name` (its own masters folder), closed at the end."""
    made: list[PostgresLedger] = []

    def ledger(name: str = "a", lease: float = 120.0) -> PostgresLedger:
        made.append(PostgresLedger(postgres_dsn, tmp_path / name / "masters", lease_seconds=lease))
        return made[-1]

    yield ledger
    for each in made:
        each.close()


def rows(dsn: str, table: str = "imagegen_ledger") -> list[dict]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_a_key_is_paid_once_and_read_back_as_its_kind(ledgers, postgres_dsn):
    ledger = ledgers()
    review = Review(verdict="fail", reasons=["the handle is missing"], alt_text="A mug", model="vlm-1")
    pay = Payer(review)
    first = paid_once(ledger, ledger_key("review", "abc", "vlm-1", 1), Review, pay)
    again = paid_once(ledgers("b"), ledger_key("review", "abc", "vlm-1", 1), Review, pay)
    assert pay.calls == 1 and first == again == review and isinstance(again, Review)
    # one row, recorded and released; the safety filter's key of the call (no answer withheld) left no row
    [row] = rows(postgres_dsn)
    assert row["key"] == ledger_key("review", "abc", "vlm-1", 1) and row["kind"] == "Review"
    assert row["holder"] is None and row["lease_until"] is None and Review.model_validate(row["value"]) == review


def test_a_failed_call_records_nothing_and_the_next_claim_pays(ledgers, postgres_dsn):
    ledger = ledgers()

    def refused():
        raise RuntimeError("provider said no")

    with pytest.raises(RuntimeError):
        paid_once(ledger, "k", Review, refused)
    assert rows(postgres_dsn) == []
    assert paid_once(ledger, "k", Review, Payer(Review(verdict="pass"))) == Review(verdict="pass")


def test_an_answer_the_safety_filter_withheld_is_recorded_for_every_worker(ledgers):
    calls = []

    def filtered():
        calls.append(1)
        raise ContentFiltered("nvidia: the safety filter withheld the image (finishReason CONTENT_FILTERED)")

    for worker in ("a", "b", "c"):
        with pytest.raises(ContentFiltered, match="CONTENT_FILTERED"):
            paid_once(ledgers(worker), ledger_key("generate", "spec", 7), GeneratedImage, filtered)
    assert len(calls) == 1


def test_three_workers_at_once_pay_once_and_each_gets_the_master_on_its_own_disk(ledgers, tmp_path):
    """Three threads, each a worker with its own masters folder: one pays (slowly, writing the master to
    its folder as a provider call does), the others wait for its claim and then read the master, fetched
    by sha256 into their own folder."""
    calls: list[str] = []
    results: dict[str, GeneratedImage] = {}

    def work(name: str) -> None:
        def pay() -> GeneratedImage:
            calls.append(name)
            time.sleep(0.5)
            return master_in(tmp_path / name / "masters", "noise", (300, 200))

        results[name] = paid_once(ledgers(name), "same-key", GeneratedImage, pay)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(results) == ["a", "b", "c"]
    assert len({made.image.sha256 for made in results.values()}) == 1
    for name, made in results.items():
        path = Path(made.image.path)
        assert path.parent == (tmp_path / name / "masters").resolve(), made.image.path
        assert sha256_file(path) == made.image.sha256 and path.stat().st_size == made.image.bytes


def test_a_lease_nobody_renews_is_taken_over_once_it_has_passed(ledgers, postgres_dsn):
    """A holder killed with kill -9 leaves its row claimed; the next claimant waits until the lease has
    passed on the server's clock, then pays itself."""
    key = ledger_key("generate", "spec", 1)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        ledgers().prepare()
        lease_until = conn.execute(
            "INSERT INTO imagegen_ledger (key, kind, holder, lease_until) "
            "VALUES (%s, 'Review', 'dead-host/4242/0', now() + interval '2 seconds') RETURNING lease_until",
            (key,)).fetchone()[0]
    pay = Payer(Review(verdict="pass"), dsn=postgres_dsn)
    assert paid_once(ledgers("b", lease=30), key, Review, pay) == Review(verdict="pass")
    assert pay.calls == 1 and pay.paid_at[0] >= lease_until, "the live lease of another holder was ignored"
    [row] = rows(postgres_dsn)
    assert row["holder"] is None and Review.model_validate(row["value"]) == Review(verdict="pass")


def test_a_live_claim_is_renewed_past_its_lease_so_nobody_takes_it_over(ledgers):
    """The payer's call lasts three leases; its heartbeat keeps the claim, so the waiter never pays."""
    first = Payer(Review(verdict="pass", model="first"), delay=3.0)
    second = Payer(Review(verdict="pass", model="second"))
    got: list[Review] = []
    holder = threading.Thread(target=lambda: got.append(paid_once(ledgers("a", lease=1), "slow", Review, first)))
    holder.start()
    while first.calls == 0:  # the holder has its claim once its call started
        time.sleep(0.01)
    got.append(paid_once(ledgers("b", lease=1), "slow", Review, second))
    holder.join()
    assert first.calls == 1 and second.calls == 0 and [r.model for r in got] == ["first", "first"]


def test_a_recorded_master_missing_everywhere_is_paid_again(ledgers, postgres_dsn, tmp_path):
    made = paid_once(ledgers("a"), "k", GeneratedImage, Payer(master_in(tmp_path / "a" / "masters")))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM imagegen_masters")
    Path(made.image.path).unlink()
    pay = Payer(lambda: master_in(tmp_path / "b" / "masters", "blue"))
    again = paid_once(ledgers("b"), "k", GeneratedImage, pay)
    assert pay.calls == 1 and again.image.sha256 != made.image.sha256
    assert rows(postgres_dsn)[0]["value"]["image"]["sha256"] == again.image.sha256


def test_stored_bytes_that_do_not_hash_to_their_key_are_reported_not_used(ledgers, postgres_dsn, tmp_path):
    made = paid_once(ledgers("a"), "k", GeneratedImage, Payer(master_in(tmp_path / "a" / "masters")))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE imagegen_masters SET bytes = 'tampered'::bytea, size = 8")
    pay = Payer(lambda: master_in(tmp_path / "b" / "masters", "blue"))
    with pytest.raises(MasterChanged, match=f"imagegen_masters row {made.image.sha256[:12]}"):
        paid_once(ledgers("b"), "k", GeneratedImage, pay)
    assert pay.calls == 0 and list((tmp_path / "b" / "masters").glob("*")) == []  # no file, not even a temp one


def test_a_changed_local_copy_is_reported_as_with_the_file_ledger(ledgers, tmp_path):
    made = paid_once(ledgers("a"), "k", GeneratedImage, Payer(master_in(tmp_path / "a" / "masters")))
    Path(made.image.path).write_bytes(b"tampered")
    pay = Payer(lambda: master_in(tmp_path / "a" / "masters", "blue"))
    with pytest.raises(MasterChanged, match="delete the ledger entry imagegen_ledger row k to pay for a new one"):
        paid_once(ledgers("a"), "k", GeneratedImage, pay)
    assert pay.calls == 0


def test_a_master_is_fetched_in_slices_and_verified(ledgers, tmp_path, monkeypatch):
    monkeypatch.setattr(shared_masters, "CHUNK_BYTES", 1000)
    slices = []
    real_execute = psycopg.Connection.execute

    def counting(self, query, *args, **kwargs):
        if str(query).startswith("SELECT substring("):
            slices.append(1)
        return real_execute(self, query, *args, **kwargs)

    made = paid_once(ledgers("a"), "k", GeneratedImage, Payer(master_in(tmp_path / "a" / "masters", "noise",
                                                                        (120, 90))))
    assert made.image.bytes > 10_000
    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    fetched = paid_once(ledgers("b"), "k", GeneratedImage, Payer(None))
    assert Path(fetched.image.path).read_bytes() == Path(made.image.path).read_bytes()
    assert len(slices) == -(-made.image.bytes // 1000)


def test_an_unreachable_database_is_transient_and_masks_the_password(tmp_path):
    from imagegen.errors import TransientLedgerError
    from tests.emulators.serve import _free_port

    ledger = PostgresLedger(f"postgresql://imagegen:pg-SENTINEL@127.0.0.1:{_free_port()}/assets",
                            tmp_path / "masters", lease_seconds=5)
    with pytest.raises(TransientLedgerError) as caught:
        paid_once(ledger, "k", Review, Payer(Review(verdict="pass")))
    message = str(caught.value)
    assert message.startswith("creating imagegen_ledger on postgresql://imagegen:***@127.0.0.1:"), message
    assert "SENTINEL" not in message and "\n" not in message


def test_the_schema_check_leaves_nothing_and_names_the_masked_server(postgres_dsn):
    check_ledger_schema(postgres_dsn, 5)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT to_regclass('imagegen_ledger'), to_regclass('imagegen_masters')").fetchone() \
            == (None, None)


def test_the_postgres_catalog_block_shares_its_ledger_and_sqlite_keeps_the_files(postgres_dsn, tmp_path):
    from imagegen_flows.blocks.catalog import SqliteCatalogBlock
    from imagegen_flows.blocks.postgres import PostgresCatalogBlock

    block = PostgresCatalogBlock(dsn=postgres_dsn)
    block.check_catalog()
    ledger = block.paid_call_ledger(tmp_path / "masters", 7.0)
    try:
        assert isinstance(ledger, PostgresLedger) and ledger.lease_seconds == 7.0
        assert ledger.masters_dir == tmp_path / "masters"
    finally:
        ledger.close()
    sqlite = SqliteCatalogBlock(path=str(tmp_path / "catalog.db")).paid_call_ledger(tmp_path / "masters", 7.0)
    assert isinstance(sqlite, FileLedger) and sqlite.directory == tmp_path / "masters" / ".ledger"


def test_an_interrupted_run_counts_the_masters_its_shared_ledger_holds(ledgers, postgres_dsn, tmp_path):
    """The CLI's interrupted line counts finished masters through the ledger the run used (it is closed by
    then): one paid on another machine counts (a rerun fetches it), one whose bytes nobody kept does not."""
    from types import SimpleNamespace

    from imagegen.ledger import ledger_for_folder, release_ledger, use_ledger_for_run
    from imagegen_flows.deployments.cli import _masters_finished

    for key, colour in (("kept", "red"), ("lost", "blue")):
        paid_once(ledgers("a"), key, GeneratedImage, Payer(master_in(tmp_path / "a" / "masters", colour)))
    lost = paid_once(ledgers("a"), "lost", GeneratedImage, Payer(None))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM imagegen_masters WHERE sha256 = %s", (lost.image.sha256,))
    masters_b = tmp_path / "b" / "masters"
    use_ledger_for_run("run-b", ledgers("b"), masters_b)
    release_ledger("run-b")
    specs = [SimpleNamespace(asset_id=key, cache_key=lambda key=key: key, outpaint_from=None)
             for key in ("kept", "lost", "never-paid")]
    assert _masters_finished(specs, masters_b) == 1
    assert list(masters_b.glob("*")) == [], "counting fetched nothing"
    assert isinstance(ledger_for_folder(tmp_path / "elsewhere"), FileLedger)
