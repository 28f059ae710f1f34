"""Per-run scratch folders that a killed run cannot leave behind for good.

Renders wait in scratch between the render and publish tasks. A run that dies by kill -9 cannot
clean up after itself, so each run holds an flock on `<root>/<name>.lock` for as long as its folder
lives (the kernel releases it when the process dies) and every new run first removes the folders
whose lock nobody holds. A concurrent run's folder is never touched: its lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


def _try_lock(lock_path: Path) -> int | None:
    """An exclusive, non-blocking flock on `lock_path` (created if missing): the fd, or None if held."""
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _release(fd: int, lock_path: Path) -> None:
    lock_path.unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def sweep_dead_scratch(root: Path) -> list[str]:
    """Remove scratch folders (and stray files) under `root` that no live run holds; return their names."""
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(LOCK_SUFFIX):
            continue
        lock_path = root / f"{entry.name}{LOCK_SUFFIX}"
        fd = _try_lock(lock_path)
        if fd is None:  # a live run's folder
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
        finally:
            _release(fd, lock_path)
    for lock_path in root.glob(f"*{LOCK_SUFFIX}"):  # locks whose folder is already gone
        if not (root / lock_path.name.removesuffix(LOCK_SUFFIX)).exists() and (fd := _try_lock(lock_path)) is not None:
            _release(fd, lock_path)
    return removed


@contextlib.contextmanager
def run_scratch(root: Path, name: str) -> Iterator[Path]:
    """A scratch folder `root/name` for one run: dead runs' folders are swept first, this one is
    removed on exit, and its lock keeps concurrent runs' sweeps away from it meanwhile."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_dead_scratch(root)
    lock_path = root / f"{name}{LOCK_SUFFIX}"
    fd = _try_lock(lock_path)
    if fd is None:
        raise RuntimeError(f"scratch folder {name!r} is held by another live run")
    folder = root / name
    try:
        folder.mkdir(exist_ok=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _release(fd, lock_path)
