"""A folder on local disk as an asset store (the embedded default).

Writes go through `imagegen.files` (a temp file beside the target, then `os.replace` onto the key), so
a reader never sees half a file and a file is readable as the umask says. A writer killed between the
two (kill -9, power loss) leaves the temp file behind; a store sweeps its whole folder of such
leftovers whose writer is gone when it is first used in a process, and again at most once per
`STALE_TEMP_AGE_SECONDS` while the process lives (a long-lived `imagegen serve`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from imagegen.errors import StoreError
from imagegen.files import STALE_TEMP_AGE_SECONDS, copy_atomically, sweep_once_in_a_while
from imagegen.models import sha256_file
from imagegen.preflight import folder_problem
from imagegen.stores.base import AssetStore, BinarySink


class LocalFolderStore(AssetStore):
    """`stale_temp_age_seconds`: see STALE_TEMP_AGE_SECONDS; tests pass a small value to watch a sweep."""

    def __init__(self, root: str | Path, name: str = "local", base_url: str | None = None,
                 stale_temp_age_seconds: float = STALE_TEMP_AGE_SECONDS):
        self.root = Path(root).resolve()
        self.name = name
        self.base_url = base_url.rstrip("/") if base_url else None
        self.stale_temp_age_seconds = stale_temp_age_seconds

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"store key {key!r} escapes the store root")
        return path

    def _sweep(self) -> None:
        # on use, not in __init__: building a store (e.g. while checking a brief) must not touch the disk
        sweep_once_in_a_while(self.root, self.stale_temp_age_seconds)

    def stored_sha256(self, key: str) -> str | None:
        self._sweep()
        path = self._path(key)
        return sha256_file(path) if path.is_file() else None

    def write(self, key: str, path: Path, content_type: str) -> None:
        self._sweep()
        copy_atomically(path, self._path(key))

    def replace(self, key: str, path: Path, content_type: str) -> None:
        self.write(key, path, content_type)  # the rename onto the key swaps the bytes in one step

    def url_for(self, key: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{key}"
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def read_into(self, key: str, fh: BinarySink) -> None:
        try:
            with open(self._path(key), "rb") as source:
                shutil.copyfileobj(source, fh, 1024 * 1024)
        except FileNotFoundError:
            raise StoreError(f"local store {self.name!r} holds no file under {key!r}") from None

    def preflight(self) -> None:
        """The root is a folder we can write, or one we can create (probed, not created)."""
        if problem := folder_problem(self.root):
            raise StoreError(f"local store {self.name!r}: {problem}")
