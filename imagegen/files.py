"""Writing files so that readers never see half a file and no temp file outlives its writer.

Every file the project writes where a reader may look (a published asset, a master, the gallery,
the ledger, an upload index...) goes to a temp file beside its target and is then renamed onto it
(``os.replace``, atomic on POSIX). On any failure (a write error, a full disk, an exception, Ctrl-C)
the temp file is removed at once and the error goes on to the caller.

Modes: the temp file is created the way a plain ``open()`` creates a file, with mode 0o666 that
the kernel reduces by the umask (and a folder's default ACL), so a published file is 0644 under
umask 022 and 0640 under 027, and a web server running as another user can serve it when the
umask says so. (``mkstemp`` makes 0600 files and ``os.replace`` keeps that mode.) Nothing reads or
changes the umask. Folders are made with the default mode (0755 under umask 022).

Only a writer that dies between the two steps (kill -9, power loss) leaves its temp file. Temp
names therefore say who wrote them, ``.<name>.<pid>.<host>-<start>.<random>.tmp`` (host: a tag
of this machine's hostname; start: the writer's start time in clock ticks since boot, 0 where
unknown), so `sweep_stale_temp_files` can remove the ones whose writer is gone and keep those of a
live writer (another run on the same folder may be writing right now). A reused pid does not keep
a leftover alive: the process behind it started at another time. Temp files of another host, and
those of older versions (``.incoming-*``, ``*.tmp``, ``*.part``, ``.gitlab-index-*``), have no
writer that can be asked, so they go once untouched for `STALE_TEMP_AGE_SECONDS`.

Sweeps happen when a store is first used (`sweep_once_in_a_while` over its whole folder) and
before the first write into a folder in a process (that folder only): a leftover sits where its
target was being written, and a rerun writes that target again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

log = logging.getLogger(__name__)

# How old (by mtime, i.e. since its last byte was written) a temp file whose writer cannot be asked
# must be before a sweep removes it. Such a writer may still be alive: a run on another host writing
# to a shared folder. Copying one asset takes well under a second on a local disk and seconds on a
# slow network mount, so a file untouched for 10 minutes has no live writer.
STALE_TEMP_AGE_SECONDS = 600.0

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_NAME_ROOM = 200  # of a file name's 255 bytes, what the target's name may take in its temp file's name
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.(?P<host>[0-9a-f]{8})-(?P<start>[0-9]+)"
                        r"\.[0-9a-f]{8}\.tmp$")
_OLD_TEMP_PREFIXES = (".incoming-", ".gitlab-index-")  # earlier versions' mkstemp prefixes
_OLD_TEMP_SUFFIXES = (".tmp", ".part")  # earlier versions' fixed temp names: gallery.tmp, <sha256>.part

_sweep_lock = threading.Lock()
_last_sweep: dict[tuple[Path, float], float] = {}  # (folder, max age) -> monotonic time of its last sweep
_last_write_sweep: dict[Path, float] = {}  # folder -> monotonic time of the last sweep before a write into it
_MAX_REMEMBERED = 4096  # folders remembered as swept before the ones swept too long ago are forgotten


# --------------------------------------------------------------------------- writers

def _read_process_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process `pid` from /proc, None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and ')': split after the last one
    fields = stat[stat.rindex(")") + 2:].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None


@functools.cache
def _start_of(pid: int) -> int:
    """The start time of process `pid` in clock ticks since boot; 0 where /proc cannot tell. Cached: it
    is asked for this process's own on every write, and a pid's start never changes while it lives."""
    stat = _read_process_stat(pid)
    return stat[1] if stat else 0


def writer_alive(pid: int, start: int) -> bool:
    """Whether the process that wrote a temp file named for (`pid`, `start`) on this host still runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    stat = _read_process_stat(pid)  # not cached: whether it is a zombie now
    if stat is None:
        return True  # no /proc to ask: the pid runs, so it may be the writer
    state, started = stat
    return state not in ("Z", "X") and (start == 0 or started == start)


def temp_name(target_name: str, pid: int | None = None) -> str:
    """The name of a temp file for `target_name` written by `pid` (this process by default) on this host."""
    pid = os.getpid() if pid is None else pid
    start = _start_of(pid) if pid == os.getpid() else (stat[1] if (stat := _read_process_stat(pid)) else 0)
    name = target_name.encode()[:_NAME_ROOM].decode(errors="ignore")
    return f".{name}.{pid}.{_HOST}-{start}.{secrets.token_hex(4)}.tmp"


