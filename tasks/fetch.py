"""Fetch task: a published master back as a local file, for a size-set run that re-renders it.

A local store's file is copied, a remote one downloaded once (capped in size); either way the bytes
must hash to the sha256 the catalog recorded before the master is used.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from prefect import task

from imagegen.catalog.base import CatalogRow
from imagegen.files import copy_atomically, open_atomically
from imagegen.models import GeneratedImage, ImageRef
from imagegen_flows.tasks.retrying import RETRY_OPTIONS

MAX_MASTER_BYTES = 256 * 1024 * 1024


@task(name="fetch-master", task_run_name="fetch {row.asset_id}", cache_result_in_memory=False, **RETRY_OPTIONS)
def fetch_master(row: CatalogRow, masters_dir: str) -> GeneratedImage:
    """The published master as a local file: a local store's file as is, a remote one downloaded once."""
    target = Path(masters_dir) / f"{row.sha256}.{row.store_key.rsplit('.', 1)[-1]}"
    if row.url.startswith("file://"):
        source = Path(row.url.removeprefix("file://"))
        if not target.exists():
            copy_atomically(source, target)
    elif not target.exists():
        with httpx.stream("GET", row.url, timeout=60, follow_redirects=True) as response:
            response.raise_for_status()
            with open_atomically(target) as fh:  # a failed or oversized download leaves nothing behind
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    if fh.tell() > MAX_MASTER_BYTES:
                        raise ValueError(f"master {row.asset_id} is over {MAX_MASTER_BYTES} bytes")
    image = ImageRef.from_file(target)
    if image.sha256 != row.sha256:
        raise ValueError(f"master {row.asset_id} changed since it was cataloged (sha256 mismatch)")
    return GeneratedImage(image=image, provider=row.provider, model=row.model, seed=row.seed,
                          generation_ms=row.generation_ms, metadata=row.metadata)
