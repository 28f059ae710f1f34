"""Failures say what went wrong first: a step that stored files and then failed removes them again,
re-raising its own error; a store that refuses the removal is a second error noted beside the first
(imagegen.rollback), never the one reported. Core functions and the publish tasks' `.fn`, on local
folder stores whose HEAD check or delete is made to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.errors import StoreError, TransientStoreError
from imagegen.models import StoredObject
from imagegen.publishing import RenderedSet, RenderedVariant, store_variant
from imagegen.rollback import left_behind, remove_written, removed_on_failure, second_error_line
from imagegen.stores.base import SizeRouter
from imagegen.stores.local import LocalFolderStore


class FlakyStore(LocalFolderStore):
    """A local folder whose HEAD check, deletes, URLs or writes can be made to fail."""

    def __init__(self, root: Path, *, head_fails: bool = False, refuse_delete: bool = False,
                 url_fails: bool = False, refuse_write_of: str | None = None):
        super().__init__(root)
        self.head_fails, self.refuse_delete, self.url_fails = head_fails, refuse_delete, url_fails
        self.refuse_write_of = refuse_write_of

    def verify(self, key: str) -> bool:
        if self.head_fails:
            raise TransientStoreError(f"verifying {key}: HEAD of the published URL answered HTTP 503")
        return super().verify(key)

    def delete(self, key: str) -> None:
        if self.refuse_delete:
            raise StoreError(f"deleting {key}: HTTP 403 not allowed")
        super().delete(key)

    def url_for(self, key: str) -> str:
        if self.url_fails:
            raise StoreError(f"signing a URL for {key}: HTTP 500")
        return super().url_for(key)

    def write(self, key: str, path: Path, content_type: str) -> None:
        if self.refuse_write_of and self.refuse_write_of in key:
            raise StoreError(f"uploading to {key}: HTTP 400 refused")
        super().write(key, path, content_type)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


class Block:
    """What the publish tasks ask of a store block."""

    def __init__(self, store):
        self.store = store

    def get_store(self):
        return self.store


def variant(tmp_path: Path, name: str, payload: bytes = b"") -> RenderedVariant:
    path = tmp_path / "render" / f"{name}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 pretend jpeg " + name.encode() + payload)
    return RenderedVariant(variant=name, platform="web", path=str(path), width=10, height=10, format="JPEG",
                           bytes=path.stat().st_size)


def stored(store: LocalFolderStore, key: str, written: bool = True) -> StoredObject:
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.encode())
    return StoredObject(store=store.name, key=key, url="", sha256="0" * 64, bytes=1, content_type="image/png",
                        written=written)


def test_remove_written_tries_every_file_and_reports_what_it_left(tmp_path):
    keep = LocalFolderStore(tmp_path / "a", name="a")
    refusing = FlakyStore(tmp_path / "b", refuse_delete=True)
    refusing.name = "b"
    objects = [stored(keep, "c/x/one.png"), stored(refusing, "c/x/two.png"), stored(keep, "c/x/three.png"),
               stored(keep, "c/x/there-before.png", written=False)]
    left = remove_written(objects, {"a": keep, "b": refusing})
    assert [(item.store, item.key) for item in left] == [("b", "c/x/two.png")]
    assert "HTTP 403" in left[0].reason and not left[0].transient
    assert sorted(p.name for p in keep.root.rglob("*.png")) == ["there-before.png"], "removal stopped early"


def test_a_failed_block_raises_its_own_error_with_the_failed_removal_beside_it(tmp_path):
    store = FlakyStore(tmp_path / "s", refuse_delete=True)
    written = [stored(store, "c/x/one.png")]
    first = ValueError("the catalog refused the rows")
    with pytest.raises(ValueError) as caught:
        with removed_on_failure(written, {store.name: store}):
            raise first
    assert caught.value is first
    assert [item.key for item in left_behind(caught.value)] == ["c/x/one.png"]
    line = second_error_line(caught.value, left_behind(caught.value), "publishing x")
    assert line.startswith("publishing x failed (ValueError)") and "c/x/one.png" in line and "HTTP 403" in line


def test_a_file_whose_head_check_fails_is_removed_again(tmp_path):
    store = FlakyStore(tmp_path / "s", head_fails=True)
    router = SizeRouter(small=store, large=store)
    with pytest.raises(TransientStoreError, match="HEAD"):
        store_variant(variant(tmp_path, "feed"), campaign="c", asset_id="x", router=router)
    assert store.files() == [], "the file stored before its HEAD check failed was left as an orphan"
    store.head_fails = False  # the retry stores it again, as its own write
    published = store_variant(variant(tmp_path, "feed"), campaign="c", asset_id="x", router=router)
    assert published.stored.written and published.verified and store.files() == ["c/x/feed.jpg"]


def test_a_head_failure_stays_the_reported_error_when_the_removal_fails_too(tmp_path):
    store = FlakyStore(tmp_path / "s", head_fails=True, refuse_delete=True)
    router = SizeRouter(small=store, large=store)
    with pytest.raises(TransientStoreError, match="HEAD") as caught:
        store_variant(variant(tmp_path, "feed"), campaign="c", asset_id="x", router=router)
    assert [item.line() for item in left_behind(caught.value)] == [
        "local:c/x/feed.jpg (StoreError: deleting c/x/feed.jpg: HTTP 403 not allowed)"]


def test_a_url_that_cannot_be_made_after_the_write_removes_the_write(tmp_path):
    store = FlakyStore(tmp_path / "s", url_fails=True)
    source = variant(tmp_path, "feed")
    with pytest.raises(StoreError, match="signing"):
        store.put_file("c/x/feed.jpg", Path(source.path), "image/jpeg")
    assert store.files() == []


def test_publish_master_removes_its_files_and_reports_the_first_failure(tmp_path, monkeypatch):
    from imagegen_flows.tasks.publish import publish_master

    store = FlakyStore(tmp_path / "s", refuse_write_of="banner", refuse_delete=True)
    rendered = RenderedSet(directory=str(tmp_path / "render"), master_sha256="0" * 64,
                           variants=[variant(tmp_path, "feed"), variant(tmp_path, "banner")])
    with pytest.raises(StoreError, match="uploading to c/x/banner.jpg") as caught:
        publish_master.fn(rendered, "c", "x", Block(store), Block(store), threshold_bytes=10**9)
    assert [item.key for item in left_behind(caught.value)] == ["c/x/feed.jpg"]  # refused: listed, not lost

    store.refuse_delete = False
    with pytest.raises(StoreError, match="uploading to c/x/banner.jpg") as caught:
        publish_master.fn(rendered, "c", "x", Block(store), Block(store), threshold_bytes=10**9)
    assert left_behind(caught.value) == []
    assert store.files() == ["c/x/feed.jpg"], "the first attempt's leftover stays (its removal was refused)"


def test_quarantine_removes_the_master_and_reasons_when_its_check_fails(tmp_path):
    from PIL import Image

    from imagegen.models import GeneratedImage, ImageRef
    from imagegen_flows.tasks.publish import quarantine_master

    image = tmp_path / "master.png"
    Image.new("RGB", (8, 8), "red").save(image)
    master = GeneratedImage(image=ImageRef.from_file(image), provider="local", model="m", seed=1, generation_ms=1)
    store = FlakyStore(tmp_path / "q", head_fails=True)
    with pytest.raises(TransientStoreError):
        quarantine_master.fn(master, "c", "x", "p", [{"gate": "resolution"}], Block(store))
    assert store.files() == [], "the quarantined master or its reasons.json was left without a row"
    store.head_fails = False
    result = quarantine_master.fn(master, "c", "x", "p", [{"gate": "resolution"}], Block(store))
    assert result.files[0].verified and store.files() == ["c/x/master.png", "c/x/reasons.json"]