def _create_temp(target: Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new, empty temp file beside `target`, created as open() creates files (`mode` less the umask)."""
    while True:
        tmp = target.with_name(temp_name(target.name))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:  # 32 random bits taken by a concurrent writer of the same target
            continue


@contextlib.contextmanager
def _replacing(path: Path, *, text: bool, encoding: str | None) -> Iterator[IO[Any]]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_before_writing(path.parent)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w" if text else "wb", encoding=encoding) as fh:
            yield fh
        # closing flushed it: a full disk shows up there, before the rename
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def open_atomically(path: Path) -> Iterator[BinaryIO]:
    """A binary file to stream `path`'s new content into; it replaces `path` when the block ends
    without an error, and is removed (the error going on) when it does not."""
    with _replacing(path, text=False, encoding=None) as fh:
        yield cast(BinaryIO, fh)


@contextlib.contextmanager
def open_text_atomically(path: Path, encoding: str | None = None) -> Iterator[TextIO]:
    """`open_atomically` for text, encoded as ``open(path, "w", encoding=encoding)`` would."""
    with _replacing(path, text=True, encoding=encoding) as fh:
        yield cast(TextIO, fh)


def write_atomically(path: Path, data: bytes) -> None:
    """Make `data` the content of `path` in one step: readers see the old file or the new one."""
    with open_atomically(path) as fh:
        fh.write(data)


def copy_atomically(source: Path, target: Path) -> None:
    """Make a copy of the file `source` the content of `target` in one step (content only, not its mode)."""
    with open(source, "rb") as src, open_atomically(target) as fh:
        shutil.copyfileobj(src, fh, 1024 * 1024)


@contextlib.contextmanager
def transient_file(data: bytes, suffix: str = "") -> Iterator[Path]:
    """A file holding `data` in the system's temp folder, for an API that reads a path; removed when
    the block ends, whatever happens (a kill leaves it to the system's temp cleaner). Only this user may
    read it: the temp folder is shared."""
    fd, path = _create_temp(Path(tempfile.gettempdir()) / f"imagegen{suffix}", 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- leftovers

def _is_leftover(entry: os.DirEntry[str], now: float, max_age_seconds: float) -> bool:
    """Whether the file `entry` is a temp file whose writer is gone (a stat only for temp names)."""
    name = entry.name
    ours = _TEMP_NAME.match(name)
    if ours is not None and ours["host"] == _HOST:
        return not writer_alive(int(ours["pid"]), int(ours["start"]))
    if ours is not None or name.startswith(_OLD_TEMP_PREFIXES) or name.endswith(_OLD_TEMP_SUFFIXES):
        return now - entry.stat(follow_symlinks=False).st_mtime > max_age_seconds
    return False


def sweep_stale_temp_files(root: str | Path, max_age_seconds: float = STALE_TEMP_AGE_SECONDS,
                           now: float | None = None, *, recursive: bool = True) -> list[Path]:
    """Remove the temp files under `root` (only in it with `recursive=False`) whose writer is gone.

    Returns the removed paths. A live writer's temp files and every other file are left alone;
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
                    if recursive:
                        pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and _is_leftover(entry, now, max_age_seconds):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:
                continue  # removed or renamed meanwhile
    if removed:
        log.info("removed %d temp file(s) whose writer is gone under %s", len(removed), root)
    return removed


def _due(last: dict[Any, float], key: Any, interval: float) -> bool:
    """Whether `key` was last swept over `interval` ago (marking it swept now if so); thread-safe."""
    with _sweep_lock:
        now = time.monotonic()
        then = last.get(key)
        if then is not None and now - then < interval:
            return False
        if len(last) >= _MAX_REMEMBERED:  # a long-lived process writes into ever new asset folders
            for old in [k for k, t in last.items() if now - t >= interval]:
                del last[old]
        last[key] = now
        return True


def sweep_once_in_a_while(root: Path, max_age_seconds: float = STALE_TEMP_AGE_SECONDS) -> None:
    """`sweep_stale_temp_files(root)` on the first call for `root` in this process, then at most once
    per `max_age_seconds` (a long-lived `imagegen serve`). Thread-safe: one caller sweeps, the others
    go on at once (they never need the sweep to finish: it only removes files nobody writes to)."""
    if not _due(_last_sweep, (root, max_age_seconds), max_age_seconds):
        return
    try:
        sweep_stale_temp_files(root, max_age_seconds)
    except OSError as exc:  # a sweep is housekeeping: it never fails a write
        log.warning("could not sweep stale temp files under %s: %s", root, exc)


def _sweep_before_writing(folder: Path) -> None:
    """The folder a write goes into, swept (not its subfolders) before the first write of this process
    into it and then at most once per STALE_TEMP_AGE_SECONDS: whatever a killed writer of the same
    target left there goes when the target is written again."""
    folder = Path(os.path.abspath(folder))
    if not _due(_last_write_sweep, folder, STALE_TEMP_AGE_SECONDS):
        return
    try:
        sweep_stale_temp_files(folder, recursive=False)
    except OSError as exc:
        log.warning("could not sweep stale temp files in %s: %s", folder, exc)
