"""Catalog rows and the interface every catalog backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field

NATURAL_KEY = ("campaign", "asset_id", "variant")

# Columns whose change makes an upsert an update; timestamps alone never do.
CONTENT_COLUMNS = (
    "url", "store", "store_key", "width", "height", "format", "bytes", "sha256", "phash", "prompt",
    "negative_prompt", "provider", "model", "seed", "gates", "status", "alt_text", "metadata",
)
# Columns an update writes along with the content but whose change alone is no update: a master made
# again with the same bytes took another time, a new master's row must not keep its predecessor's.
CARRIED_COLUMNS = ("generation_ms",)


def utcnow() -> datetime:
    return datetime.now(UTC)


class CatalogRow(BaseModel):
    campaign: str
    asset_id: str
    variant: str
    url: str
    store: str
    store_key: str
    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    phash: str | None = None
    prompt: str
    negative_prompt: str = ""
    provider: str
    model: str
    seed: int
    generation_ms: int = 0
    gates: dict[str, Any] = Field(default_factory=dict)
    status: Literal["published", "quarantined"]
    alt_text: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.campaign, self.asset_id, self.variant)

    def content(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in CONTENT_COLUMNS}


class UpsertResult(BaseModel):
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0  # rows named in `remove` that were there


# The shipped migrations, in the order they run: each later one builds on the tables of those before.
SCHEMA_FILES = ("media_assets", "image_analytics")


def schema_sql(dialect: Literal["sqlite", "postgres"]) -> str:
    """The shipped migration for `dialect`: imagegen/sql/<name>.<dialect>.sql of every SCHEMA_FILES name."""
    folder = resources.files("imagegen.sql")
    return "\n".join(folder.joinpath(f"{name}.{dialect}.sql").read_text() for name in SCHEMA_FILES)


PREFLIGHT_CAMPAIGN = "imagegen-preflight"
PREFLIGHT_TIMEOUT_SECONDS = 5  # a pre-flight check waits this long for a server or a lock, once


def probe_row(asset_id: str = "probe") -> CatalogRow:
    """The row a pre-flight check writes to prove it may write; it is rolled back (or deleted) at once."""
    return CatalogRow(campaign=PREFLIGHT_CAMPAIGN, asset_id=asset_id, variant="probe", url="preflight:probe",
                      store="preflight", store_key="probe", width=1, height=1, format="PNG", bytes=0,
                      sha256="0" * 64, prompt="pre-flight write check", provider="preflight", model="preflight",
                      seed=0, status="quarantined")


def missing_columns(found: Iterable[str]) -> list[str]:
    """The columns of `media_assets` this version writes that a table lacks, in schema order."""
    present = set(found)
    return [column for column in CatalogRow.model_fields if column not in present]


RowKey = tuple[str, str, str]


class Catalog(ABC):
    """All backends share these semantics: upserts run in one transaction (all rows or none), with
    the rows named in `remove` deleted in the same transaction (an asset whose status changed loses
    its other rows as it gets its new ones), keep `created_at` of existing rows, and count a row as
    updated only if its content changed."""

    name: str = "catalog"

    @abstractmethod
    def upsert(self, rows: list[CatalogRow], remove: Iterable[RowKey] = ()) -> UpsertResult: ...

    @abstractmethod
    def rows(self, campaign: str | None = None, asset_ids: Iterable[str] | None = None) -> list[CatalogRow]:
        """Rows in natural-key order, of `campaign` (None: all) and, given, of those asset ids only."""

    @abstractmethod
    def delete(self, keys: list[tuple[str, str, str]]) -> int:
        """Delete rows by natural key (rollback hooks); missing rows are not an error."""

    def preflight(self) -> None:  # noqa: B027 - a backend without checks of its own passes
        """Before any spend, with a short timeout and no retries: raise CatalogError (one reason)
        unless this catalog can be reached, has or can create `media_assets` with every column, and
        takes a write. Leaves nothing written: the probe write is rolled back (or deleted)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
