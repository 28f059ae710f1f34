"""A master's cut-out found once per content: the gate keeps its mask beside the master, the render reads it.

Finding a subject costs about a second at master size, and both the gate (is the mask plausible?) and
the render (cut the variants out) need it. The first to ask finds it and writes the reduced-copy mask
(`cutout.subject_region`, at most 512 px, a few kB) as `<masters folder>/.cutout/<sha256>.png`; a later
caller with the same bytes reads it back, so the gate and the render cut the same pixels. Keyed by the
master's sha256, a mask is never used for other bytes (an edited master has a new hash); a mask that
cannot be read or written is found again, never an error.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imagegen.files import write_atomically
from imagegen.imaging.cutout import Cutout, cutout_from_region, subject_region, work_size
from imagegen.models import sha256_file

MASK_FOLDER = ".cutout"  # hidden: nothing that lists a masters folder takes it for a master
# The gate and the render of one master run at once on the same process's pixel slots: the second
# waits for the first's mask instead of finding it too (a lock per hash stripe, bounded in number).
_LOCKS = tuple(threading.Lock() for _ in range(64))


def stored_mask_path(master_path: str | Path, sha256: str) -> Path:
    """Where the mask of the master at `master_path` with content `sha256` is kept."""
    return Path(master_path).parent / MASK_FOLDER / f"{sha256}.png"


def master_subject(master_path: str | Path, sha256: str | None = None, pixels: Image.Image | None = None) -> Cutout:
    """`cutout.find_subject` of the master file at `master_path` (its content hash `sha256`, computed
    when not given; its decoded `pixels` when the caller has them), found at most once per content."""
    sha256 = sha256 or sha256_file(master_path)
    stored = stored_mask_path(master_path, sha256)
    with _LOCKS[int(sha256[:8], 16) % len(_LOCKS)]:
        if pixels is None:
            with Image.open(master_path) as im:
                size = im.size
        else:
            size = pixels.size
        region = _read_region(stored, work_size(size))
        if region is None:
            if pixels is None:
                with Image.open(master_path) as im:
                    pixels = im.convert("RGB")
            region = subject_region(pixels.convert("RGB") if pixels.mode != "RGB" else pixels)
            _write_region(stored, region)
    return cutout_from_region(region, size)


def cutout_measurements(path: str | Path, *, decoded: bool = True) -> dict[str, Any]:
    """The cut-out gate's columns for the image file at `path` (a file that did not decode has no subject)."""
    if not decoded:
        return {"cutout_coverage": None, "cutout_problem": "the image did not decode, so no subject was looked for"}
    return master_subject(path).measurements()


def _read_region(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            region = np.asarray(im.convert("L")) > 127
    except (OSError, ValueError):  # not there yet, or unreadable: found again
        return None
    return region if region.shape == (size[1], size[0]) else None


def _write_region(path: Path, region: np.ndarray) -> None:
    data = io.BytesIO()
    Image.fromarray(region).save(data, "PNG")  # mode "1": one bit a pixel
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data.getvalue())
    except OSError:  # a read-only masters folder: the next caller finds the mask again
        pass
