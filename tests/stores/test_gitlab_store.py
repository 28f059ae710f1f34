"""GitLabUploadStore with the real python-gitlab client against the loopback GitLab emulator."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from imagegen.errors import StoreError, TransientStoreError, is_transient
from imagegen.models import sha256_file
from imagegen.stores.base import SizeRouter, conflict_key
from imagegen.stores.gitlab import (
    CatalogUploadIndex,
    GitLabUploadStore,
    JsonFileUploadIndex,
    UploadRecord,
    package_coordinates,
)
from imagegen.stores.supabase import SupabaseStorageStore
from tests.emulators.gitlab import PROJECT_ID, PROJECT_PATH
from tests.stores.conftest import GITLAB_TOKEN, SECRETS, make_gitlab_client, make_supabase_client

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")  # tests/stores/conftest.py

KEY = "spring-2026/hero/master.png"


def assert_clean(exc: BaseException) -> None:
    while exc is not None:
        for secret in SECRETS:
            assert secret not in str(exc)
        exc = exc.__cause__


def write_file(path: Path, size: int) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8))
    return path


@pytest.fixture
def png(tmp_path) -> Path:
    return write_file(tmp_path / "master.png", 6000)


def make_store(base_url: str, project=PROJECT_ID, **kwargs) -> GitLabUploadStore:
    timeout = kwargs.pop("timeout", 5.0)
    return GitLabUploadStore(make_gitlab_client(base_url, timeout=timeout), project, **kwargs)


# -- uploads mode ----------------------------------------------------------------------------------

def test_upload_gives_the_absolute_url_from_full_path(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    stored = store.put_file(KEY, png, "image/png")

    (upload,) = emulator.uploads.values()
    assert stored.written and stored.store == "gitlab"
    assert stored.url == f"{base_url}/-/project/{PROJECT_ID}/uploads/{upload.secret}/spring-2026_hero_master.png"
    assert upload.data == png.read_bytes()
    assert emulator.calls_to("POST", "/uploads")[0].headers["private-token"] == GITLAB_TOKEN
    assert httpx.get(stored.url).content == png.read_bytes()
    assert store.verify(KEY) is True


def test_without_full_path_the_url_is_web_url_plus_url(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    emulator.full_path_style = "absent"
    stored = make_store(base_url).put_file(KEY, png, "image/png")
    (upload,) = emulator.uploads.values()
    assert stored.url == f"{base_url}/{PROJECT_PATH}/uploads/{upload.secret}/spring-2026_hero_master.png"
    assert httpx.head(stored.url).status_code == 200


def test_project_by_path_is_fetched_once_then_addressed_by_id(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url, project=PROJECT_PATH)
    store.put_file(KEY, png, "image/png")
    store.put_file("spring-2026/hero/other.png", png, "image/png")
    assert len(emulator.calls_to("GET", "/api/v4/projects/")) == 1
    assert {c.path for c in emulator.calls_to("POST", "/uploads")} == {f"/api/v4/projects/{PROJECT_ID}/uploads"}


def test_rerun_with_a_persistent_index_uploads_nothing(gitlab_emu, png, tmp_path):
    emulator, base_url = gitlab_emu
    index_file = tmp_path / "gitlab-index.json"
    first = make_store(base_url, index=JsonFileUploadIndex(index_file)).put_file(KEY, png, "image/png")
    again = make_store(base_url, index=JsonFileUploadIndex(index_file)).put_file(KEY, png, "image/png")
    assert again.written is False and again.url == first.url
    assert len(emulator.calls_to("POST", "/uploads")) == 1


def test_different_bytes_under_a_taken_key_are_stored_beside(gitlab_emu, png, tmp_path):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    first = store.put_file(KEY, png, "image/png")
    other = write_file(tmp_path / "other.png", 6000)
    stored = store.put_file(KEY, other, "image/png")
    assert stored.written and stored.key == conflict_key(KEY, sha256_file(other))
    assert store.url_for(KEY) == first.url and httpx.get(first.url).content == png.read_bytes()
    assert httpx.get(stored.url).content == other.read_bytes()


def test_replace_uploads_the_new_file_then_deletes_the_old_upload(gitlab_emu, png, tmp_path):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    first = store.put_file(KEY, png, "image/png")
    other = write_file(tmp_path / "other.png", 6000)
    stored = store.put_file(KEY, other, "image/png", replace=True)
    assert stored.written and stored.key == KEY and stored.replaced_sha256 == first.sha256
    assert [u.data for u in emulator.uploads.values()] == [other.read_bytes()], "the old upload is left"
    assert httpx.get(stored.url).content == other.read_bytes() and httpx.get(first.url).status_code == 404
    assert store.stored_sha256(KEY) == sha256_file(other)


def test_catalog_rows_serve_as_the_index(gitlab_emu, png):
    from imagegen.catalog.base import CatalogRow

    emulator, base_url = gitlab_emu
    stored = make_store(base_url).put_file(KEY, png, "image/png")

    class OneRowCatalog:
        def rows(self, campaign=None):
            return [CatalogRow(campaign="spring-2026", asset_id="hero", variant="master", url=stored.url,
                               store="gitlab", store_key=KEY, width=8, height=8, format="PNG", bytes=6000,
                               sha256=stored.sha256, prompt="p", provider="local", model="m", seed=1,
                               status="published")]

    store = make_store(base_url, index=CatalogUploadIndex(OneRowCatalog()))
    assert store.put_file(KEY, png, "image/png").written is False
    store.delete(KEY)  # no upload id in the catalog: deleted by secret and file name
    (delete,) = emulator.calls_to("DELETE", "/uploads/")
    assert delete.path.endswith("/spring-2026_hero_master.png")
    assert not emulator.uploads and store.stored_sha256(KEY) is None


def test_delete_is_idempotent(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    stored = store.put_file(KEY, png, "image/png")
    upload_id = next(iter(emulator.uploads))
    store.delete(KEY)
    store.delete(KEY)
    assert [c.path for c in emulator.calls_to("DELETE", "/uploads/")] == [
        f"/api/v4/projects/{PROJECT_ID}/uploads/{upload_id}"]
    assert httpx.get(stored.url).status_code == 404
    # an index entry whose upload is already gone (deleted elsewhere): 404 is tolerated
    store.index.put(KEY, UploadRecord(url=stored.url, sha256=stored.sha256, upload_id=upload_id))
    store.delete(KEY)
    assert store.index.get(KEY) is None


# -- errors ----------------------------------------------------------------------------------------

def test_over_the_attachment_limit_is_a_clear_error(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    emulator.max_attachment_bytes = 1000
    with pytest.raises(StoreError, match="file of 6000 bytes is over the GitLab instance's attachment limit") as caught:
        make_store(base_url).put_file(KEY, png, "image/png")
    assert not is_transient(caught.value)


def test_rejected_token_is_a_clear_error_without_the_token(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    emulator.token = "glpat-the-right-one"
    with pytest.raises(StoreError, match="rejected the token") as caught:
        make_store(base_url).put_file(KEY, png, "image/png")
    assert not is_transient(caught.value) and "GITLAB_TOKEN" in str(caught.value)
    assert_clean(caught.value)


def test_a_passing_5xx_is_retried_by_python_gitlab(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    store.project()
    emulator.faults.fail_next(502, times=2)
    assert store.put_file(KEY, png, "image/png").written
    assert len(emulator.calls_to("POST", "/uploads")) == 3


def test_persistent_5xx_is_transient_after_bounded_retries(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url, max_retries=2)
    store.project()
    emulator.faults.fail_next(503, times=10)
    with pytest.raises(TransientStoreError) as caught:
        store.put_file(KEY, png, "image/png")
    assert is_transient(caught.value)
    assert_clean(caught.value)
    assert len(emulator.calls_to("POST", "/uploads")) == 3


def test_429_honours_retry_after(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url)
    store.project()
    emulator.faults.fail_next(429, times=1, body={"message": "Retry later"}, headers={"Retry-After": "1"})
    started = time.monotonic()
    assert store.put_file(KEY, png, "image/png").written
    assert time.monotonic() - started >= 1.0
    assert len(emulator.calls_to("POST", "/uploads")) == 2


def test_outage_and_slow_server_are_transient(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    emulator.faults.outage = True
    with pytest.raises(TransientStoreError):
        make_store(base_url, max_retries=1).put_file(KEY, png, "image/png")
    emulator.faults.outage = False
    emulator.faults.delay_seconds = 1.0
    with pytest.raises(TransientStoreError, match="transport error"):
        make_store(base_url, max_retries=0, timeout=0.3).put_file(KEY, png, "image/png")


# -- generic packages mode -------------------------------------------------------------------------

def test_generic_packages_address_files_by_key(gitlab_emu, png, tmp_path):
    emulator, base_url = gitlab_emu
    store = make_store(base_url, mode="generic_packages", package_name="imagegen-assets")
    stored = store.put_file(KEY, png, "image/png")

    assert package_coordinates(KEY) == ("spring-2026", "hero__master.png")
    assert stored.url == (f"{base_url}/api/v4/projects/{PROJECT_ID}/packages/generic/imagegen-assets/"
                          "spring-2026/hero__master.png")
    assert httpx.get(stored.url).content == png.read_bytes()
    assert store.verify(KEY) is True
    # a new store object (another machine) recognises the file from GitLab's own sha256
    again = make_store(base_url, mode="generic_packages").put_file(KEY, png, "image/png")
    assert again.written is False and len(emulator.calls_to("PUT", "/packages/generic/")) == 1

    other = write_file(tmp_path / "other.png", 6000)
    beside = store.put_file(KEY, other, "image/png")
    assert beside.key == conflict_key(KEY, sha256_file(other))
    assert httpx.get(stored.url).content == png.read_bytes()


def test_generic_packages_replace_keeps_only_the_new_file(gitlab_emu, png, tmp_path):
    emulator, base_url = gitlab_emu
    store = make_store(base_url, mode="generic_packages")
    first = store.put_file(KEY, png, "image/png")
    other = write_file(tmp_path / "other.png", 6000)
    stored = store.put_file(KEY, other, "image/png", replace=True)
    assert stored.key == KEY and stored.replaced_sha256 == first.sha256
    assert [f.data for f in emulator.package_files.values()] == [other.read_bytes()]
    assert httpx.get(stored.url).content == other.read_bytes()


def test_generic_packages_hash_by_download_when_gitlab_reports_none(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    emulator.report_sha256 = False
    store = make_store(base_url, mode="generic_packages")
    store.put_file(KEY, png, "image/png")
    assert store.stored_sha256(KEY) == hashlib.sha256(png.read_bytes()).hexdigest()
    assert store.put_file(KEY, png, "image/png").written is False


def test_generic_packages_delete_is_idempotent(gitlab_emu, png):
    emulator, base_url = gitlab_emu
    store = make_store(base_url, mode="generic_packages")
    store.put_file(KEY, png, "image/png")
    store.delete(KEY)
    store.delete(KEY)
    assert not emulator.package_files and store.stored_sha256(KEY) is None and store.verify(KEY) is False


def test_generic_packages_refuse_ambiguous_keys(gitlab_emu):
    _, base_url = gitlab_emu
    with pytest.raises(StoreError, match="generic package path"):
        make_store(base_url, mode="generic_packages").url_for("campaign/a__b/c.png")


# -- routing and blocks ----------------------------------------------------------------------------

def test_size_router_sends_large_files_to_gitlab_and_small_ones_to_supabase(gitlab_emu, supabase_emu, tmp_path):
    gitlab_emulator, gitlab_url = gitlab_emu
    supabase_emulator, supabase_url = supabase_emu
    router = SizeRouter(small=SupabaseStorageStore(make_supabase_client(supabase_url), "media-assets"),
                        large=make_store(gitlab_url))
    large = write_file(tmp_path / "large.png", 2_100_000)
    small = write_file(tmp_path / "small.png", 50_000)

    for path in (large, small):
        size = path.stat().st_size
        router.store_for(size).put_file(f"spring-2026/hero/{path.name}", path, "image/png")

    assert [u.data for u in gitlab_emulator.uploads.values()] == [large.read_bytes()]
    assert list(supabase_emulator.objects) == [("media-assets", "spring-2026/hero/small.png")]


def test_block_builds_a_working_store_and_hides_the_token(gitlab_emu, png, tmp_path):
    from imagegen_flows.blocks.gitlab import GitLabCredentials, GitLabUploads

    _, base_url = gitlab_emu
    block = GitLabUploads(credentials=GitLabCredentials(url=base_url, token=GITLAB_TOKEN), project=PROJECT_PATH,
                          index_path=str(tmp_path / "index.json"))
    assert GITLAB_TOKEN not in repr(block)
    assert block.get_store().put_file(KEY, png, "image/png").written
    assert block.get_store().put_file(KEY, png, "image/png").written is False


def test_index_instances_on_one_file_lose_no_update(tmp_path):
    """Every publish task opens its own store, so several index instances share one file: puts and
    removes from many threads (and the lock file, from other processes) must all land. A lost
    remove would leave a record of a deleted upload, and the next run would skip uploading it."""
    import threading

    index_file = tmp_path / "gitlab-index.json"
    keys = [f"c/a{i}/feed.jpg" for i in range(24)]
    barrier = threading.Barrier(len(keys))

    def put_then_remove(key: str, remove: bool) -> None:
        index = JsonFileUploadIndex(index_file)
        barrier.wait()
        index.put(key, UploadRecord(url=f"https://gl/{key}", sha256="a" * 64, upload_id=1))
        if remove:
            index.remove(key)

    threads = [threading.Thread(target=put_then_remove, args=(k, i % 2 == 0)) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = JsonFileUploadIndex(index_file)
    assert sorted(k for k in keys if left.get(k)) == sorted(keys[1::2])
