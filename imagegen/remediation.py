"""The edit stage's decisions: which remedy answers which failed gate, and the local fixes themselves."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from imagegen.models import ImageRef
from imagegen.providers.base import save_image_bytes
from imagegen.quality import GATE_REMEDIES, GateFailure

# Order matters: fix exposure before judging colours, sharpen last so it does not amplify noise; faces are
# enhanced after the whole picture is fixed, on the faces found in the fixed picture.
LOCAL_FIX_ORDER = ("fix_exposure", "denoise", "shift_to_palette", "sharpen", "enhance_faces")


def plan_remediation(failures: list[GateFailure], *, provider_supports_edit: bool) -> list[str]:
    """Remedies for `failures`: ["regenerate"], ["provider_edit"], or local fixes in a safe order.

    A failure no local fix can mend (undecodable, too small, filtered, duplicate, blocky) needs new
    pixels, so one regeneration replaces every other remedy. A gate that could not run (`errored`)
    fails whatever the pixels are: no remedy is tried (an empty list), the master is kept as it is.
    """
    if any(f.errored for f in failures):
        return []
    remedies = {GATE_REMEDIES.get(f.gate, "regenerate") for f in failures}
    if "regenerate" in remedies:
        return ["regenerate"]
    if "provider_edit" in remedies:
        return ["provider_edit"] if provider_supports_edit else ["regenerate"]
    return [name for name in LOCAL_FIX_ORDER if name in remedies]


def edit_instruction(failures: list[GateFailure]) -> str:
    """A plain-language instruction for a provider edit (FLUX.1-kontext, neuroflash /edit)."""
    reasons = "; ".join(f.reason for f in failures)
    return f"Improve this image while keeping its composition and colours. Fix: {reasons}"


def apply_local_fixes(source: ImageRef, remedies: list[str], palette: list[str], dest_dir: Path) -> ImageRef:
    """Apply `remedies` to the master at `source` and store the result content-addressed (PNG)."""
    from imagegen.imaging import faces, fixes

    functions = {
        "fix_exposure": fixes.fix_exposure,
        "denoise": fixes.denoise,
        "sharpen": fixes.sharpen,
        "shift_to_palette": lambda img: fixes.shift_to_palette(img, palette) if palette else img,
        "enhance_faces": faces.enhance_faces,
    }
    with Image.open(source.path) as im:
        img = im.convert("RGB")
    for name in remedies:
        img = functions[name](img)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=6)
    return save_image_bytes(buffer.getvalue(), dest_dir, provider="local-fix")
