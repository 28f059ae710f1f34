"""The local folder store: write-then-rename, and the sweep of temp files a killed writer left behind
(old ones go, fresh ones, which may be a live writer's, stay)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from imagegen import files
from imagegen.files import STALE_TEMP_AGE_SECONDS, sweep_stale_temp_files
from imagegen.providers.base import save_image_bytes
from imagegen.stores.local import LocalFolderStore


def leftover(folder: Path, name: str, age_seconds: float) -> Path:
    """A temp file as a writer killed `age_seconds` ago leaves it (mtime = its last write)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half a file")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "source.jpg"
    path.write_bytes(b"\xff\xd8 jpeg bytes")
    return path


def test_put_file_writes_through_a_temp_file_and_leaves_none(tmp_path, source):
    store = LocalFolderStore(tmp_path / "assets")
    stored = store.put_file("spring/mug-v01/web.jpg", source, "image/jpeg")
    assert stored.written and store.local_path(stored.key).read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "assets").rglob("*") if p.is_file()] == ["web.jpg"]


def test_replace_swaps_the_bytes_under_the_key_and_names_what_was_there(tmp_path, source):
    store = LocalFolderStore(tmp_path / "assets")
    first = store.put_file("spring/mug-v01/web.jpg", source, "image/jpeg")
    other = tmp_path / "other.jpg"
    other.write_bytes(b"\xff\xd8 other jpeg bytes")
    beside = store.put_file("spring/mug-v01/web.jpg", other, "image/jpeg")
    assert beside.key != first.key and beside.replaced_sha256 is None  # without replace: stored beside
    stored = store.put_file("spring/mug-v01/web.jpg", other, "image/jpeg", replace=True)
    assert (stored.key, stored.written, stored.replaced_sha256) == (first.key, True, first.sha256)
    assert store.local_path(first.key).read_bytes() == other.read_bytes()
    assert sorted(p.name for p in (tmp_path / "assets" / "spring" / "mug-v01").iterdir()) == sorted(
        ["web.jpg", beside.key.rsplit("/", 1)[1]]), "a temp file is left"


def test_first_use_removes_stale_temp_files_and_keeps_fresh_ones(tmp_path, source):
    root = tmp_path / "assets"
    stale = [leftover(root / "spring" / "mug-v01", ".incoming-k9kill", STALE_TEMP_AGE_SECONDS + 60),
             leftover(root / "spring" / "teapot-v02", ".incoming-older", 86_400)]
    in_flight = leftover(root / "spring" / "mug-v01", ".incoming-live", 5)  # another process is writing it
    almost = leftover(root / "spring", ".incoming-nine-minutes", STALE_TEMP_AGE_SECONDS - 60)
    others = [leftover(root / "spring" / "mug-v01", "web.jpg", 86_400),
              leftover(root / "spring", ".incoming", 86_400),  # not a temp file of ours (no '-')
              leftover(root / "spring", "notes.incoming-x", 86_400)]

    store = LocalFolderStore(root)
    assert all(p.exists() for p in stale), "building a store touches nothing (the CLI builds one to check a brief)"
    store.put_file("spring/mug-v01/feed.jpg", source, "image/jpeg")

    assert not any(p.exists() for p in stale)
    assert in_flight.exists() and almost.exists() and all(p.exists() for p in others)


def test_a_read_is_a_first_use_too(tmp_path):
    """A rerun that finds every file already stored writes nothing; it still sweeps."""
    stale = leftover(tmp_path / "assets" / "a", ".incoming-x", STALE_TEMP_AGE_SECONDS + 1)
    assert LocalFolderStore(tmp_path / "assets").stored_sha256("a/b.jpg") is None
    assert not stale.exists()


def test_a_process_sweeps_a_folder_once_per_stale_age(tmp_path, source):
    root = tmp_path / "assets"
    store = LocalFolderStore(root, stale_temp_age_seconds=30)
    store.put_file("a/one.jpg", source, "image/jpeg")  # first use: sweeps
    later = leftover(root / "a", ".incoming-later", 3_600)
    LocalFolderStore(root, stale_temp_age_seconds=30).put_file("a/two.jpg", source, "image/jpeg")
    assert later.exists(), "every task builds a store: walking the whole folder each time would be a cost per task"
    files._last_sweep[(root.resolve(), 30)] -= 31  # 31 s later
    store.put_file("a/three.jpg", source, "image/jpeg")
    assert not later.exists()


def test_sweep_uses_the_default_age_and_reports_what_it_removed(tmp_path):
    old = leftover(tmp_path / "x", ".incoming-old", STALE_TEMP_AGE_SECONDS + 1)
    young = leftover(tmp_path / "x", ".incoming-young", STALE_TEMP_AGE_SECONDS - 30)
    assert sweep_stale_temp_files(tmp_path) == [old]
    assert young.exists()
    assert sweep_stale_temp_files(tmp_path / "missing") == []


def test_sweep_does_not_follow_symlinked_folders(tmp_path):
    outside = leftover(tmp_path / "outside", ".incoming-theirs", 86_400)
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "link").symlink_to(tmp_path / "outside")
    assert sweep_stale_temp_files(tmp_path / "assets") == []
    assert outside.exists()


def test_a_failed_copy_leaves_no_temp_file(tmp_path):
    store = LocalFolderStore(tmp_path / "assets")
    with pytest.raises(FileNotFoundError):
        store.write("a/b.jpg", tmp_path / "does-not-exist.jpg", "image/jpeg")
    assert [p for p in (tmp_path / "assets").rglob("*") if p.is_file()] == []


def test_saving_a_provider_image_sweeps_the_masters_folder(tmp_path):
    masters = tmp_path / "masters"
    stale = leftover(masters, ".incoming-abc", STALE_TEMP_AGE_SECONDS + 1)
    fresh = leftover(masters, ".incoming-def", 1)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "PNG")
    ref = save_image_bytes(buffer.getvalue(), masters, provider="test")
    assert Path(ref.path).is_file()
    assert not stale.exists() and fresh.exists()


def test_preflight_probes_without_creating_or_leaving_anything(tmp_path):
    from imagegen.errors import StoreError

    LocalFolderStore(tmp_path / "out" / "assets").preflight()  # creatable: fine, and not created
    assert list(tmp_path.iterdir()) == []
    root = tmp_path / "assets"
    root.mkdir()
    LocalFolderStore(root).preflight()
    assert list(root.iterdir()) == [], "the write probe was left behind"
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    with pytest.raises(StoreError, match=f"^local store 'local': {afile} is a file, not a folder$"):
        LocalFolderStore(afile).preflight()
