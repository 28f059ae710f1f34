"""The pending-requests journal: paid provider requests whose answer is not stored yet.

A generator writes an entry just before it sends a paid POST and removes it once the answer is
stored (or the provider gave a final answer, such as a refusal). An entry that outlives its call is
a request whose answer was lost in transit, and the next call with the same request (a task retry, a
rerun of the same brief) reads it instead of paying blindly again:

- an NVCF request id recorded from a 202 is polled again until it answers, expires (404) or fails;
- a neuroflash request's prompt and send time say what to look for in the image history;
- a synchronous request without either is sent again, counted as spent (imagegen.budget.paid_call).

`PendingJournal` is the whole interface the generators use, so the journal can move elsewhere (a
database shared by several workers) without touching them. `FolderJournal` keeps it in the folder
the generator writes masters to: one small JSON file per request under `<masters>/.pending/`, written
atomically, so a run killed at any point leaves either the old entry or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from imagegen.files import open_text_atomically
from imagegen.redaction import mask_url

PENDING_FOLDER = ".pending"
# An image id claimed by one master can no longer be adopted by another: a neuroflash history lookup
# only looks at images made since a lost request was sent, so old claims serve nothing.
CLAIM_TTL_SECONDS = 7 * 24 * 3600
# Set by a generator in a result's metadata when it found a paid answer again instead of paying (an
# NVCF request id polled again, a neuroflash history image adopted); imagegen.budget gives the call back.
RECOVERED_KEY = "answer_recovered"


_claims_swept: set[Path] = set()


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
        """The entry, or None (also for an unreadable one: then the request is sent as if new)."""
        path = self._path(key)
        try:
            return PendingRequest.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None

    def record(self, entry: PendingRequest) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open_text_atomically(self._path(entry.key)) as fh:
            fh.write(entry.model_dump_json())

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def entries(self) -> list[PendingRequest]:
        """Every readable entry (oldest send first): what is still pending in this folder."""
        found = [entry for path in sorted(self.folder.glob("*.json")) if (entry := self.get(path.stem))]
        return sorted(found, key=lambda entry: entry.sent_at)

    def claim_path(self, provider: str, image_id: str) -> Path:
        """The marker of a claimed image (named by a hash: an image id is the provider's text)."""
        return self.folder / "claimed" / hashlib.sha256(f"{provider}\n{image_id}".encode()).hexdigest()

    def claim(self, provider: str, image_id: str) -> bool:
        """Create the claim marker exclusively (atomic across processes on one file system)."""
        path = self.claim_path(provider, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.folder not in _claims_swept:  # once per folder and process: claims are only useful for a week
            _claims_swept.add(self.folder)
            self.forget_old_claims()
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
