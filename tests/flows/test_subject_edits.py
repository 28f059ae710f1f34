"""Masked inpainting and style transfer end to end, from the brief to the catalog, through the NVIDIA and
neuroflash emulators and the offline `local` provider: outside the mask the master's pixels are the
generated ones exactly, the edits are gated and catalogued (mask and reference sha256), an unchanged
rerun pays nothing and a changed mask pays again; a bad mask is refused before any spend."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFilter

from tests.flows import test_provider_flows as provider_flows
from tests.flows.cli_runs import run
from tests.flows.test_provider_flows import LENIENT, catalog

# the provider suite's emulator fixtures, behind one loopback server per module
loopback, nvidia, neuroflash = provider_flows.loopback, provider_flows.nvidia, provider_flows.neuroflash

pytestmark = pytest.mark.prefect

BOX = (0.25, 0.25, 0.75, 0.6)  # the mask's white box, as shares of width and height


def write_mask(path: Path, size: tuple[int, int]) -> Path:
    mask = Image.new("L", size, 0)
    mask.paste(255, tuple(round(share * side) for share, side in zip(BOX, size * 2, strict=True)))
    mask.save(path)
    return path


def write_brief(folder: Path, campaign: str, provider, subject_extra: dict, *, seed: int = 7, variations: int = 1,
                size: int | None = None) -> Path:
    brief = {"campaign": campaign, "brand": {"name": "Acme", "palette": ["#ff6b6b", "#4ecdc4", "#2c3e50"]},
             "subjects": [{"subject": "a ceramic mug on a wooden table", "seed": seed, "variations": variations,
                           **subject_extra}],
             "size_sets": [], "targets": [{"name": "square", "platform": "web", "width": 320, "height": 320}],
             "provider": provider if size is None else {**provider, "master_width": size, "master_height": size},
             "quality": LENIENT}
    path = folder / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(brief))
    return path


def masters(out: Path) -> list[dict]:
    return [{**row, "metadata": json.loads(row["metadata"])} for row in catalog(out) if row["variant"] == "master"]


def kept_region(size: tuple[int, int], margin: int) -> np.ndarray:
    """Pixels farther than `margin` from the mask's box: the ground truth of what must not change."""
    box = Image.new("L", size, 0)
    box.paste(255, tuple(round(share * side) for share, side in zip(BOX, size * 2, strict=True)))
    return np.asarray(box.filter(ImageFilter.MaxFilter(2 * margin + 1))) == 0


def assert_inpainted(out: Path, row: dict, feather_px: float) -> None:
    """The master outside the mask is the generated master's pixels exactly; inside, it is new."""
    meta = row["metadata"]
    inpaint = next(edit for edit in meta["edits"] if edit["kind"] == "inpaint")
    before = np.asarray(Image.open(next((out / "masters").glob(inpaint["source_sha256"] + ".*"))).convert("RGB"))
    after = np.asarray(Image.open(next((out / "masters").glob(meta["master_sha256"] + ".*"))).convert("RGB"))
    kept = kept_region((after.shape[1], after.shape[0]), int(3 * feather_px) + 2)
    assert before.shape == after.shape and kept.mean() > 0.5
    assert np.array_equal(after[kept], before[kept])
    h, w = after.shape[:2]
    centre = (slice(int(0.35 * h), int(0.5 * h)), slice(int(0.35 * w), int(0.65 * w)))
    assert np.abs(after[centre].astype(int) - before[centre].astype(int)).mean() > 5  # repainted


def test_local_inpainting_and_style_reference_end_to_end(prefect_harness, tmp_path, capsys):
    size = 256
    write_mask(tmp_path / "mask.png", (size, size))
    Image.new("RGB", (64, 64), (30, 60, 200)).save(tmp_path / "blue.png")
    brief = tmp_path / "local.yaml"
    brief.write_text(yaml.safe_dump({
        "campaign": "local-edits", "brand": {"name": "Acme", "palette": ["#ff6b6b", "#2c3e50"]},
        "subjects": [{"subject": "a ceramic mug on a wooden table", "seed": 11,
                      "inpaint": {"mask": "mask.png", "instruction": "put a red apple beside the mug"}},
                     {"subject": "a leather bag", "seed": 12, "style_reference": "blue.png"}],
        "size_sets": [], "targets": [{"name": "square", "platform": "web", "width": 128, "height": 128}],
        "provider": {"name": "local", "master_width": size, "master_height": size},
        "quality": {**LENIENT, "min_width": size, "min_height": size}}))
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["published"] == 2
    rows = {r["asset_id"]: r for r in masters(out)}
    inpainted = next(r for r in rows.values() if "mask_sha256" in r["metadata"])
    styled = next(r for r in rows.values() if "style_reference_sha256" in r["metadata"])
    assert inpainted["metadata"]["mask_sha256"] == hashlib.sha256((tmp_path / "mask.png").read_bytes()).hexdigest()
    assert styled["metadata"]["style_reference_sha256"] == hashlib.sha256((tmp_path / "blue.png").read_bytes()
                                                                          ).hexdigest()
    assert json.loads(inpainted["gates"])["checked"] and json.loads(styled["gates"])["checked"]  # gated
    assert_inpainted(out, inpainted, 0.01 * size)
    styled_pixels = np.asarray(Image.open(next((out / "masters").glob(styled["metadata"]["master_sha256"] + ".*"))
                                          ).convert("RGB"), dtype=float)
    assert np.allclose(styled_pixels.mean(axis=(0, 1)), (30, 60, 200), atol=3)  # took the reference's colours

    code, again, err = run(capsys, brief, out)
    assert code == 0, err
    assert again["provider_calls"] == 0
    assert {r["metadata"]["master_sha256"] for r in masters(out)} == {r["metadata"]["master_sha256"]
                                                                      for r in rows.values()}


