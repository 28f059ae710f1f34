"""Hostile brand logos through `imagegen run`: refused with the brief, before any spend, and bounded in memory.

A logo that is text, an SVG, a truncated PNG, a decompression bomb, a symlink loop, a folder, a FIFO or
missing exits 2 with one line ``brand.logo.path: <reason>``, no traceback, nothing written and no
provider call; the bomb's pixels are never decoded. A large but allowed logo (4000 x 4000) is decoded
a fixed number of times per run, however many masters are rendered: once to check it with the brief
(the CLI and the flow share that check) and once to prepare its marks, never per render.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.faults.conftest import consistency_problems, write_brief
from tests.faults.test_fault_hostile_input import SMALL_LOCAL, bomb_png, run  # noqa: F401 (bomb_png: fixture)

pytestmark = pytest.mark.prefect


def _place_logo(folder: Path, case: str, bomb: bytes) -> None:
    logo = folder / "logo.png"
    if case == "text":
        logo.write_text("our logo, see attached\n")
    elif case == "svg":
        logo.write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    elif case == "truncated":
        Image.radial_gradient("L").resize((300, 300)).save(folder / "whole.png")
        data = (folder / "whole.png").read_bytes()
        logo.write_bytes(data[: len(data) // 2])
    elif case == "bomb":
        logo.write_bytes(bomb)
    elif case == "symlink loop":
        os.symlink(folder / "other.png", logo)
        os.symlink(logo, folder / "other.png")
    elif case == "folder":
        logo.mkdir()
    elif case == "fifo":
        os.mkfifo(logo)
    # "missing": nothing there


@pytest.mark.parametrize("case, reason", [
    ("text", "a text file, not an image: give a PNG, JPEG or WebP image of at most 20 MB and 16 megapixels"),
    ("svg", "an SVG (vector) file, which is not accepted: export the logo as a PNG, JPEG or WebP image"),
    ("truncated", "the PNG image cannot be decoded whole: it is truncated or damaged"),
    ("bomb", "the image is 12000x12000 px, over the 16000000 pixel cap for a logo"),
    ("symlink loop", "a symlink loop: the path never reaches a file"),
    ("folder", "a folder, not a file"),
    ("fifo", "a FIFO (named pipe), not a file"),
    ("missing", "file not found (looked for "),
])
def test_a_hostile_logo_exits_2_before_any_spend(nvidia, tmp_path, capsys, bomb_png, decoded,  # noqa: F811
                                                 case, reason):
    folder = tmp_path / "briefs"
    folder.mkdir()
    _place_logo(folder, case, bomb_png)
    brief = write_brief(folder, "logo-refused", provider={"name": "nvidia"},
                        brand={"name": "Acme", "palette": ["#ff6b6b"], "logo": {"path": "logo.png"}})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 2, err
    assert summary is None
    [line] = [line.strip() for line in err.splitlines() if "brand.logo.path" in line]
    assert line.startswith(f"brand.logo.path: {reason}"), err
    assert len(err.strip().splitlines()) == 2, err  # "error: invalid brief in <file>:" and the reason
    assert "Traceback" not in err and not re.search(r"\b[A-Z]\w*Error\b", err), err
    assert not out.exists(), "a refused logo wrote something"
    assert sum(nvidia.calls.values()) == 0, "quota was spent on a brief with a refused logo"
    assert not [size for size in decoded if size[0] * size[1] > 16_000_000], "the bomb's pixels were decoded"


def test_a_large_logo_is_decoded_a_fixed_number_of_times_not_per_render(prefect_harness, tmp_path, capsys,
                                                                        decoded):
    side = 4000  # 16 MP: the largest logo allowed
    gradient = Image.radial_gradient("L").resize((side, side))
    Image.merge("RGBA", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient,
                         gradient.point(lambda v: 255 - v))).save(tmp_path / "logo.png", compress_level=1)
    targets = [{"name": "thumb", "platform": "web", "width": 128, "height": 128, "format": "JPEG"},
               {"name": "wide", "platform": "web", "width": 240, "height": 135, "format": "PNG"}]
    brief = write_brief(tmp_path, "logo-large", provider=SMALL_LOCAL, targets=targets,
                        subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 7, "variations": 3}],
                        brand={"name": "Acme", "palette": ["#ff6b6b"],
                               "logo": {"path": "logo.png", "scale": 0.25, "opacity": 1.0}})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["published"] == 3, summary
    assert consistency_problems(out, masters=3) == []
    # once by the brief's check (the CLI's load and the flow's share it), once to prepare the run's
    # marks: 2 for 3 masters x 2 targets, where every render decoded it before (6.5 GB at 12000 px)
    assert decoded.count((side, side)) == 2, decoded
    assert not [size for size in decoded if size[0] * size[1] > 1_000_000 and size != (side, side)], decoded
