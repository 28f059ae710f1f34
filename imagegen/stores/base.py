"""The asset-store contract: idempotent, content-checked puts that never silently overwrite.

A put that finds other bytes under its key stores beside them (`conflict_key`), unless the caller says
the key is its own to replace (`replace=True`: the publish stage, whose catalog names the key). Then
the key is overwritten in place and the result says which bytes it replaced, so the caller can tell
an update from a file that was tampered with.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from imagegen.errors import StoreError
from imagegen.models import StoredObject, sha256_file
from imagegen.rollback import removed_on_failure

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BinarySink(Protocol):
    """Where `AssetStore.read_into` writes: an open binary file, or anything with its `write`."""

    def write(self, data: bytes, /) -> object: ...


def safe_key(*parts: str) -> str:
    """Join key parts, refusing anything that could escape the store's root (.., /, odd bytes)."""
    for part in parts:
        if not _KEY_PART.match(part) or part in {".", ".."} or ".." in part:
            raise StoreError(f"unsafe store key part {part!r}: use letters, digits, '.', '_' or '-'")
    return "/".join(parts)


def conflict_key(key: str, sha256: str) -> str:
    """Where different bytes for an occupied key go: beside it, tagged with their own hash."""
    stem, dot, ext = key.rpartition(".")
    return f"{stem}-{sha256[:12]}.{ext}" if dot else f"{key}-{sha256[:12]}"


class AssetStore(ABC):
    """Subclasses implement the four primitives; `put_file` gives every store the same semantics:

    - same bytes already under the key: no write, `written=False`;
    - different bytes under the key: stored under `conflict_key(...)` instead, or, with `replace=True`,
      overwritten in place (`replace`) with `replaced_sha256` naming the bytes that were there;
    - otherwise: written.
    """

    name: str = "store"

    @abstractmethod
    def stored_sha256(self, key: str) -> str | None:
        """The sha256 of what the store holds under `key`, or None when it holds nothing."""

    @abstractmethod
    def write(self, key: str, path: Path, content_type: str) -> None:
        """Write the file at `path` under `key` (the key is free)."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """The URL a consumer uses to fetch `key`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error (rollback hooks call this more than once)."""

    def read_into(self, key: str, fh: BinarySink) -> None:
        """Write the bytes stored under `key` into `fh`, read with the store's own credentials: a private
        bucket or project, or a signed URL that expired, leaves the published URL unanswered. A store that
        cannot read files back raises StoreError."""
        raise StoreError(f"store {self.name!r} cannot read {key!r} back")

    def replace(self, key: str, path: Path, content_type: str) -> None:
        """Overwrite what `key` holds with the file at `path`. This default deletes, then writes;
        stores that can swap the bytes in one step (a local rename, an upsert) override it."""
        self.delete(key)
        self.write(key, path, content_type)

    def preflight(self) -> None:  # noqa: B027 - a store without checks of its own passes
        """Before any spend, with a short timeout and at most one attempt: raise StoreError (one line
        naming the store and the reason, never a secret) when the store cannot take files. Leaves
        nothing behind."""

    def verify(self, key: str) -> bool:
        """True when the published URL answers. Local stores check the file; remote ones send HEAD."""
        return self.stored_sha256(key) is not None

    def put_file(self, key: str, path: Path, content_type: str, sha256: str | None = None, *,
                 replace: bool = False) -> StoredObject:
        sha256 = sha256 or sha256_file(path)
        size = Path(path).stat().st_size
        existing = self.stored_sha256(key)
        replaced = None
        if existing is not None and existing != sha256:
            if replace:
                self.replace(key, Path(path), content_type)
                replaced = existing
            else:
                key = conflict_key(key, sha256)
                existing = self.stored_sha256(key)
        written = replaced is not None or existing is None
        stored = StoredObject(store=self.name, key=key, url="", sha256=sha256, bytes=size,
                              content_type=content_type, written=written, replaced_sha256=replaced)
        if written and replaced is None:
            self.write(key, Path(path), content_type)
        # a URL that cannot be made (a signing call that fails) must not leave the new file behind unlisted
        with removed_on_failure([stored], {self.name: self}):
            return stored.model_copy(update={"url": self.url_for(key)})

    def verify_stored(self, stored: StoredObject) -> bool:
        """`verify` of a file just stored; when the check itself fails (a HEAD that times out or answers
        5xx), the file this attempt wrote is removed again before the error goes on, so a failed publish
        leaves no file without its catalog row. A store that refuses the removal too is noted on the
        error (imagegen.rollback.left_behind), which stays the one raised."""
        with removed_on_failure([stored], {self.name: self}):
            return self.verify(stored.key)


@dataclass
class SizeRouter:
    """Seed 000's rule: files under the threshold go to the small-file store, the rest to the large one."""

    small: AssetStore
    large: AssetStore
    threshold_bytes: int = 2_000_000

    def store_for(self, size: int) -> AssetStore:
        return self.small if size < self.threshold_bytes else self.large
