"""The pending-requests journal: paid provider requests whose answer is not stored yet.

A generator writes an entry just before it sends a paid POST and removes it once the answer is
stored (or the provider gave a final answer, such as a refusal). An entry that outlives its call is
a request whose answer was lost in transit, and the next call with the same request (a task retry, a
rerun of the same brief) reads it instead of paying blindly again:

- an NVCF request id recorded from a 202 is polled again until it answers, expires (404) or fails;
- a neuroflash request's prompt and send time say what to look for in the image history;
- a synchronous request without either is sent again, counted as spent (imagegen.budget.paid_call).

An entry is worth reading for `PENDING_TTL_SECONDS` after its last send. An older one has expired: the
request is sent as new (a warning names the entry's file), and expired entries of requests nobody asks
for again (a brief changed since, a request lost twice and given up) are swept, so `.pending/` never
fills up with requests that can no longer be recovered.

`PendingJournal` is the whole interface the generators use, so the journal can move elsewhere (a
database shared by several workers) without touching them. `FolderJournal` keeps it in the folder
the generator writes masters to: one small JSON file per request under `<masters>/.pending/`, written
atomically, so a run killed at any point leaves either the old entry or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from imagegen.files import open_text_atomically
from imagegen.redaction import mask_url

logger = logging.getLogger(__name__)

PENDING_FOLDER = ".pending"
# How long after its last send an entry is read: long enough for a rerun after a weekend. NVCF keeps a
# request's result only for a limited time (a 404 after), and a neuroflash history lookup must stay well
# inside CLAIM_TTL_SECONDS, or it could adopt an image whose claim was forgotten.
PENDING_TTL_SECONDS = 3 * 24 * 3600
# An image id claimed by one master can no longer be adopted by another: a neuroflash history lookup
# only looks at images made since a lost request was sent, so old claims serve nothing.
CLAIM_TTL_SECONDS = 7 * 24 * 3600
# Set by a generator in a result's metadata when it found a paid answer again instead of paying (an
# NVCF request id polled again, a neuroflash history image adopted); imagegen.budget gives the call back.
RECOVERED_KEY = "answer_recovered"


_swept: set[Path] = set()


class PendingRequest(BaseModel):
    """A paid request sent, whose answer has not been stored."""

    key: str
    provider: str
    endpoint: str  # masked: what was called, for messages
    sent_at: float  # wall clock (epoch seconds): compared with the provider's own timestamps
    sends: int = 1  # how often this exact request has gone out without its answer being stored
    request_id: str | None = None  # an NVCF request id from a 202: poll it instead of paying again
    prompt: str | None = None  # what a history lookup matches (neuroflash)


class PendingJournal(Protocol):
    """Where pending requests are kept between a send and the stored answer."""

    def get(self, key: str) -> PendingRequest | None: ...

    def record(self, entry: PendingRequest) -> None: ...

    def remove(self, key: str) -> None: ...

    def claim(self, provider: str, image_id: str) -> bool:
        """Mark a provider's image as taken by a master; False when it already was."""
        ...


