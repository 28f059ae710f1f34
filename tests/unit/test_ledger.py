"""imagegen.ledger: a paid call is paid once per key, concurrent claims wait and reuse, entries come back
as the model they were written as, and a recorded master whose bytes changed is reported, never trusted."""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from imagegen.errors import MasterChanged
from imagegen.ledger import FileLedger, LedgerEntry, file_state, ledger_key, paid_once
from imagegen.models import GeneratedImage, ImageRef
from imagegen.providers.base import save_image_bytes
from imagegen.providers.vlm import Review


def master_in(folder: Path, colour: str = "red") -> GeneratedImage:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    ref = save_image_bytes(buffer.getvalue(), folder, provider="test")
    return GeneratedImage(image=ref, provider="test", model="m", seed=1, generation_ms=1)


class Payer:
    """A paid call that counts how often it was made."""

    def __init__(self, value, delay: float = 0.0):
        self.value, self.delay, self.calls = value, delay, 0

    def __call__(self):
        self.calls += 1
        time.sleep(self.delay)
        return self.value


def test_a_key_is_paid_once_and_read_back_as_its_kind(tmp_path):
    ledger = FileLedger(tmp_path / "masters")
    review = Review(verdict="fail", reasons=["the handle is missing"], alt_text="A mug", model="vlm-1")
    pay = Payer(review)
    first = paid_once(ledger, ledger_key("review", "abc", "vlm-1", 1), Review, pay)
    again = paid_once(ledger, ledger_key("review", "abc", "vlm-1", 1), Review, pay)
    assert pay.calls == 1 and first == again == review and isinstance(again, Review)
    other = paid_once(ledger, ledger_key("review", "abc", "vlm-2", 1), Review, pay)  # another model: paid again
    assert pay.calls == 2 and other == review
    # an entry per paid call; a lock for its key and one for the safety filter's answer to it (none came)
    assert sorted(p.suffix for p in (tmp_path / "masters" / ".ledger").iterdir()) == [".json"] * 2 + [".lock"] * 4


def test_a_failed_call_records_nothing(tmp_path):
    ledger = FileLedger(tmp_path)

    def refused():
        raise RuntimeError("provider said no")

    with pytest.raises(RuntimeError):
        paid_once(ledger, "k", Review, refused)
    review = Review(verdict="pass")
    assert paid_once(ledger, "k", Review, Payer(review)) == review


def test_keys_name_the_kind_and_every_part():
    assert ledger_key("edit", "a", "b") != ledger_key("regenerate", "a", "b") != ledger_key("edit", "a", "c")
    # the outpaint key of earlier versions, so their ledger entries stay valid
    assert ledger_key("outpaint", "s" * 64, "16:9", "k") == hashlib.sha256(
        f"outpaint|{'s' * 64}|16:9|k".encode()).hexdigest()


def test_a_concurrent_claim_waits_and_reuses_what_the_first_paid_for(tmp_path):
    made = master_in(tmp_path / "masters")
    pay = Payer(made, delay=0.3)
    results: list[GeneratedImage] = []
    threads = [threading.Thread(target=lambda: results.append(
        paid_once(FileLedger(tmp_path / "masters"), "same-key", GeneratedImage, pay))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pay.calls == 1 and results == [made] * 3


def test_a_recorded_master_whose_file_is_gone_is_a_miss(tmp_path):
    ledger = FileLedger(tmp_path / "masters")
    made = paid_once(ledger, "k", GeneratedImage, Payer(master_in(tmp_path / "masters")))
    Path(made.image.path).unlink()
    calls = []

    def pay_again() -> GeneratedImage:  # the same request made again writes the same file
        calls.append(1)
        return master_in(tmp_path / "masters")

    assert paid_once(ledger, "k", GeneratedImage, pay_again) == made and calls == [1]
    assert file_state(made.image) == "intact"


@pytest.mark.parametrize("damage", ["truncate", "same size, other bytes"])
def test_a_recorded_master_whose_bytes_changed_is_reported_not_paid_for(tmp_path, damage):
    ledger = FileLedger(tmp_path / "masters")
    made = paid_once(ledger, "k", GeneratedImage, Payer(master_in(tmp_path / "masters")))
    path = Path(made.image.path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1]))
    assert file_state(made.image) == "changed"
    pay = Payer(master_in(tmp_path / "masters", "blue"))
    with pytest.raises(MasterChanged) as info:
        paid_once(ledger, "k", GeneratedImage, pay)
    entry = tmp_path / "masters" / ".ledger" / "k.json"
    assert str(info.value) == (f"masters/{path.name}: bytes differ from the ledger's sha256 {made.image.sha256[:12]}; "
                               f"restore the file or delete the ledger entry {entry} to pay for a new one")
    assert pay.calls == 0 and not getattr(info.value, "transient", True)
    path.write_bytes(data)  # restored: trusted again
    assert paid_once(ledger, "k", GeneratedImage, pay) == made and pay.calls == 0


