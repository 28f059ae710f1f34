"""subjects[].inpaint and subjects[].style_reference: every bad input is one line naming the field, found
when the brief loads (files) or when the run is planned (mask sizes, a provider without an edit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from imagegen.brief_source import parse_brief
from imagegen.errors import BriefError
from imagegen.models import ProviderCapabilities
from imagegen.planning import plan_masters
from imagegen.subject_edits import plan_subject_edits, style_input, style_instruction


def _brief(folder: Path, **subject) -> dict:
    return {"campaign": "edits", "brand": {"name": "Acme", "palette": ["#ff6b6b"]},
            "subjects": [{"subject": "a ceramic mug", **subject}]}


def _problems(folder: Path, **subject) -> list[tuple[str, str]]:
    with pytest.raises(BriefError) as caught:
        parse_brief(_brief(folder, **subject), folder)
    return caught.value.problems


def _mask(path: Path, size=(64, 64)) -> Path:
    mask = Image.new("L", size, 0)
    mask.paste(255, (8, 8, 24, 24))
    mask.save(path)
    return path


@pytest.mark.parametrize("subject, field, reason", [
    ({"inpaint": {"mask": "/etc/passwd", "instruction": "x"}}, "subjects[0].inpaint.mask", "not an absolute one"),
    ({"inpaint": {"mask": "../m.png", "instruction": "x"}}, "subjects[0].inpaint.mask", "'..' is not allowed"),
    ({"inpaint": {"mask": "gone.png", "instruction": "x"}}, "subjects[0].inpaint.mask", "file not found"),
    ({"inpaint": {"mask": "m.png", "instruction": ""}}, "subjects[0].inpaint.instruction", "must not be empty"),
    ({"inpaint": {"mask": "m.png", "instruction": "mail me at jo@example.com"}},
     "subjects[0].inpaint.instruction", "personal data"),
    ({"inpaint": {"mask": "m.png", "instruction": "x", "feather": 0.5}}, "subjects[0].inpaint.feather", "0.1"),
    ({"inpaint": {"mask": "m.png"}}, "subjects[0].inpaint.instruction", "required"),
    ({"style_reference": "gone.webp"}, "subjects[0].style_reference", "file not found"),
    ({"style_reference": "m.png.txt"}, "subjects[0].style_reference", ""),  # a description: accepted
    ({"style_reference": "x" * 201}, "subjects[0].style_reference", "at most 200 characters"),
    ({"style_reference": "in the style of \u202eevil"}, "subjects[0].style_reference", "U+202E"),
])
def test_bad_subject_edits_name_their_field(tmp_path, subject, field, reason):
    _mask(tmp_path / "m.png")
    if not reason:
        assert parse_brief(_brief(tmp_path, **subject), tmp_path).subjects[0].style_reference == "m.png.txt"
        return
    [(where, why)] = _problems(tmp_path, **subject)
    assert where == field and reason in why


def test_a_symlink_out_of_the_brief_folder_is_refused(tmp_path):
    outside = _mask(tmp_path / "outside.png")
    (tmp_path / "brief").mkdir()
    os.symlink(outside, tmp_path / "brief" / "m.png")
    [(where, why)] = _problems(tmp_path / "brief", inpaint={"mask": "m.png", "instruction": "x"})
    assert where == "subjects[0].inpaint.mask" and "outside" in why


def test_plan_checks_mask_sizes_and_the_provider_edit(tmp_path):
    _mask(tmp_path / "m.png", (64, 48))
    brief = parse_brief(_brief(tmp_path, inpaint={"mask": "m.png", "instruction": "add a spoon"}), tmp_path)
    caps = ProviderCapabilities(supports_edit=True)
    specs, _ = plan_masters(brief, caps, "nvidia", "m", 256)
    with pytest.raises(BriefError) as caught:
        plan_subject_edits(brief, specs, caps)
    [(where, why)] = caught.value.problems
    assert where == "subjects[0].inpaint.mask" and "64x48 px but the master is" in why
    _mask(tmp_path / "m.png", (32, 32))
    with pytest.raises(BriefError, match="has no image edit"):
        plan_subject_edits(brief, specs, ProviderCapabilities(supports_edit=False))
    [edit] = plan_subject_edits(brief, specs, caps)[specs[0].asset_id]
    assert edit.mask_sha256 and edit.key_part() == f"inpaint:{edit.mask_sha256}"


def test_style_reaches_each_provider_its_own_way(tmp_path):
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "r.png")
    brief = parse_brief(_brief(tmp_path, style_reference="r.png"), tmp_path)
    specs, _ = plan_masters(brief, ProviderCapabilities(supports_edit=True), "nvidia", "m", 256)
    [edit] = plan_subject_edits(brief, specs, ProviderCapabilities(supports_edit=True))[specs[0].asset_id]
    assert [style_input(name, edit) for name in ("nvidia", "nim", "neuroflash", "local")] == [
        "two_panel", "two_panel", "words", "reference_file"]
    assert "left panel" in style_instruction(edit, "two_panel")
    assert "dark" in style_instruction(edit, "words") and "#0a141e" in style_instruction(edit, "words")
