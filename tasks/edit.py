"""Local remediation of a master that failed its gates (no provider call, no quota)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from imagegen.models import GeneratedImage
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.remediation import apply_local_fixes


@task(name="fix-master", task_run_name="fix {asset_id} (attempt {attempt})", cache_result_in_memory=False)
def fix_master_locally(master: GeneratedImage, asset_id: str, remedies: list[str], palette: list[str],
                       masters_dir: str, attempt: int) -> GeneratedImage:
    """Apply local fixes; the original master stays on disk (edits never overwrite, they add)."""
    with PIXEL_SLOTS.urgent():  # the gate is waiting for this edit
        fixed = apply_local_fixes(master.image, remedies, palette, Path(masters_dir))
    edits = [*master.metadata.get("edits", []), {"attempt": attempt, "kind": "local", "remedies": remedies,
                                                 "source_sha256": master.image.sha256}]
    return master.model_copy(update={"image": fixed, "metadata": {**master.metadata, "edits": edits}})
