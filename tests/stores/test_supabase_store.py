"""SupabaseStorageStore with the real supabase-py client against the loopback Supabase emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from imagegen.errors import StoreError, TransientStoreError, is_transient
from imagegen.models import sha256_file
from imagegen.stores.base import conflict_key
from imagegen.stores.supabase import SupabaseStorageStore
from tests.emulators.common import parse_multipart
from tests.stores.conftest import SECRETS, SUPABASE_KEY, make_supabase_client

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")  # tests/stores/conftest.py

KEY = "spring-2026/hero/square.png"
BUCKET = "media-assets"


def assert_clean(exc: BaseException) -> None:
    """No credential in the error or anything it was raised from."""
    while exc is not None:
        for secret in SECRETS:
            assert secret not in str(exc)
        exc = exc.__cause__


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "square.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
    return path


@pytest.fixture
def store(supabase_emu) -> SupabaseStorageStore:
    _, base_url = supabase_emu
    return SupabaseStorageStore(make_supabase_client(base_url), BUCKET)


def uploads(emulator):
    return emulator.calls_to("POST", f"/storage/v1/object/{BUCKET}/")


def test_upload_sends_content_type_cache_control_and_hash_metadata(supabase_emu, store, png):
    emulator, base_url = supabase_emu
    stored = store.put_file(KEY, png, "image/png")

    assert stored.written and stored.store == "supabase" and stored.key == KEY
    assert stored.url == f"{base_url}/storage/v1/object/public/{BUCKET}/{KEY}"
    (call,) = uploads(emulator)
    assert call.headers["x-upsert"] == "false"
    parts = parse_multipart(call.body, call.headers["content-type"])
    assert parts["file"].content_type == "image/png"
    assert parts["cacheControl"].data == b"31536000"
    assert json.loads(parts["metadata"].data) == {"sha256": sha256_file(png)}
    public = httpx.get(stored.url)
    assert public.status_code == 200 and public.content == png.read_bytes()
    assert public.headers["cache-control"] == "max-age=31536000"
    assert store.verify(KEY) is True
    assert emulator.calls[-1].method == "HEAD"


def test_rerun_with_same_bytes_uploads_nothing(supabase_emu, store, png):
    emulator, _ = supabase_emu
    first = store.put_file(KEY, png, "image/png")
    again = store.put_file(KEY, png, "image/png")

    assert again.written is False and again.key == first.key and again.url == first.url
    assert len(uploads(emulator)) == 1


def test_different_bytes_under_a_taken_key_are_stored_beside(supabase_emu, store, png, tmp_path):
    emulator, _ = supabase_emu
    store.put_file(KEY, png, "image/png")
    other = tmp_path / "other.png"
    other.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))

    stored = store.put_file(KEY, other, "image/png")

    assert stored.written and stored.key == conflict_key(KEY, sha256_file(other))
    assert emulator.objects[(BUCKET, KEY)].data == png.read_bytes()
    assert emulator.objects[(BUCKET, stored.key)].data == other.read_bytes()


def test_replace_overwrites_the_key_in_one_upsert_and_names_what_it_replaced(supabase_emu, store, png, tmp_path):
    emulator, _ = supabase_emu
    first = store.put_file(KEY, png, "image/png")
    other = tmp_path / "other.png"
    other.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))

    stored = store.put_file(KEY, other, "image/png", replace=True)

    assert stored.written and stored.key == KEY and stored.replaced_sha256 == first.sha256
    assert emulator.objects[(BUCKET, KEY)].data == other.read_bytes()
    assert store.stored_sha256(KEY) == sha256_file(other)  # the hash metadata follows the new bytes
    assert [(BUCKET, KEY)] == list(emulator.objects)
    assert uploads(emulator)[-1].headers.get("x-upsert") == "true"
    assert store.put_file(KEY, other, "image/png", replace=True).written is False


def test_duplicate_answer_from_a_racing_writer_is_settled_by_hash(supabase_emu, store, png, tmp_path):
    emulator, _ = supabase_emu
    store.write(KEY, png, "image/png")
    store.write(KEY, png, "image/png")  # Storage answers 400/"409" Duplicate: same bytes, nothing to do
    assert len(uploads(emulator)) == 2

    other = tmp_path / "other.png"
    other.write_bytes(b"different bytes")
    with pytest.raises(TransientStoreError, match="taken by different bytes"):
        store.write(KEY, other, "image/png")
    assert emulator.objects[(BUCKET, KEY)].data == png.read_bytes()


def test_object_without_hash_metadata_is_hashed_from_its_bytes(supabase_emu, store, png):
    emulator, _ = supabase_emu
    from tests.emulators.supabase import StoredObject

    emulator.objects[(BUCKET, KEY)] = StoredObject(png.read_bytes(), "image/png", "3600", {})
    assert store.stored_sha256(KEY) == sha256_file(png)
    assert emulator.calls_to("GET", f"/storage/v1/object/{BUCKET}/{KEY}")
    assert store.put_file(KEY, png, "image/png").written is False


def test_missing_key_has_no_hash(store):
    assert store.stored_sha256("spring-2026/none/square.png") is None


def test_payload_too_large_is_a_clear_permanent_error(supabase_emu, store, png):
    emulator, _ = supabase_emu
    emulator.max_upload_bytes = 100
    with pytest.raises(StoreError, match="size limit") as caught:
        store.put_file(KEY, png, "image/png")
    assert not is_transient(caught.value)
    assert BUCKET in str(caught.value) and KEY in str(caught.value)


def test_rejected_key_is_a_clear_error_without_the_secret(supabase_emu, store, png):
    emulator, _ = supabase_emu
    emulator.key = "sb-the-right-one"
    try:
        with pytest.raises(StoreError, match="refused the credentials") as caught:
            store.put_file(KEY, png, "image/png")
    finally:
        emulator.key = SUPABASE_KEY
    assert not is_transient(caught.value)
    assert_clean(caught.value)
    assert "SUPABASE_KEY" in str(caught.value)
    # storage3's error (which can carry the gateway's echo of the key) is not chained for a traceback
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("fault", ["503_once", "outage"])
def test_server_errors_are_transient(supabase_emu, store, png, fault):
    emulator, _ = supabase_emu
    if fault == "outage":
        emulator.faults.outage = True
    else:
        emulator.faults.fail_next(503, body={"statusCode": "503", "error": "ServiceUnavailable",
                                             "message": "try later"})
    with pytest.raises(TransientStoreError) as caught:
        store.put_file(KEY, png, "image/png")
    assert is_transient(caught.value)
    assert_clean(caught.value)
    emulator.faults.reset()
    assert store.put_file(KEY, png, "image/png").written  # the retry a flow would make succeeds


def test_slow_server_times_out_as_transient(supabase_emu, png):
    emulator, base_url = supabase_emu
    store = SupabaseStorageStore(make_supabase_client(base_url, timeout=0.3), BUCKET)
    emulator.faults.delay_seconds = 1.0
    with pytest.raises(TransientStoreError, match="timed out"):
        store.stored_sha256(KEY)


def test_delete_is_idempotent(supabase_emu, store, png):
    emulator, _ = supabase_emu
    store.put_file(KEY, png, "image/png")
    store.delete(KEY)
    store.delete(KEY)
    assert (BUCKET, KEY) not in emulator.objects
    assert store.stored_sha256(KEY) is None
    assert store.verify(KEY) is False
    removes = emulator.calls_to("DELETE", f"/storage/v1/object/{BUCKET}")
    assert [json.loads(c.body) for c in removes] == [{"prefixes": [KEY]}] * 2


def test_private_bucket_gets_signed_urls(supabase_emu, png):
    emulator, base_url = supabase_emu
    emulator.public_buckets = set()
    store = SupabaseStorageStore(make_supabase_client(base_url), BUCKET, public=False, signed_url_seconds=600)

    stored = store.put_file(KEY, png, "image/png")

    assert f"/storage/v1/object/sign/{BUCKET}/{KEY}?token=" in stored.url
    assert httpx.get(stored.url).content == png.read_bytes()
    assert store.verify(KEY) is True
    assert httpx.head(f"{base_url}/storage/v1/object/public/{BUCKET}/{KEY}").status_code != 200


def test_block_builds_a_working_store_and_hides_the_key(supabase_emu, png):
    from imagegen_flows.blocks.supabase import SupabaseCredentials, SupabaseStorage

    _, base_url = supabase_emu
    block = SupabaseStorage(credentials=SupabaseCredentials(url=base_url, key=SUPABASE_KEY), bucket=BUCKET)
    assert SUPABASE_KEY not in repr(block)
    assert block.get_store().put_file(KEY, png, "image/png").written
