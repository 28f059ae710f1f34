"""The size-set flow's master download (`fetch_master.fn`, imagegen.master_fetch): file:// URLs decoded,
private Supabase buckets and GitLab projects read with the store's credentials, the sha256 checked
before the file takes its name."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from imagegen.catalog.base import CatalogRow
from imagegen.errors import StoreError, TransientStoreError
from imagegen.master_fetch import fetch_master_file, file_url_path
from imagegen.models import sha256_file
from imagegen.stores.gitlab import GitLabUploadStore, JsonFileUploadIndex
from imagegen.stores.local import LocalFolderStore
from imagegen.stores.supabase import SupabaseStorageStore
from imagegen_flows.blocks.gitlab import GitLabCredentials, GitLabUploads
from imagegen_flows.blocks.storage import LocalAssetFolder
from imagegen_flows.blocks.supabase import SupabaseCredentials, SupabaseStorage
from imagegen_flows.tasks.fetch import fetch_master
from tests.emulators.gitlab import PROJECT_ID
from tests.stores.conftest import GITLAB_TOKEN, SUPABASE_KEY, make_gitlab_client, make_supabase_client

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")  # tests/stores/conftest.py

BUCKET = "media-assets"
KEY = "spring-launch/hero-1x1/master.png"


@pytest.fixture
def master(tmp_path) -> Path:
    path = tmp_path / "made" / "master.png"
    path.parent.mkdir()
    Image.new("RGB", (96, 64), (200, 90, 40)).save(path)
    return path


def row_for(master: Path, url: str, store: str) -> CatalogRow:
    return CatalogRow(campaign="spring-launch", asset_id="hero-1x1", variant="master", url=url, store=store,
                      store_key=KEY, width=96, height=64, format="PNG", bytes=master.stat().st_size,
                      sha256=sha256_file(master), prompt="a mug", provider="local", model="local-procedural-v1",
                      seed=7, status="published")


def folder_entries(folder: Path) -> list[str]:
    """Everything in the folder, temp files (dot names) included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_fetched(made, master: Path, masters: Path) -> None:
    assert made.image.sha256 == sha256_file(master)
    assert Path(made.image.path) == (masters / f"{sha256_file(master)}.png").resolve()
    assert folder_entries(masters) == [f"{sha256_file(master)}.png"]


# -- file:// ----------------------------------------------------------------------------------------

def test_file_urls_with_spaces_and_non_ascii_in_the_out_path_are_decoded(tmp_path, master):
    out = tmp_path / "Kampagne Frühling 2026" / "out dir #1 ü"
    store = LocalFolderStore(out / "assets")
    stored = store.put_file(KEY, master, "image/png")
    assert "%20" in stored.url and "%C3%BC" in stored.url  # what Path.as_uri() writes into the catalog
    row = row_for(master, stored.url, "local")

    by_url = fetch_master.fn(row, str(out / "masters"), [])  # no store of the brief holds it: its URL
    assert_fetched(by_url, master, out / "masters")
    block = LocalAssetFolder(path=str(out / "assets"), store_name="local")
    by_store = fetch_master.fn(row, str(out / "masters-2"), [block])
    assert_fetched(by_store, master, out / "masters-2")


def test_file_url_paths():
    assert file_url_path("file:///srv/out%20dir/K%C3%BCche/m.png") == Path("/srv/out dir/Küche/m.png")
    assert file_url_path("file://localhost/srv/a%23b.png") == Path("/srv/a#b.png")
    with pytest.raises(StoreError, match="host 'nas.example'"):
        file_url_path("file://nas.example/srv/m.png")


def test_a_missing_local_master_is_one_clear_error(tmp_path, master):
    row = row_for(master, (tmp_path / "gone dir" / "master.png").as_uri(), "local")
    with pytest.raises(StoreError) as caught:
        fetch_master.fn(row, str(tmp_path / "masters"), [])
    assert str(caught.value) == f"master hero-1x1: {tmp_path / 'gone dir' / 'master.png'} does not exist"
    assert folder_entries(tmp_path / "masters") == []


# -- a private Supabase bucket -------------------------------------------------------------------------

@pytest.fixture
def private_bucket(supabase_emu):
    emulator, base_url = supabase_emu
    emulator.public_buckets = set()
    block = SupabaseStorage(credentials=SupabaseCredentials(url=base_url, key=SUPABASE_KEY), bucket=BUCKET,
                            public=False)
    return emulator, base_url, block


def test_a_private_supabase_bucket_is_read_with_the_stores_credentials(private_bucket, tmp_path, master):
    emulator, base_url, block = private_bucket
    stored = SupabaseStorageStore(make_supabase_client(base_url), BUCKET, public=False).put_file(KEY, master,
                                                                                                "image/png")
    assert "/object/sign/" in stored.url
    emulator.expire_signed_urls()  # the catalogued signed URL has expired since the run that published it
    row = row_for(master, stored.url, "supabase")

    with pytest.raises(StoreError) as caught:  # the URL alone no longer answers
        fetch_master.fn(row, str(tmp_path / "masters"), [])
    assert str(caught.value).startswith("master hero-1x1: GET ") and "answered HTTP 400" in str(caught.value)
    assert "token=" not in str(caught.value)  # the signed URL's token stays out of messages
    public = row.model_copy(update={"url": f"{base_url}/storage/v1/object/public/{BUCKET}/{KEY}"})
    with pytest.raises(StoreError, match="answered HTTP 400"):  # a private bucket's public URL: 400 not_found
        fetch_master.fn(public, str(tmp_path / "masters"), [])

    made = fetch_master.fn(row, str(tmp_path / "masters"), [block])
    assert_fetched(made, master, tmp_path / "masters")
    downloads = emulator.calls_to("GET", f"/storage/v1/object/{BUCKET}/{KEY}")
    assert len(downloads) == 1 and downloads[0].headers["authorization"] == f"Bearer {SUPABASE_KEY}"


