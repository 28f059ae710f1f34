"""A folder on local disk as an asset store (the embedded default).

Writes go to a `.incoming-*` temp file beside the target, then `os.replace` onto the key, so a reader
never sees half a file. A writer killed between the two (kill -9, power loss) leaves the temp file
behind; `sweep_stale_temp_files` removes such leftovers once they are old enough that no live writer
can still own them. A store sweeps its folder when it is first used in a process, and again at most
once per `STALE_TEMP_AGE_SECONDS` while the process lives (a long-lived `imagegen serve`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from imagegen.models import sha256_file
from imagegen.stores.base import AssetStore

log = logging.getLogger(__name__)

TEMP_PREFIX = ".incoming-"

# How old (by mtime, i.e. since its last byte was written) a temp file must be before a sweep removes it.
# Another process may be writing into the same folder right now: a concurrent run of another brief, or
# the run a user restarted while the old one was still finishing. Its temp file is fresh, and removing
# it would make that writer's os.replace fail. Copying one asset takes well under a second on a local
# disk and seconds on a slow network mount, so a file untouched for 10 minutes has no live writer.
STALE_TEMP_AGE_SECONDS = 600.0

_sweep_lock = threading.Lock()
_last_sweep: dict[tuple[Path, float], float] = {}  # (folder, max age) -> monotonic time of its last sweep


def sweep_stale_temp_files(root: str | Path, max_age_seconds: float = STALE_TEMP_AGE_SECONDS,
                           now: float | None = None) -> list[Path]:
    """Remove `.incoming-*` files anywhere under `root` whose mtime is over `max_age_seconds` old.

    Returns the removed paths. Fresh temp files (a live writer's) and every other file are left alone;
    symlinked folders are not followed; a file another sweeper removed first is not an error.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False) \
                        and now - entry.stat(follow_symlinks=False).st_mtime > max_age_seconds:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:
                continue  # removed or renamed meanwhile
    if removed:
        log.info("removed %d write-then-rename leftover(s) older than %.0f s under %s", len(removed),
                 max_age_seconds, root)
    return removed


def sweep_once_in_a_while(root: Path, max_age_seconds: float = STALE_TEMP_AGE_SECONDS) -> None:
    """`sweep_stale_temp_files(root)` on the first call for `root` in this process, then at most once
    per `max_age_seconds` (a younger leftover could not be removed sooner anyway). Thread-safe: one
    caller sweeps, the others go on at once (they never need the sweep to finish: it only removes
    files nobody writes to)."""
    key = (root, max_age_seconds)
    with _sweep_lock:
        last = _last_sweep.get(key)
        if last is not None and time.monotonic() - last < max_age_seconds:
            return
        _last_sweep[key] = time.monotonic()
    try:
        sweep_stale_temp_files(root, max_age_seconds)
    except OSError as exc:  # a sweep is housekeeping: it never fails a write
        log.warning("could not sweep stale temp files under %s: %s", root, exc)


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
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # an error (not a kill) leaves no temp file behind
            raise

    def url_for(self, key: str) -> str:
        if self.base_url:
            return f"{self.base_url}/{key}"
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