def test_file_state_compares_size_then_sha256(tmp_path):
    made = master_in(tmp_path)
    assert file_state(made.image) == "intact"
    assert file_state(made.image.model_copy(update={"sha256": "0" * 64})) == "changed"
    assert file_state(made.image.model_copy(update={"bytes": made.image.bytes + 1})) == "changed"
    assert file_state(made.image.model_copy(update={"path": str(tmp_path / "nope.png")})) == "gone"


def test_an_unreadable_entry_is_a_miss(tmp_path):
    (tmp_path / "k.json").write_text('{"verdict": "maybe"')
    assert LedgerEntry(tmp_path, "k", Review).read() is None
    assert LedgerEntry(tmp_path, "absent", Review).read() is None


def test_a_provider_answer_replaces_a_truncated_file_of_the_same_name(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), "green").save(buffer, "PNG")
    first = save_image_bytes(buffer.getvalue(), tmp_path, provider="test")
    Path(first.path).write_bytes(buffer.getvalue()[:40])
    again = save_image_bytes(buffer.getvalue(), tmp_path, provider="test")
    assert again == first and Path(first.path).read_bytes() == buffer.getvalue()
    assert isinstance(again, ImageRef)


class MemoryLedger:
    """Another backend of the same interface (as a database table would be): claim, read, write."""

    def __init__(self):
        self.rows: dict[str, str] = {}
        self.locks: dict[str, threading.Lock] = {}  # one per key, as a row lock: paid_once nests two claims
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def claim(self, key, kind):
        ledger = self

        class Row:
            name = f"memory row {key}"

            def read(self):
                return kind.model_validate_json(ledger.rows[key]) if key in ledger.rows else None

            def write(self, value):
                ledger.rows[key] = value.model_dump_json()

        with self.lock:
            row_lock = self.locks.setdefault(key, threading.Lock())
        with row_lock:
            yield Row()


def test_another_backend_pays_once_and_distrusts_changed_masters_alike(tmp_path):
    ledger = MemoryLedger()
    made = paid_once(ledger, "k", GeneratedImage, Payer(master_in(tmp_path)))
    pay = Payer(master_in(tmp_path, "blue"))
    assert paid_once(ledger, "k", GeneratedImage, pay) == made and pay.calls == 0
    Path(made.image.path).write_bytes(b"tampered")
    with pytest.raises(MasterChanged, match="delete the ledger entry memory row k to pay for a new one"):
        paid_once(ledger, "k", GeneratedImage, pay)
    assert pay.calls == 0


def test_an_answer_the_safety_filter_withheld_is_recorded_and_never_paid_for_again(tmp_path):
    from imagegen.errors import ContentFiltered

    calls = []

    def filtered():
        calls.append(1)
        raise ContentFiltered("nvidia: the safety filter withheld the image (finishReason CONTENT_FILTERED)")

    ledger = FileLedger(tmp_path)
    for _ in range(3):
        with pytest.raises(ContentFiltered, match="CONTENT_FILTERED"):
            paid_once(ledger, ledger_key("generate", "spec", 7), GeneratedImage, filtered)
    assert len(calls) == 1
    # another request (a new seed) is its own key: it is paid for
    made = master_in(tmp_path)
    assert paid_once(ledger, ledger_key("generate", "spec", 8), GeneratedImage, Payer(made)) == made