def test_nvidia_inpainting_composites_the_kontext_edit_inside_the_mask(prefect_harness, nvidia, tmp_path, capsys):
    write_mask(tmp_path / "mask.png", (512, 512))  # the master's aspect, another size: resized
    brief = write_brief(tmp_path, "nv-inpaint", {"name": "nvidia"}, {
        "inpaint": {"mask": "mask.png", "instruction": "replace the mug with a glass teapot", "feather": 0.005}},
        variations=2)
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    kontext = [r for r in nvidia.requests if r["model"].endswith("flux.1-kontext-dev")]
    assert len(kontext) == 2 and summary["provider_calls"] == 4 and nvidia.paid_generations == 4
    assert all(r["body"]["prompt"] == "replace the mug with a glass teapot" for r in kontext)
    rows = masters(out)
    assert len(rows) == 2 and all(r["status"] == "published" for r in rows)
    for row in rows:
        assert row["metadata"]["mask_sha256"] == hashlib.sha256((tmp_path / "mask.png").read_bytes()).hexdigest()
        assert (row["width"], row["height"]) == (1024, 1024)
        assert_inpainted(out, row, 0.005 * 1024)

    code, again, _ = run(capsys, brief, out)
    assert code == 0 and again["provider_calls"] == 0 and nvidia.paid_generations == 4  # rerun pays nothing

    write_mask(tmp_path / "mask.png", (1024, 1024))  # other bytes: the edit is paid again, not the generation
    mask = Image.open(tmp_path / "mask.png")
    mask.putpixel((0, 0), 255)
    mask.save(tmp_path / "mask.png")
    code, changed, err = run(capsys, brief, out)
    assert code == 0, err
    assert changed["provider_calls"] == 2 and nvidia.paid_generations == 6


def test_nvidia_style_reference_goes_through_a_two_panel_kontext_edit(prefect_harness, nvidia, tmp_path, capsys):
    Image.new("RGB", (300, 200), (240, 200, 40)).save(tmp_path / "poster.jpg")
    brief = write_brief(tmp_path, "nv-style", {"name": "nvidia"}, {"style_reference": "poster.jpg"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    kontext = [r for r in nvidia.requests if r["model"].endswith("flux.1-kontext-dev")]
    assert len(kontext) == 1 and "take the right panel's style" in kontext[0]["body"]["prompt"]
    assert kontext[0]["body"]["width"] > kontext[0]["body"]["height"]  # the two-panel canvas is wide
    [row] = masters(out)
    meta = row["metadata"]
    assert meta["style_reference_sha256"] == hashlib.sha256((tmp_path / "poster.jpg").read_bytes()).hexdigest()
    assert [e["kind"] for e in meta["edits"]] == ["style"] and meta["edits"][0]["style_input"] == "two_panel"
    assert (row["width"], row["height"]) == (1024, 1024)  # the left panel, back at the master's size

    code, again, _ = run(capsys, brief, out)
    assert code == 0 and again["provider_calls"] == 0
    Image.new("RGB", (300, 200), (20, 200, 240)).save(tmp_path / "poster.jpg")  # another reference pays again
    code, changed, _ = run(capsys, brief, out)
    assert code == 0 and changed["provider_calls"] == 1


def test_neuroflash_style_then_inpainting_through_edit(prefect_harness, neuroflash, tmp_path, capsys):
    write_mask(tmp_path / "mask.png", (1024, 1024))
    brief = write_brief(tmp_path, "nf-edits", {"name": "neuroflash"}, {
        "style_reference": "watercolour with soft pastel washes",
        "inpaint": {"mask": "mask.png", "instruction": "add a sprig of lavender", "feather": 0}})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    edits = [r["json"] for r in neuroflash.requests if r["route"] == "edit"]
    assert [e["prompt"] for e in edits] == [
        "Keep the content, take the style: redraw this image in the style of watercolour with soft pastel "
        "washes, keeping its subjects and composition.", "add a sprig of lavender"]
    assert edits[1]["image_urls"] != edits[0]["image_urls"]  # the inpainting edits the styled image
    [row] = masters(out)
    meta = row["metadata"]
    assert [e["kind"] for e in meta["edits"]] == ["style", "inpaint"]
    assert meta["style_description"] == "watercolour with soft pastel washes" and "mask_sha256" in meta
    assert_inpainted(out, row, 0)
    spent = neuroflash.paid_generations
    code, again, _ = run(capsys, brief, out)
    assert code == 0 and again["provider_calls"] == 0 and neuroflash.paid_generations == spent


def test_a_mask_that_fits_no_master_is_refused_before_any_spend(prefect_harness, nvidia, tmp_path, capsys):
    write_mask(tmp_path / "mask.png", (800, 600))
    brief = write_brief(tmp_path, "nv-bad-mask", {"name": "nvidia"},
                        {"inpaint": {"mask": "mask.png", "instruction": "add a spoon"}})
    code, _, err = run(capsys, brief, tmp_path / "out")
    assert code == 2 and nvidia.spent == 0
    assert "subjects[0].inpaint.mask: the mask is 800x600 px but the master is 1024x1024" in err
    assert "Traceback" not in err
