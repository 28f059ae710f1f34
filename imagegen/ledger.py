"""The paid-call ledger: what each paid provider call returned, shared by every run on one output folder.

Prefect's task cache is checked before a task starts, so two runs of the same brief at once both
miss it and both pay the provider. Each paid call therefore claims its key first: the claim is an
exclusive lock (flock: the kernel releases it when a process dies, even by kill -9, so a crashed run
never blocks the next) under which the call looks for what a concurrent or earlier run recorded.

A backend is one small interface (`Ledger.claim` handing out a `Claim` with `read` and `write`): the
files under `<out>/masters/.ledger/` (`FileLedger`, the default: one output folder), or rows of the
catalog's PostgreSQL that every worker on every machine shares (imagegen.postgres_ledger, chosen by the
flow when the catalog is PostgreSQL and handed to the tasks of its run through `ledger_for_run`).
Entries are typed: a claim names the pydantic model its value is read back as (a `GeneratedImage`, a
VLM `Review`). Whatever the backend, a recorded master is trusted only while its file holds the recorded
bytes (`trusted`): a file that is gone is a miss (the same request is paid again; the shared backend
first fetches the master from the database into this worker's folder, so it is gone only when nobody
stored it), a file whose size or sha256 differs raises `MasterChanged`, so a truncated or tampered
master is reported, never silently replaced by a new image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from imagegen.errors import ContentFiltered, MasterChanged
from imagegen.files import open_text_atomically
from imagegen.models import GeneratedImage, ImageRef, sha256_file

T = TypeVar("T", bound=BaseModel)


class Claim(Protocol[T]):
    """One key, held exclusively until the claim ends: what was recorded for it, or a place to record it."""

    name: str  # where the entry lives, for a person to find it (a file path; a table and key)

    def read(self) -> T | None: ...

    def write(self, value: T) -> None: ...


class Ledger(Protocol):
    """A ledger backend: hand out the claim on `key`, waiting while another run holds it; or read what
    `key` recorded without the claim (a count while runs hold claims: None where nothing usable is). A
    claim on one key may be taken while holding another's (paid_once: the call's key, then its withheld
    answer's), so a backend locks per key (a file, a row), or reentrantly."""

    def claim(self, key: str, kind: type[T]) -> AbstractContextManager[Claim[T]]: ...

    def recorded(self, key: str, kind: type[T]) -> T | None: ...


def ledger_key(kind: str, *parts: object) -> str:
    """The key of a paid call: sha256 over its kind and everything that decides its result."""
    return hashlib.sha256("|".join([kind, *map(str, parts)]).encode()).hexdigest()


class WithheldAnswer(BaseModel):
    """A paid call the provider's safety filter answered without an image: asking the same request again
    gets the same answer, so it is recorded like an image and never paid for twice."""

    reason: str


def paid_once(ledger: Ledger, key: str, kind: type[T], pay: Callable[[], T]) -> T:
    """What `key` recorded, or the result of `pay()` (recorded): a call is paid for once per ledger.

    A call the safety filter withheld (ContentFiltered) is recorded too, and raised again from the ledger."""
    with ledger.claim(key, kind) as claim:
        if (made := trusted(claim.read(), claim.name)) is not None:
            return made
        # always claimed after the key's own claim, so two runs never wait for each other's second lock
        with ledger.claim(ledger_key("withheld", key), WithheldAnswer) as withheld:
            if (answer := withheld.read()) is not None:
                raise ContentFiltered(answer.reason)
            try:
                made = pay()
            except ContentFiltered as exc:
                withheld.write(WithheldAnswer(reason=str(exc)))
                raise
        claim.write(made)
        return made


def trusted(value: T | None, entry: str) -> T | None:
    """`value` as a ledger entry gave it, if it can be trusted: a master whose file is gone is a miss (None:
    the same request is made again); one whose bytes changed raises MasterChanged naming `entry`."""
    if isinstance(value, GeneratedImage):
        state = file_state(value.image)
        if state == "changed":
            raise changed_master(value.image, entry)
        if state == "gone":
            return None
    return value


def file_state(image: ImageRef) -> Literal["intact", "gone", "changed"]:
    """"intact" when `image`'s file holds its recorded bytes, "gone" without a file, else "changed"
    (the size is compared first: it is cheap and catches a truncated file without hashing it)."""
    path = Path(image.path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "gone"
    return "intact" if size == image.bytes and sha256_file(path) == image.sha256 else "changed"


def changed_master(image: ImageRef, entry: str) -> MasterChanged:
    """The one line that reports a recorded master whose file no longer holds its bytes, and the two ways out."""
    path = Path(image.path)
    return MasterChanged(f"{path.parent.name}/{path.name}: bytes differ from the ledger's sha256 {image.sha256[:12]}; "
                         f"restore the file or delete the ledger entry {entry} to pay for a new one")


class LedgerEntry(Generic[T]):
    """One key's JSON file, read back as `kind` (an unreadable file is no entry)."""

    def __init__(self, directory: Path, key: str, kind: type[T]):
        self.path = directory / f"{key}.json"
        self.name = str(self.path)
        self.kind = kind

    def read(self) -> T | None:
        try:
            return self.kind.model_validate_json(self.path.read_text())
        except (OSError, ValueError):
            return None

    def write(self, value: T) -> None:
        with open_text_atomically(self.path) as fh:
            fh.write(value.model_dump_json())


class FileLedger:
    """The ledger as files in `<masters>/.ledger/`: `<key>.json` per entry, `<key>.lock` per claim."""

    def __init__(self, masters_dir: Path):
        self.masters_dir = Path(masters_dir)
        self.directory = self.masters_dir / ".ledger"

    def recorded(self, key: str, kind: type[T]) -> T | None:
        entry = LedgerEntry(self.directory, key, kind)
        try:
            return trusted(entry.read(), entry.name)
        except MasterChanged:  # not usable as it is: the rerun reports it
            return None

    @contextlib.contextmanager
    def claim(self, key: str, kind: type[T]) -> Iterator[LedgerEntry[T]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield LedgerEntry(self.directory, key, kind)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)



_run_ledgers: dict[str, Ledger] = {}
_folder_ledgers: dict[Path, Ledger] = {}  # the last ledger used for each masters folder, kept after its run
_run_lock = threading.Lock()


def use_ledger_for_run(run_id: str, ledger: Ledger, masters_dir: Path) -> None:
    """Make `ledger` the one the paid tasks of flow run `run_id` (masters in `masters_dir`) claim in."""
    with _run_lock:
        _run_ledgers[run_id] = ledger
        _folder_ledgers[Path(masters_dir).resolve()] = ledger


def ledger_for_run(run_id: str, masters_dir: Path) -> Ledger:
    """The ledger the flow chose for run `run_id`, or the files under `masters_dir` (a task called alone)."""
    with _run_lock:
        ledger = _run_ledgers.get(run_id)
    return ledger if ledger is not None else FileLedger(masters_dir)


def ledger_for_folder(masters_dir: Path) -> Ledger:
    """The ledger the last run on `masters_dir` in this process used (its reads work after the run ended:
    what an interrupted run reports), or the files under it."""
    with _run_lock:
        ledger = _folder_ledgers.get(Path(masters_dir).resolve())
    return ledger if ledger is not None else FileLedger(masters_dir)


def release_ledger(run_id: str) -> None:
    """Forget run `run_id`'s ledger and close it (a database backend stops renewing its leases)."""
    with _run_lock:
        ledger = _run_ledgers.pop(run_id, None)
    if (close := getattr(ledger, "close", None)) is not None:
        close()
