"""The subject-edit steps (`.fn` and plain functions, no Prefect run): an inpainting with any mask (a
remedy's own, too) keeps every pixel outside it and pays once per master, instruction and mask bytes;
a style reference goes through a two-panel canvas and pays once per reference bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from imagegen.imaging.masking import load_mask
from imagegen.subject_edits import SubjectEdit
from imagegen_flows.tasks.generate import generate_master
from imagegen_flows.tasks.subject_edits import edit_subject_master, inpaint
from tests.unit import test_paid_tasks as paid

FakeProvider = paid.FakeProvider
run_id, spec = paid.run_id, paid.spec  # the paid-task suite's fixtures


def _mask_edit(path: Path, box: tuple[int, int, int, int]) -> SubjectEdit:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, box)
    mask.save(path)
    return SubjectEdit(kind="inpaint", field="remedy mask", instruction="sharpen the face", mask_path=str(path),
                       mask_sha256=load_mask(path).sha256, feather=0.0)


def test_an_inpainting_with_a_remedy_mask_keeps_the_rest_and_pays_once(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    source = generate_master.fn(spec, provider, masters, run_id)
    edit = _mask_edit(tmp_path / "face.png", (16, 16, 40, 40))
    result = inpaint(source, spec, provider, edit, masters, run_id)
    before, after = (np.asarray(Image.open(m.image.path).convert("RGB")) for m in (source, result))
    outside = np.ones((64, 64), bool)
    outside[16:40, 16:40] = False
    assert np.array_equal(after[outside], before[outside]) and not np.array_equal(after[~outside], before[~outside])
    assert result.metadata["mask_sha256"] == edit.mask_sha256 and result.metadata["edits"][-1]["kind"] == "inpaint"
    assert result.image.format == "PNG" and (result.provider, result.model) == (source.provider, source.model)
    assert inpaint(source, spec, provider, edit, masters, run_id).image == result.image
    assert provider.calls[1:] == [("edit", source.image.sha256, "sharpen the face")]  # paid once
    other = _mask_edit(tmp_path / "face.png", (0, 0, 8, 8))  # other mask bytes: the edit is paid again
    inpaint(source, spec, provider, other, masters, run_id)
    assert len(provider.calls) == 3


def test_style_then_inpaint_in_one_task(tmp_path, spec, run_id):
    provider, masters = FakeProvider(), str(tmp_path / "masters")
    source = generate_master.fn(spec, provider, masters, run_id)
    Image.new("RGB", (20, 30), (0, 0, 255)).save(tmp_path / "ref.png")
    style = SubjectEdit(kind="style", field="subjects[0].style_reference", reference_path=str(tmp_path / "ref.png"),
                        reference_sha256=hashlib.sha256((tmp_path / "ref.png").read_bytes()).hexdigest(),
                        description="a blue look")
    edit = _mask_edit(tmp_path / "m.png", (0, 0, 32, 64))
    result = edit_subject_master.fn(source, spec, provider, [style, edit], masters, run_id)
    assert [e["kind"] for e in result.metadata["edits"]] == ["style", "inpaint"]
    assert result.metadata["edits"][0]["style_input"] == "two_panel"
    canvas_sha = provider.calls[1][1]
    with Image.open(next((Path(masters) / ".style").glob(canvas_sha + ".png"))) as canvas:
        assert canvas.size == (128, 64) and canvas.getpixel((96, 32)) == (0, 0, 255)  # the reference, right
    assert result.metadata["style_reference_sha256"] == style.reference_sha256
    assert (result.image.width, result.image.height) == (64, 64) and len(provider.calls) == 3
    edit_subject_master.fn(source, spec, provider, [style, edit], masters, run_id)
    assert len(provider.calls) == 3  # a rerun pays nothing
