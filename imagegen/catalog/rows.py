"""Building catalog rows: one row per stored file, sharing its master's provenance."""

from __future__ import annotations

from typing import Any

from imagegen.catalog.base import CatalogRow

# Columns that describe the file, not the master it came from.
FILE_COLUMNS = ("variant", "url", "store", "store_key", "width", "height", "format", "bytes", "sha256")


FILE_METADATA = ("platform", "quality", "max_bytes", "upscaled", "url_verified", "budget_note",
                 "content_credentials", "background", "crop_note")


def rows_for_files(template: dict[str, Any], files: list, asset_metadata: dict[str, Any] | None = None
                   ) -> list[CatalogRow]:
    """`template` holds the master-level columns; each PublishedFile adds its own file columns;
    `asset_metadata` (the <picture> snippet, the blurhash) goes into every row of the asset."""
    rows = []
    for f in files:
        metadata = {**template.get("metadata", {}), **(asset_metadata or {}), "platform": f.platform,
                    "quality": f.quality, "max_bytes": f.max_bytes, "upscaled": f.upscaled,
                    "url_verified": f.verified, "budget_note": f.budget_note,
                    **({"content_credentials": f.content_credentials} if f.content_credentials else {}),
                    # publish.background: transparent, or the colour the file is on (absent when kept)
                    **({"background": f.background} if getattr(f, "background", None) else {}),
                    **({"crop_note": f.crop_note} if f.crop_note else {})}
        rows.append(CatalogRow(**{**template, "metadata": metadata}, variant=f.variant, url=f.stored.url,
                               store=f.stored.store, store_key=f.stored.key, width=f.width, height=f.height,
                               format=f.format, bytes=f.stored.bytes, sha256=f.stored.sha256))
    return rows


def template_from_row(row: CatalogRow) -> dict[str, Any]:
    """The master-level columns of an existing row (to catalog new variants of a published master)."""
    data = row.model_dump(exclude={*FILE_COLUMNS, "created_at", "updated_at"})
    data["metadata"] = {k: v for k, v in row.metadata.items() if k not in FILE_METADATA}
    return data
