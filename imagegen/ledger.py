"""The generation ledger: which master a prompt spec produced, shared by every run on one host.

Prefect's task cache is checked before a task starts, so two runs of the same brief at once both
miss it and both pay the provider. Each generation therefore holds an exclusive lock on its cache
key (flock: the kernel releases it when a process dies, even by kill -9, so a crashed run never
blocks the next) and, once inside, looks in the ledger for an image a concurrent run made meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from imagegen.files import open_text_atomically
from imagegen.models import GeneratedImage


class LedgerEntry:
    def __init__(self, directory: Path, key: str):
        self.path = directory / f"{key}.json"

    def read(self) -> GeneratedImage | None:
        """The master recorded for this key, if its file still exists."""
        try:
            result = GeneratedImage.model_validate_json(self.path.read_text())
        except (OSError, ValueError):
            return None
        return result if Path(result.image.path).is_file() else None

    def write(self, result: GeneratedImage) -> None:
        with open_text_atomically(self.path) as fh:
            fh.write(result.model_dump_json())


@contextlib.contextmanager
def generation_slot(masters_dir: Path, key: str) -> Iterator[LedgerEntry]:
    """Hold the lock for `key` (waiting for a concurrent run's generation to finish) and yield its entry."""
    directory = masters_dir / ".ledger"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield LedgerEntry(directory, key)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