def request_key(endpoint: str, body: Mapping[str, Any], *discriminators: Any) -> str:
    """The journal key of a request: a hash of the endpoint (credentials masked) and the exact JSON body.

    `discriminators` tell apart requests whose bodies are equal but must not share an answer
    (neuroflash takes no seed, so two variations of one prompt send the same body).
    """
    text = json.dumps([mask_url(endpoint), body, list(discriminators)], sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def new_entry(key: str, provider: str, endpoint: str, previous: PendingRequest | None = None,
              prompt: str | None = None) -> PendingRequest:
    """The entry for a send starting now (counting the sends of `previous`, the same request lost before)."""
    return PendingRequest(key=key, provider=provider, endpoint=mask_url(endpoint), sent_at=time.time(),
                          sends=(previous.sends + 1) if previous else 1, prompt=prompt)


class FolderJournal:
    """The journal as JSON files in one folder (`<masters>/.pending/<key>.json`)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @classmethod
    def under(cls, dest_dir: Path) -> FolderJournal:
        """The journal of the masters folder `dest_dir`."""
        return cls(Path(dest_dir) / PENDING_FOLDER)

    def __repr__(self) -> str:
        return f"FolderJournal({str(self.folder)!r})"

    def _path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"pending-request key must be a hex digest, got {key!r}")
        return self.folder / f"{key}.json"

    def get(self, key: str) -> PendingRequest | None:
        """The entry, or None (also for an unreadable or expired one: then the request is sent as new)."""
        self._sweep_once()
        path = self._path(key)
        entry = self._read(path)
        if entry is not None and expired(entry):
            self._expire(entry, path)
            return None
        return entry

    def _read(self, path: Path) -> PendingRequest | None:
        try:
            return PendingRequest.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _expire(entry: PendingRequest, path: Path) -> None:
        """Remove an expired entry, saying which file went and why (its request is sent as new if asked for)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            logger.warning(expiry_line(entry, path))

    def forget_expired(self) -> int:
        """Remove every expired entry (each named in a warning); returns how many went."""
        gone = [(entry, path) for path in self.folder.glob("*.json") if (entry := self._read(path)) and expired(entry)]
        for entry, path in gone:
            self._expire(entry, path)
        return len(gone)

    def _sweep_once(self) -> None:
        """Once per folder and process: expired entries and old claims serve nothing."""
        if self.folder in _swept:
            return
        _swept.add(self.folder)
        if self.folder.is_dir():
            self.forget_expired()
            self.forget_old_claims()

    def record(self, entry: PendingRequest) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open_text_atomically(self._path(entry.key)) as fh:
            fh.write(entry.model_dump_json())

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def entries(self) -> list[PendingRequest]:
        """Every readable entry (oldest send first): what is still pending in this folder (expired ones go)."""
        found = [entry for path in sorted(self.folder.glob("*.json")) if (entry := self.get(path.stem))]
        return sorted(found, key=lambda entry: entry.sent_at)

    def resumable(self, provider: str) -> int:
        """How many of `provider`'s entries can still be answered without paying (an NVCF request id to
        poll, a history lookup): a run's pre-flight does not set images of the day aside for them."""
        return sum(1 for entry in self.entries() if entry.provider == provider and (entry.request_id or entry.prompt))

    def claim_path(self, provider: str, image_id: str) -> Path:
        """The marker of a claimed image (named by a hash: an image id is the provider's text)."""
        return self.folder / "claimed" / hashlib.sha256(f"{provider}\n{image_id}".encode()).hexdigest()

    def claim(self, provider: str, image_id: str) -> bool:
        """Create the claim marker exclusively (atomic across processes on one file system)."""
        path = self.claim_path(provider, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_once()
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        return True

    def forget_old_claims(self, max_age_seconds: float = CLAIM_TTL_SECONDS) -> int:
        """Remove claims older than `max_age_seconds`; returns how many went."""
        removed = 0
        cutoff = time.time() - max_age_seconds
        for path in (self.folder / "claimed").glob("*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def expired(entry: PendingRequest, now: float | None = None) -> bool:
    """True when `entry`'s last send is older than PENDING_TTL_SECONDS."""
    return (time.time() if now is None else now) - entry.sent_at > PENDING_TTL_SECONDS


def expiry_line(entry: PendingRequest, path: Path) -> str:
    """The one line that says an expired entry went: which file, what it was, and what happens now."""
    sent = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(entry.sent_at))
    kept = (f"NVCF request id {entry.request_id}" if entry.request_id
            else "a history lookup" if entry.prompt else "no way to find its answer")
    return (f"{entry.provider}: pending entry {path} expired (last sent {sent} to {entry.endpoint}, {entry.sends} "
            f"send(s) whose answer was never stored, {kept}; entries are kept {PENDING_TTL_SECONDS // 3600} h): "
            f"removed; the request is sent as new if a run asks for it again")
