"""Local pre-flight checks: can a folder be created and written, and is there room for a run's files.

Each check answers with a reason (one line, for a SettingsError) or None, and leaves nothing behind:
a missing folder is not created, only probed by making and at once removing a temporary folder in
its nearest existing parent. Probing, not `os.access`, because root passes `os.access` on read-only
mounts, immutable folders and /proc, where the real write then fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_PROBE_PREFIX = ".imagegen-preflight-"
# 8-bit RGB without any compression, plus room for headers and embedded metadata (XMP, C2PA).
_BYTES_PER_PIXEL = 3
_HEADER_BYTES = 64 * 1024
_MARGIN = 1.25  # on top of the estimate: web renditions, scratch copies, the gallery and reports
_FIXED_BYTES = 16 * 1024 * 1024  # the catalog, the gallery, run-summary.json, logs


class Sized(Protocol):
    """A master or a target: anything with a width and a height (PromptSpec, Target)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


class PlannedMaster(Sized, Protocol):
    """A master of the plan (PromptSpec): sized, and named by its asset id."""

    @property
    def asset_id(self) -> str: ...


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot take files (None when it can): not a folder, not creatable, not writable."""
    if folder.exists():
        if not folder.is_dir():
            return f"{folder} is a file, not a folder"
        try:
            handle, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            return f"folder {folder} is not writable ({_reason(exc)})"
        return None
    parent = nearest_existing(folder.parent)
    if not parent.is_dir():
        return f"{folder} cannot be created: {parent} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_PROBE_PREFIX, dir=parent))
    except OSError as exc:
        return f"{folder} cannot be created in {parent} ({_reason(exc)})"
    return None


def file_bound(item: Sized) -> int:
    """The most bytes one image of `item`'s size takes on disk, in any format this project writes."""
    return item.width * item.height * _BYTES_PER_PIXEL + _HEADER_BYTES


@dataclass(frozen=True)
class SpaceEstimate:
    """The bytes a run's planned files may take, and how the figure came about (said in messages)."""

    masters: int
    files: int
    bytes: int

    @property
    def needed(self) -> int:
        return int(self.bytes * _MARGIN) + _FIXED_BYTES

    def describe(self) -> str:
        return (f"about {human_bytes(self.needed)} ({self.masters} master(s), {self.files} file(s) of at most "
                f"width x height x {_BYTES_PER_PIXEL} bytes each: {human_bytes(self.bytes)}; plus "
                f"{round((_MARGIN - 1) * 100)}% and {human_bytes(_FIXED_BYTES)} margin)")


def estimate_space(masters: Iterable[PlannedMaster], targets_by_master: Mapping[str, Iterable[Sized]]
                   ) -> SpaceEstimate:
    """Each master is kept twice (masters/ and its published `master` variant) and cut into its
    targets; every file counts at its size bound. `targets_by_master` is keyed by the master's asset_id."""
    count = files = total = 0
    for master in masters:
        count += 1
        files += 2
        total += 2 * file_bound(master)
        for target in targets_by_master.get(master.asset_id, ()):
            files += 1
            total += file_bound(target)
    return SpaceEstimate(masters=count, files=files, bytes=total)


def space_problem(folder: Path, estimate: SpaceEstimate) -> str | None:
    """Why the disk under `folder` cannot hold `estimate` (None when it can)."""
    where = nearest_existing(folder)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return f"cannot read the free space of {where} ({_reason(exc)})"
    if free >= estimate.needed:
        return None
    return (f"not enough free space: {human_bytes(free)} free on the disk of {where}, the planned files need "
            f"{estimate.describe()}")


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = count / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