def test_a_sha256_mismatch_names_the_asset_and_both_hashes_and_leaves_nothing(private_bucket, tmp_path, master):
    emulator, base_url, block = private_bucket
    stored = SupabaseStorageStore(make_supabase_client(base_url), BUCKET, public=False).put_file(KEY, master,
                                                                                                "image/png")
    tampered = io.BytesIO()
    Image.new("RGB", (96, 64), (0, 0, 0)).save(tampered, "PNG")
    emulator.objects[(BUCKET, KEY)].data = tampered.getvalue()  # changed in the bucket after publishing
    row = row_for(master, stored.url, "supabase")
    masters = tmp_path / "masters"
    with pytest.raises(StoreError) as caught:
        fetch_master.fn(row, str(masters), [block])
    bad = hashlib.sha256(tampered.getvalue()).hexdigest()
    assert str(caught.value) == (f"master hero-1x1: the bytes read from store 'supabase' (key {KEY!r}) have sha256 "
                                 f"{bad}, but the catalog recorded {row.sha256}; the master is not used")
    assert not isinstance(caught.value, TransientStoreError)  # a retry would read the same bytes
    assert folder_entries(masters) == []  # no temp file, no file under the master's name


def test_a_damaged_file_under_the_masters_name_is_replaced_by_verified_bytes(private_bucket, tmp_path, master):
    emulator, base_url, block = private_bucket
    SupabaseStorageStore(make_supabase_client(base_url), BUCKET, public=False).put_file(KEY, master, "image/png")
    row = row_for(master, "https://unused.example/master.png", "supabase")
    masters = tmp_path / "masters"
    masters.mkdir()
    (masters / f"{row.sha256}.png").write_bytes(master.read_bytes()[:100])  # truncated
    assert_fetched(fetch_master.fn(row, str(masters), [block]), master, masters)
    emulator.calls.clear()
    assert_fetched(fetch_master.fn(row, str(masters), [block]), master, masters)
    assert emulator.calls == []  # a file whose bytes match is used as it is


# -- a private GitLab project ---------------------------------------------------------------------------

@pytest.mark.parametrize("recorded_id", [True, False], ids=["by-upload-id", "by-secret-and-filename"])
def test_a_private_gitlab_project_is_read_through_the_api_with_the_token(gitlab_emu, tmp_path, master, recorded_id):
    emulator, base_url = gitlab_emu
    emulator.private = True
    index = tmp_path / "gitlab-uploads.json"
    store = GitLabUploadStore(make_gitlab_client(base_url), PROJECT_ID, index=JsonFileUploadIndex(index))
    stored = store.put_file(KEY, master, "image/png")
    if not recorded_id:  # an index read from the catalog knows the URL, not the upload id
        record = JsonFileUploadIndex(index).get(KEY)
        JsonFileUploadIndex(index).put(KEY, record.__class__(url=record.url, sha256=record.sha256))
    row = row_for(master, stored.url, "gitlab")

    # anonymously, the upload's URL ends on the sign-in page: bytes, but not the master's
    with pytest.raises(StoreError, match=r"master hero-1x1: the bytes read from .* have sha256 [0-9a-f]{64}, but"):
        fetch_master.fn(row, str(tmp_path / "masters"), [])
    assert folder_entries(tmp_path / "masters") == []

    block = GitLabUploads(credentials=GitLabCredentials(url=base_url, token=GITLAB_TOKEN), project=str(PROJECT_ID),
                          index_path=str(index))
    made = fetch_master.fn(row, str(tmp_path / "masters"), [block])
    assert_fetched(made, master, tmp_path / "masters")
    api = emulator.calls_to("GET", "/api/v4/projects/4242/uploads/")
    assert len(api) == 1 and api[0].headers["private-token"] == GITLAB_TOKEN


def test_a_private_gitlab_package_file_is_read_with_the_token(gitlab_emu, tmp_path, master):
    emulator, base_url = gitlab_emu
    emulator.private = True
    store = GitLabUploadStore(make_gitlab_client(base_url), PROJECT_ID, mode="generic_packages")
    stored = store.put_file(KEY, master, "image/png")
    row = row_for(master, stored.url, "gitlab")
    with pytest.raises(StoreError, match="answered HTTP 404"):
        fetch_master.fn(row, str(tmp_path / "masters"), [])
    block = GitLabUploads(credentials=GitLabCredentials(url=base_url, token=GITLAB_TOKEN), project=str(PROJECT_ID),
                          mode="generic_packages")
    assert_fetched(fetch_master.fn(row, str(tmp_path / "masters"), [block]), master, tmp_path / "masters")


def test_a_store_that_cannot_find_the_key_says_so(gitlab_emu, tmp_path, master):
    _, base_url = gitlab_emu
    block = GitLabUploads(credentials=GitLabCredentials(url=base_url, token=GITLAB_TOKEN), project=str(PROJECT_ID),
                          index_path=str(tmp_path / "empty-index.json"))
    row = row_for(master, "https://unused.example/master.png", "gitlab")
    with pytest.raises(StoreError, match=f"master hero-1x1: no GitLab upload is recorded for GitLab project "
                                         f"'{PROJECT_ID}', key '{KEY}'"):
        fetch_master.fn(row, str(tmp_path / "masters"), [block])


def test_the_size_cap_stops_an_oversized_download(tmp_path, master):
    with pytest.raises(StoreError, match="is over 100 bytes"):
        fetch_master_file("hero-1x1", sha256_file(master), master.as_uri(), tmp_path / "m" / "x.png", limit=100)
    assert folder_entries(tmp_path / "m") == []
