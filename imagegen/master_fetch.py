"""A published master read back as a local file, for the size-set flow, verified before it is used.

Where the bytes come from: the store that holds the master (the catalog row's `store`), read with that
store's own credentials, so a private Supabase bucket, a private GitLab project or a signed URL that has
expired since the run that published it are no obstacle; only when none of the brief's stores holds it,
the URL the catalog recorded: a `file://` URL is percent-decoded the way `Path.as_uri()` encoded it
(spaces, non-ASCII), an http(s) URL is fetched anonymously.

The bytes are hashed as they are written to a temp file beside the target, which takes the target's name
(one rename) only when the hash is the sha256 the catalog recorded. A mismatch is one error naming the
asset, where the bytes came from and both hashes, and leaves no file behind.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from imagegen.errors import StoreError, TransientStoreError
from imagegen.files import open_atomically
from imagegen.models import sha256_file
from imagegen.redaction import url_location
from imagegen.stores.base import AssetStore, BinarySink
from imagegen.stores.remote import error_for_status

MAX_MASTER_BYTES = 256 * 1024 * 1024
URL_TIMEOUT_SECONDS = 60.0


def file_url_path(url: str) -> Path:
    """The local path a `file://` URL names, percent-decoded as `Path.as_uri()` encoded it (the file
    system's encoding, any byte kept). A URL naming another host is refused: it is not on this machine."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise StoreError(f"{url_location(url)} is not a file:// URL")
    if parts.netloc not in ("", "localhost"):
        raise StoreError(f"{url_location(url)} names a file on host {parts.netloc!r}, not on this machine")
    return Path(unquote(parts.path, encoding=sys.getfilesystemencoding(), errors="surrogateescape"))


class HashingWriter:
    """A binary sink that hashes and counts what passes through it on the way to `fh`, refusing more
    than `limit` bytes."""

    def __init__(self, fh: BinarySink, limit: int, what: str):
        self._fh = fh
        self._hash = hashlib.sha256()
        self.limit = limit
        self.what = what
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise StoreError(f"{self.what} is over {self.limit} bytes")
        self._hash.update(data)
        self._fh.write(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def read_url_into(url: str, fh: BinarySink, timeout: float = URL_TIMEOUT_SECONDS) -> None:
    """Copy what a catalogued URL holds into `fh`: a local file for `file://`, an anonymous GET for http(s)."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = file_url_path(url)
        try:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, fh, 1024 * 1024)
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise StoreError(f"{path} is a folder, not a file") from None
        return
    if scheme not in ("http", "https"):
        raise StoreError(f"cannot read a {scheme or 'relative'} URL ({url_location(url)})")
    where = f"GET {url_location(url)}"  # without the query: a signed URL's token stays out of messages
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise error_for_status(response.status_code, f"{where} answered HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                fh.write(chunk)
    except httpx.HTTPError as exc:
        raise TransientStoreError(f"{where} failed ({type(exc).__name__})") from None


def source_of(url: str, store: AssetStore | None, key: str) -> tuple[str, Callable[[BinarySink], None]]:
    """Where a master's bytes are read from (for messages) and how: its store when one is given, else its URL."""
    if store is not None:
        return f"store {store.name!r} (key {key!r})", lambda fh: store.read_into(key, fh)
    shown = str(file_url_path(url)) if urlsplit(url).scheme == "file" else url_location(url)
    return shown, lambda fh: read_url_into(url, fh)


def fetch_master_file(asset_id: str, sha256: str, url: str, target: Path, *, store: AssetStore | None = None,
                      key: str = "", limit: int = MAX_MASTER_BYTES) -> Path:
    """`target` holding the master whose catalogued hash is `sha256`: kept when it already does, else read
    from `store` (or `url`) into a temp file and renamed onto `target` only once its hash matches.

    Raises StoreError (TransientStoreError when a retry may succeed) naming the asset; on any failure
    nothing new is left in `target`'s folder.
    """
    if target.is_file() and sha256_file(target) == sha256:
        return target
    try:
        source, read_into = source_of(url, store, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_atomically(target) as fh:
            writer = HashingWriter(fh, limit, f"the file read from {source}")
            read_into(writer)
            if writer.hexdigest() != sha256:
                raise StoreError(f"the bytes read from {source} have sha256 {writer.hexdigest()}, but the "
                                 f"catalog recorded {sha256}; the master is not used")
    except StoreError as exc:
        raise type(exc)(f"master {asset_id}: {exc}") from None
    return target
