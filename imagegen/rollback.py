"""Undoing what a failed step stored: every removal is tried, and a removal that fails is a second error
kept beside the first, never in its place.

A step that fails after storing files (an upload, then a HEAD check that fails; a catalog that refuses
the rows) removes what it wrote and re-raises its own exception: that first failure is what the run
reports. When a store refuses a removal as well, the file is left behind; that second error rides on
the first exception (`left_behind`) for the task or flow to log and for the run summary to list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from imagegen.errors import StoreError, TransientStoreError, is_transient, safe_reason
from imagegen.models import StoredObject

_LEFT_BEHIND = "imagegen_left_behind"  # the attribute a first exception carries its second errors in


@dataclass(frozen=True)
class LeftBehind:
    """A file a failed step wrote and could not remove again."""

    store: str
    key: str
    reason: str  # why the removal failed (safe_reason: no secrets)
    transient: bool = False

    def line(self) -> str:
        return f"{self.store}:{self.key} ({self.reason})"


def remove_written(objects: Iterable[StoredObject], stores: Mapping[str, object]) -> list[LeftBehind]:
    """Delete every object this attempt wrote to a free key (`written=True`; bytes that were already there
    stay, and so do keys whose bytes were replaced in place: their row names the key, and removing the
    file would leave that row without one), going on past a removal that fails. `stores` maps a store
    name to its AssetStore. Returns what could not be removed (empty when everything went)."""
    left: list[LeftBehind] = []
    for stored in objects:
        if not stored.written or stored.replaced_sha256 is not None:
            continue
        try:
            stores[stored.store].delete(stored.key)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - every removal is tried; the failure is reported, not lost
            left.append(LeftBehind(stored.store, stored.key, safe_reason(exc), is_transient(exc)))
    return left


def removal_error(left: list[LeftBehind]) -> StoreError:
    """One error for removals that failed: transient when any of them may succeed later (a retry
    removes the rest; a missing key is not an error for `delete`)."""
    error = TransientStoreError if any(item.transient for item in left) else StoreError
    shown = "; ".join(item.line() for item in left[:5]) + (" ..." if len(left) > 5 else "")
    return error(f"{len(left)} file(s) could not be removed: {shown}")


def note_left_behind(first: BaseException, left: list[LeftBehind]) -> None:
    """Attach what a rollback left behind to the exception that caused it (which stays the one raised)."""
    if left:
        setattr(first, _LEFT_BEHIND, [*left_behind(first), *left])


def left_behind(exc: BaseException | None) -> list[LeftBehind]:
    """What rolling back after `exc` could not remove (empty for any other exception)."""
    return list(getattr(exc, _LEFT_BEHIND, None) or [])


def second_error_line(first: BaseException, left: list[LeftBehind], what: str) -> str:
    """The log line of a rollback that failed: the first failure, then what was left and why."""
    shown = ", ".join(item.line() for item in left[:10]) + (" ..." if len(left) > 10 else "")
    return (f"{what} failed ({safe_reason(first)}), and removing what it had stored failed too: "
            f"{len(left)} file(s) left behind: {shown}")


@contextmanager
def removed_on_failure(written: list[StoredObject], stores: Mapping[str, object]) -> Iterator[None]:
    """Run the block; if it raises, remove `written` (the list the block appends to as it stores) and
    re-raise the block's own exception, with anything left behind noted on it."""
    try:
        yield
    except BaseException as exc:
        note_left_behind(exc, remove_written(written, stores))
        raise
