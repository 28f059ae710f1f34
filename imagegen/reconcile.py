"""One asset, one status: an asset's recorded rows and files held against what its new publish stores.

Before a master is published or quarantined, the catalog's rows of its asset are read (`RecordedFile`).
They decide two things:

- whether a stored file was what its row says (`found_problem`): a key whose bytes were changed or
  removed behind the catalog's back is rewritten from the master, and reported;
- what of the asset's earlier state the new one leaves behind (`leftovers`): a quarantined master
  keeps no published variant (rows deleted, files removed from the public stores), a master that is
  published again leaves its quarantined copy, a file that moved to another store or key leaves the
  old one, and variants rendered from an earlier master go with it. Published variants of the same
  master that this publish does not render (a size-set run added them) stay.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from imagegen.catalog.base import CatalogRow
from imagegen.sizes import MASTER_VARIANT
from imagegen.summary import RepairedFile

REASONS_FILE = "reasons.json"  # beside a quarantined master, without a row of its own

Location = tuple[str, str]  # (store name, key)
RowKey = tuple[str, str, str]  # the catalog's natural key


class RecordedFile(BaseModel):
    """What the catalog says of one file of an asset (a row, less its provenance)."""

    variant: str
    store: str
    key: str
    sha256: str
    status: str
    master_sha256: str | None = None

    @property
    def location(self) -> Location:
        return (self.store, self.key)


def recorded_files(rows: Iterable[CatalogRow]) -> dict[str, list[RecordedFile]]:
    """The rows of each asset id, as RecordedFile."""
    recorded: dict[str, list[RecordedFile]] = {}
    for row in rows:
        recorded.setdefault(row.asset_id, []).append(RecordedFile(
            variant=row.variant, store=row.store, key=row.store_key, sha256=row.sha256, status=row.status,
            master_sha256=row.metadata.get("master_sha256")))
    return recorded


def reasons_key(master_key: str) -> str:
    """Where a quarantined master's reasons sit: beside it."""
    return master_key.rsplit("/", 1)[0] + "/" + REASONS_FILE


def found_problem(asset_id: str, variant: str, *, store: str, key: str, written: bool, replaced_sha256: str | None,
                  recorded: RecordedFile | None) -> RepairedFile | None:
    """What was wrong with `store:key` before this put, as the put found it, or None when nothing was.

    A put that replaced bytes its row named is an update, not a problem. Replaced bytes the row did
    not name (tampered, truncated, or a file no row names) are "changed"; a write to the key a row
    names, which held nothing, restores a "missing" file.
    """
    named = recorded if recorded is not None and recorded.location == (store, key) else None
    location = f"{store}:{key}"
    if replaced_sha256 is not None:
        if named is not None and named.sha256 == replaced_sha256:
            return None
        return RepairedFile(asset_id=asset_id, variant=variant, location=location, problem="changed",
                            found_sha256=replaced_sha256, expected_sha256=named.sha256 if named else None)
    if written and named is not None:
        return RepairedFile(asset_id=asset_id, variant=variant, location=location, problem="missing",
                            expected_sha256=named.sha256)
    return None


class Leftovers(BaseModel):
    """What an asset's new publish leaves of its earlier state: rows to delete in the catalog
    transaction that writes the new rows, and files to remove once that transaction is committed."""

    rows: list[RowKey] = []
    files: list[Location] = []
    previous_status: str | None = None

    def __bool__(self) -> bool:
        return bool(self.rows or self.files)


def leftovers(campaign: str, asset_id: str, recorded: list[RecordedFile], stored: Iterable[tuple[str, Location]],
              *, status: str, master_sha256: str | None) -> Leftovers:
    """The rows and files of `recorded` that the asset's new files (`stored`: (variant, location) pairs,
    its new status and master) leave behind. See the module docstring for the rules."""
    new_variants: set[str] = set()
    new_locations: set[Location] = set()
    for variant, location in stored:
        new_variants.add(variant)
        new_locations.add(location)
    found = Leftovers(previous_status=next((r.status for r in recorded if r.variant == MASTER_VARIANT), None))
    for row in recorded:
        if row.variant not in new_variants:
            other_master = bool(row.master_sha256 and master_sha256 and row.master_sha256 != master_sha256)
            if row.status == status and not other_master:
                continue  # a published variant of this master that this publish does not render
            found.rows.append((campaign, asset_id, row.variant))
        if row.location in new_locations:
            continue
        found.files.append(row.location)
        if row.variant == MASTER_VARIANT and row.status == "quarantined":
            reasons = (row.store, reasons_key(row.key))
            if reasons not in new_locations:
                found.files.append(reasons)
    return found
