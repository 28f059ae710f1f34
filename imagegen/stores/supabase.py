"""Supabase Storage as an asset store (seed 000: images under 2 MB), over supabase-py's storage client.

Contract (shared/docs/provider-contracts.md section 5):

- Upload: `POST /storage/v1/object/{bucket}/{key}` (multipart part `file`) with `upsert: "false"` on
  purpose, so Storage itself refuses to overwrite: a taken key answers HTTP 400 with body
  `{"statusCode": "409", "error": "Duplicate"}`, after which the hashes decide. Replacing a key's bytes
  (`put_file(..., replace=True)`) is the one upload sent with `upsert: "true"`.
- Content hash: written at upload as object user metadata `{"sha256": ...}` (storage3 sends
  `file_options["metadata"]` as the multipart field `metadata`) and read back with
  `GET /object/info/{bucket}/{key}` (one small request). An object without that metadata (uploaded
  by something else) is downloaded and hashed: correct, but it costs one full download per check.
- Pre-flight: one upload of a 1x1 PNG under `.imagegen-preflight/` (a PNG, so buckets that only allow
  images take it), then its removal: that proves the bucket exists and the key may write, in two
  requests, without the bucket-admin rights `get_bucket` needs.
- URLs: public buckets use `get_public_url` (built locally, no request); private buckets a signed
  URL valid for `signed_url_seconds` (one request per call).
- Reading back (`read_into`): the authenticated `GET /object/{bucket}/{key}` (storage3 `download`), so a
  private bucket or an expired signed URL is no obstacle.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import httpx
from storage3.exceptions import StorageApiError

from imagegen.errors import StoreError, TransientStoreError
from imagegen.models import sha256_file
from imagegen.redaction import mask_url, url_secrets
from imagegen.stores.base import AssetStore, BinarySink
from imagegen.stores.remote import error_for_status, head_ok, is_sha256_hex, sha256_bytes, short_server_message

# A key's bytes change only when a rerun replaces them (a new master, a repaired file): caches may keep
# them a year. Supabase's CDN drops its copy when an object is overwritten.
CACHE_CONTROL_SECONDS = "31536000"
DEFAULT_SIGNED_URL_SECONDS = 7 * 24 * 3600
PREFLIGHT_PREFIX = ".imagegen-preflight"
_PROBE_PNG = base64.b64decode(  # 1x1 transparent PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def storage_status(exc: StorageApiError) -> int | None:
    """The status Storage reported: its body's `statusCode` (a string, '409' for a duplicate), else HTTP's."""
    try:
        return int(str(exc.status))
    except (TypeError, ValueError):
        return None


class SupabaseStorageStore(AssetStore):
    """Objects in one Supabase Storage bucket under `<campaign>/<asset>/<variant>.<ext>` keys."""

    def __init__(self, client: Any, bucket: str, *, public: bool = True,
                 signed_url_seconds: int = DEFAULT_SIGNED_URL_SECONDS, name: str = "supabase",
                 head_timeout: float = 10.0):
        """`client` is a ready `supabase.Client` (tests pass one pointed at the emulator)."""
        self.client = client
        self.bucket = bucket
        self.public = public
        self.signed_url_seconds = signed_url_seconds
        self.name = name
        self.head_timeout = head_timeout

    # -- plumbing --------------------------------------------------------------------------------

    def _files(self):
        return self.client.storage.from_(self.bucket)

    def _where(self, key: str) -> str:
        return f"Supabase Storage bucket {self.bucket!r}, key {key!r}"

    def _secrets(self) -> list[str | None]:
        url = getattr(self.client, "supabase_url", None)
        return [getattr(self.client, "supabase_key", None), *url_secrets(str(url) if url else None)]

    def _error(self, exc: Exception, action: str, key: str) -> StoreError:
        """Map a storage3/httpx failure to StoreError/TransientStoreError without leaking the key secret.

        Callers raise it `from None`: storage3's error can carry the gateway's echo of the key, and a
        chained cause would print it in any traceback."""
        where = self._where(key)
        if isinstance(exc, httpx.TimeoutException):
            return TransientStoreError(f"{action} {where}: timed out")
        if isinstance(exc, httpx.HTTPError):
            return TransientStoreError(f"{action} {where}: transport error ({type(exc).__name__})")
        if not isinstance(exc, StorageApiError):
            return StoreError(f"{action} {where}: {type(exc).__name__}")
        status = storage_status(exc)
        if status in (401, 403):
            return StoreError(f"{action} {where}: Supabase refused the credentials (HTTP {status}); "
                              "check SUPABASE_KEY and the bucket's policies")
        if status == 413:
            return StoreError(f"{action} {where}: the file is over the bucket's or project's upload size limit "
                              "(HTTP 413)")
        detail = short_server_message(exc.message, self._secrets())
        return error_for_status(status, f"{action} {where}: HTTP {status} {exc.code}: {detail}")

    # -- AssetStore primitives -------------------------------------------------------------------

    def stored_sha256(self, key: str) -> str | None:
        try:
            info = self._files().info(key)
        except StorageApiError as exc:
            if storage_status(exc) == 404:
                return None
            raise self._error(exc, "reading object info from", key) from None
        except httpx.HTTPError as exc:
            raise self._error(exc, "reading object info from", key) from None
        recorded = (info.get("metadata") or {}).get("sha256") if isinstance(info, dict) else None
        if is_sha256_hex(recorded):
            return recorded
        return self._download_sha256(key)

    def _download_sha256(self, key: str) -> str | None:
        """Fallback for objects we did not upload: hash the bytes themselves (one full download)."""
        try:
            return sha256_bytes(self._files().download(key))
        except StorageApiError as exc:
            if storage_status(exc) == 404:
                return None
            raise self._error(exc, "downloading", key) from None
        except httpx.HTTPError as exc:
            raise self._error(exc, "downloading", key) from None

    def write(self, key: str, path: Path, content_type: str) -> None:
        self._upload(key, path, content_type, upsert=False)

    def replace(self, key: str, path: Path, content_type: str) -> None:
        """One upload with `upsert: "true"`: readers see the old bytes or the new ones, never nothing."""
        self._upload(key, path, content_type, upsert=True)

    def _upload(self, key: str, path: Path, content_type: str, *, upsert: bool) -> None:
        sha256 = sha256_file(path)
        options = {"content-type": content_type, "cache-control": CACHE_CONTROL_SECONDS,
                   "upsert": "true" if upsert else "false", "metadata": {"sha256": sha256}}
        try:
            self._files().upload(key, Path(path), file_options=options)
        except StorageApiError as exc:
            if upsert or storage_status(exc) != 409:
                raise self._error(exc, "uploading to", key) from None
            self._settle_duplicate(key, sha256)
        except httpx.HTTPError as exc:
            raise self._error(exc, "uploading to", key) from None

    def _settle_duplicate(self, key: str, sha256: str) -> None:
        """Storage said the key is taken (another writer won a race since `stored_sha256`).

        Same bytes: nothing to do. Different bytes: never overwrite; a retry of `put_file` sees the
        other hash and stores beside it under the conflict key, so this is transient.
        """
        if self.stored_sha256(key) == sha256:
            return
        raise TransientStoreError(f"uploading to {self._where(key)}: the key was taken by different bytes "
                                  "during the upload; retry to store beside it")

    def url_for(self, key: str) -> str:
        """The public or signed URL, without the credentials SUPABASE_URL's user info may carry (a signed
        URL's own token stays: it is what makes the URL work)."""
        if self.public:
            return mask_url(self._files().get_public_url(key), query=False)
        try:
            signed = self._files().create_signed_url(key, self.signed_url_seconds)
        except (StorageApiError, httpx.HTTPError) as exc:
            raise self._error(exc, "signing a URL for", key) from None
        url = signed.get("signedURL") or signed.get("signedUrl")
        if not url:
            raise StoreError(f"signing a URL for {self._where(key)}: Storage returned no URL")
        return mask_url(url, query=False)

    def delete(self, key: str) -> None:
        try:
            # Storage answers 200 with the removed objects; a missing key is simply not in the list.
            self._files().remove([key])
        except StorageApiError as exc:
            if storage_status(exc) == 404:
                return
            raise self._error(exc, "deleting", key) from None
        except httpx.HTTPError as exc:
            raise self._error(exc, "deleting", key) from None

    def verify(self, key: str) -> bool:
        return head_ok(self.url_for(key), what=f"verifying {self._where(key)}", timeout=self.head_timeout)

    def read_into(self, key: str, fh: BinarySink) -> None:
        try:
            fh.write(self._files().download(key))
        except (StorageApiError, httpx.HTTPError) as exc:
            raise self._error(exc, "downloading", key) from None

    def preflight(self) -> None:
        """Upload a tiny probe object and remove it at once (the client's timeout applies; storage3 makes
        one attempt)."""
        key = f"{PREFLIGHT_PREFIX}/{uuid.uuid4().hex}.png"
        options = {"content-type": "image/png", "upsert": "false"}
        try:
            self._files().upload(key, _PROBE_PNG, file_options=options)
        except (StorageApiError, httpx.HTTPError) as exc:
            raise self._preflight_error(exc) from None
        self.delete(key)

    def _preflight_error(self, exc: Exception) -> StoreError:
        where = f"Supabase Storage bucket {self.bucket!r}"
        if isinstance(exc, StorageApiError) and storage_status(exc) == 404:
            return StoreError(f"{where} does not exist (HTTP 404); check IMAGEGEN_SUPABASE_BUCKET")
        if isinstance(exc, httpx.ConnectError):
            url = getattr(self.client, "supabase_url", None)
            return StoreError(f"{where}: cannot reach {mask_url(str(url)).rstrip('/') if url else 'the server'} "
                              f"({type(exc).__name__})")
        return self._error(exc, "writing a probe object to", f"{PREFLIGHT_PREFIX}/")
