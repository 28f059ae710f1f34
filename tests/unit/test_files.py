"""imagegen.files: atomic writes with the umask's modes that leave no temp file on any failure, and
the sweep that removes temp files whose writer is gone while keeping a live writer's."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imagegen import files
from imagegen.files import (
    STALE_TEMP_AGE_SECONDS,
    copy_atomically,
    open_atomically,
    open_text_atomically,
    sweep_stale_temp_files,
    temp_name,
    transient_file,
    write_atomically,
    writer_alive,
)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leftover(folder: Path, name: str, age_seconds: float = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half a file")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


class FullDisk:
    """A file object whose writes fail with ENOSPC once `room` bytes are written (a real partial write)."""

    def __init__(self, fh, room: int):
        self._fh, self._room = fh, room

    def write(self, data) -> int:
        if len(data) > self._room:
            self._fh.write(data[:self._room])
            self._room = 0
            self._fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def failing_temp_files(monkeypatch, wrapper) -> None:
    """Every temp file imagegen.files opens from now on is wrapped in `wrapper` (other files are not)."""
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        fh = real(fd, *args, **kwargs)
        return wrapper(fh) if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") else fh

    monkeypatch.setattr(files.os, "fdopen", fdopen)


@pytest.fixture
def full_disk(monkeypatch):
    """Every temp file imagegen.files opens from now on takes 10 bytes, then the disk is full."""
    failing_temp_files(monkeypatch, lambda fh: FullDisk(fh, 10))


# --------------------------------------------------------------------------- writes

@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                      (0o077, 0o600, 0o700)], ids=["022", "027", "077"])
def test_files_and_folders_get_the_modes_open_and_mkdir_give(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        write_atomically(tmp_path / "a" / "b" / "one.jpg", b"jpeg")
        copy_atomically(tmp_path / "a" / "b" / "one.jpg", tmp_path / "c" / "two.jpg")
        with open_text_atomically(tmp_path / "page.html", encoding="utf-8") as fh:
            fh.write("<p>")
        with open(tmp_path / "plain.txt", "w"):
            pass
    assert mode(tmp_path / "plain.txt") == file_mode
    for path in ("a/b/one.jpg", "c/two.jpg", "page.html"):
        assert mode(tmp_path / path) == file_mode, path
    for path in ("a", "a/b", "c"):
        assert mode(tmp_path / path) == dir_mode, path


def test_a_write_replaces_the_file_in_one_step_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "gallery.html"
    target.write_text("old")
    os.chmod(target, 0o600)  # as the 0600 files of earlier versions
    with open_text_atomically(target, encoding="utf-8") as fh:
        fh.write("new ")
        assert target.read_text() == "old", "a reader sees the old file until the write is done"
        [tmp] = [p for p in tmp_path.iterdir() if p != target]
        assert tmp.name.startswith(".gallery.html.") and tmp.name.endswith(".tmp")
        fh.write("café")
    assert target.read_bytes() == "new café".encode()
    assert mode(target) == 0o666 & ~_current_umask()
    assert everything(tmp_path) == ["gallery.html"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_text_writes_give_the_same_bytes_as_write_text(tmp_path):
    text = '{"prompt": "ein Café 東京", "n": 1}\n'
    (tmp_path / "plain.json").write_text(text)
    with open_text_atomically(tmp_path / "atomic.json") as fh:
        fh.write(text)
    assert (tmp_path / "atomic.json").read_bytes() == (tmp_path / "plain.json").read_bytes()


@pytest.mark.parametrize("write", [
    pytest.param(lambda target, source: write_atomically(target, b"x" * 4096), id="bytes"),
    pytest.param(lambda target, source: copy_atomically(source, target), id="copy"),
    pytest.param(lambda target, source: _stream(target), id="stream"),
])
def test_a_full_disk_midway_leaves_no_temp_file_and_the_error_goes_on(tmp_path, full_disk, write):
    source = tmp_path / "src" / "master.png"
    source.parent.mkdir()
    source.write_bytes(b"p" * 4096)
    target = tmp_path / "out" / "web.jpg"
    target.parent.mkdir()
    target.write_bytes(b"the old file")
    with pytest.raises(OSError) as raised:
        write(target, source)
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"the old file"
    assert everything(tmp_path / "out") == ["web.jpg"]


def _stream(target: Path) -> None:
    with open_atomically(target) as fh:
        for _ in range(8):
            fh.write(b"chunk" * 100)


def test_an_error_in_the_writer_or_the_rename_leaves_no_temp_file(tmp_path):
    with pytest.raises(ValueError, match="over the cap"):
        with open_atomically(tmp_path / "download.png") as fh:
            fh.write(b"some bytes")
            raise ValueError("over the cap")
    with pytest.raises(KeyboardInterrupt):
        with open_atomically(tmp_path / "download.png") as fh:
            raise KeyboardInterrupt
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "a-folder", b"cannot replace a folder")
    assert everything(tmp_path) == ["a-folder"]


def test_a_flush_that_fails_when_the_file_closes_leaves_no_temp_file(tmp_path, monkeypatch):
    class FailingClose(FullDisk):
        def __exit__(self, *exc):
            self._fh.close()
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    failing_temp_files(monkeypatch, lambda fh: FailingClose(fh, 1 << 20))
    with pytest.raises(OSError, match="quota"):
        write_atomically(tmp_path / "x.png", b"bytes")
    assert everything(tmp_path) == []


def test_concurrent_writers_of_one_target_never_show_half_a_file(tmp_path):
    target = tmp_path / "index.json"
    contents = [bytes([65 + i]) * 200_000 for i in range(6)]
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=lambda data=data: [write_atomically(target, data) for _ in range(5)])
               for data in contents]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert seen <= set(contents) and target.read_bytes() in contents
    assert everything(tmp_path) == ["index.json"]


def test_a_transient_file_is_private_and_gone_after_its_block(tmp_path):
    with transient_file(b'{"reasons": []}', suffix=".json") as path:
        assert path.read_bytes() == b'{"reasons": []}' and mode(path) == 0o600
    assert not path.exists()
    with pytest.raises(RuntimeError), transient_file(b"x") as path:
        raise RuntimeError
    assert not path.exists()


def test_temp_names_say_who_writes_them():
    name = temp_name("web_1024.jpg")
    assert name.startswith(f".web_1024.jpg.{os.getpid()}.") and name.endswith(".tmp")
    assert files._TEMP_NAME.match(name)["pid"] == str(os.getpid())
    assert temp_name("web_1024.jpg") != name, "two writes of one target never share a temp file"
    assert len(temp_name("x" * 255)) <= 255


# --------------------------------------------------------------------------- the sweep

def test_a_dead_writers_temp_file_goes_at_once_and_a_live_ones_stays(tmp_path):
    dead = leftover(tmp_path / "a", temp_name("web.jpg", pid=dead_pid()))
    live = leftover(tmp_path / "a", temp_name("feed.jpg"), age_seconds=86_400)  # slow, but alive
    assert sweep_stale_temp_files(tmp_path) == [dead]
    assert live.exists()


def test_a_reused_pid_does_not_keep_a_leftover_alive(tmp_path):
    """The pid runs (it is ours), but the process behind it started at another time than the writer."""
    name = temp_name("web.jpg")
    assert files._TEMP_NAME.match(name)["start"] != "0", "this test needs /proc (Linux)"
    reused = leftover(tmp_path, name.replace(f"-{files._start_of(os.getpid())}.", "-12345."))
    assert sweep_stale_temp_files(tmp_path) == [reused]


def test_a_zombie_writer_is_dead():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while (files._read_process_stat(process.pid) or ("Z", 0))[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not writer_alive(process.pid, 0), "exited, not yet reaped"
    finally:
        process.wait()
    assert not writer_alive(dead_pid(), 0)
    assert writer_alive(os.getpid(), files._start_of(os.getpid()))


def test_temp_files_without_a_writer_to_ask_go_after_ten_minutes(tmp_path):
    """Earlier versions' temp names and another host's temp files: only their age can tell."""
    def other_host(name: str) -> str:
        return temp_name(name).replace(f".{files._HOST}-", ".0badc0de-")

    old = [leftover(tmp_path / "assets", ".incoming-k9kill", STALE_TEMP_AGE_SECONDS + 60),
           leftover(tmp_path, "gallery.tmp", STALE_TEMP_AGE_SECONDS + 60),
           leftover(tmp_path / "masters", f"{'ab' * 32}.part", STALE_TEMP_AGE_SECONDS + 60),
           leftover(tmp_path / "masters" / ".ledger", f"{'cd' * 32}.tmp", STALE_TEMP_AGE_SECONDS + 60),
           leftover(tmp_path, ".gitlab-index-x1y2", STALE_TEMP_AGE_SECONDS + 60),
           leftover(tmp_path / "assets", other_host("web.jpg"), STALE_TEMP_AGE_SECONDS + 60)]
    young = [leftover(tmp_path / "assets", ".incoming-live", 5),
             leftover(tmp_path, "gallery.tmp.young.tmp", STALE_TEMP_AGE_SECONDS - 60),
             leftover(tmp_path / "assets", other_host("feed.jpg"), 5)]
    others = [leftover(tmp_path / "assets", "web.jpg", 86_400), leftover(tmp_path, ".incoming", 86_400),
              leftover(tmp_path, "notes.incoming-x", 86_400), leftover(tmp_path, "catalog.db", 86_400)]
    assert sorted(sweep_stale_temp_files(tmp_path)) == sorted(old)
    assert all(p.exists() for p in young + others)


def test_a_folder_sweep_leaves_subfolders_alone(tmp_path):
    top = leftover(tmp_path, temp_name("gallery.html", pid=dead_pid()))
    below = leftover(tmp_path / "masters", temp_name("m.png", pid=dead_pid()))
    assert sweep_stale_temp_files(tmp_path, recursive=False) == [top]
    assert below.exists()


def test_the_first_write_into_a_folder_sweeps_it_of_dead_writers_leftovers(tmp_path):
    dead = leftover(tmp_path / "out", temp_name("gallery.html", pid=dead_pid()))
    live = leftover(tmp_path / "out", temp_name("gallery.html"))
    deeper = leftover(tmp_path / "out" / "masters", temp_name("m.png", pid=dead_pid()))
    write_atomically(tmp_path / "out" / "gallery.html", b"<html>")
    assert not dead.exists() and live.exists() and deeper.exists()
    again = leftover(tmp_path / "out", temp_name("run.json", pid=dead_pid()))
    write_atomically(tmp_path / "out" / "gallery.html", b"<html>")
    assert again.exists(), "one sweep per folder and process (then once per stale age), not one per write"
