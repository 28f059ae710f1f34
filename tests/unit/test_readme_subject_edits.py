"""The README's "Masked inpainting" and "Style transfer" briefs load as written, and plan their edits
before any spend with the provider they name (FLUX.1 Kontext masters are 1024x1024)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from imagegen.brief_source import parse_brief
from imagegen.planning import plan_masters
from imagegen.providers.nvidia_models import FLUX_DEV, model_capabilities
from imagegen.subject_edits import plan_subject_edits

REPO = Path(__file__).resolve().parents[2]


def readme_brief(heading: str) -> dict:
    text = (REPO / "README.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, f"README has no brief under ### {heading}"
    return yaml.safe_load(match.group(1))


def plan(data: dict, folder: Path):
    brief = parse_brief(data, folder)
    assert brief.provider.name == "nvidia"
    caps = model_capabilities(FLUX_DEV).model_copy(update={"supports_edit": True})  # the block's Kontext edit model
    specs, _ = plan_masters(brief, caps, "nvidia", FLUX_DEV, 2048)
    return specs, plan_subject_edits(brief, specs, caps)


def test_the_inpainting_brief_works_as_written(tmp_path):
    (tmp_path / "masks").mkdir()
    mask = Image.new("L", (512, 512), 0)
    mask.paste(255, (40, 200, 220, 460))
    mask.save(tmp_path / "masks" / "mug-left.png")
    specs, edits = plan(readme_brief("Masked inpainting"), tmp_path)
    [edit] = edits[specs[0].asset_id]
    assert edit.kind == "inpaint" and edit.instruction == "put a small vase of tulips left of the mug"
    assert edit.feather == 0.01 and edit.mask_sha256 and (specs[0].width, specs[0].height) == (1024, 1024)


def test_the_style_brief_works_as_written(tmp_path):
    (tmp_path / "style").mkdir()
    Image.new("RGB", (300, 200), (200, 120, 40)).save(tmp_path / "style" / "poster.jpg")
    specs, edits = plan(readme_brief("Style transfer"), tmp_path)
    by_subject = {spec.subject_index: edits[spec.asset_id][0] for spec in specs}
    assert by_subject[0].reference_sha256 and "warm" in (by_subject[0].description or "")
    assert by_subject[1].description == "watercolour with soft pastel washes and ink outlines"


def test_without_the_files_the_briefs_say_which_field(tmp_path):
    with pytest.raises(Exception, match=r"subjects\[0\]\.inpaint\.mask: file not found"):
        parse_brief(readme_brief("Masked inpainting"), tmp_path)
    with pytest.raises(Exception, match=r"subjects\[0\]\.style_reference: file not found"):
        parse_brief(readme_brief("Style transfer"), tmp_path)
