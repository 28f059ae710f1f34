"""Resampling through libvips: exact sizes, Pillow's result to within SSIM, Pillow where libvips can't."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from imagegen.imaging import resample as rs
from imagegen.render.renderer import render_local

GRAINY = {"subject": "a neon motorcycle in a rainy street", "style": "cyberpunk", "lighting": "moody",
          "composition": "leading_lines", "mood": "electric", "palette": ["#ff6b6b", "#4ecdc4"]}


@pytest.fixture(scope="module")
def grainy() -> Image.Image:
    return render_local(GRAINY, 3, 1024, 1024)


def _ssim(a: Image.Image, b: Image.Image) -> float:
    return structural_similarity(np.asarray(a.convert("L")), np.asarray(b.convert("L")), data_range=255)


def test_libvips_is_there_and_used(grainy, monkeypatch):
    assert rs._vips() is not None  # a declared dependency: a silent fallback would hide a broken install
    calls = []
    real = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    rs.resample(grainy, (540, 540), Image.Resampling.BICUBIC)
    assert calls == []


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size,box,filter_", [
    ((540, 540), None, Image.Resampling.BICUBIC),                      # 1.9x
    ((960, 300), (0, 340, 1024, 660), Image.Resampling.BICUBIC),       # the hero's box, 1.07x
    ((300, 500), (400.4, 0, 1014.6, 1024), Image.Resampling.LANCZOS),  # a fractional box, 2x
    ((160, 90), (0, 100, 1024, 676), Image.Resampling.LANCZOS),        # 6.4x: box-shrunk first
])
def test_downscales_match_pillow(grainy, mode, size, box, filter_):
    img = grainy.convert(mode)
    out = rs.resample(img, size, filter_, box=box, reducing_gap=3.0)
    assert out.size == size and out.mode == mode
    assert _ssim(out, img.resize(size, filter_, box=box, reducing_gap=3.0)) >= 0.99


@pytest.mark.parametrize("mode,size,filter_", [
    ("RGB", (1280, 1280), Image.Resampling.LANCZOS),   # upscale
    ("RGBA", (540, 540), Image.Resampling.BICUBIC),    # alpha: Pillow premultiplies it
    ("RGB", (540, 540), Image.Resampling.BOX),         # a filter libvips is not asked for
])
def test_what_libvips_does_not_do_is_pillows_result(grainy, mode, size, filter_):
    img = grainy.convert(mode)
    assert rs.resample(img, size, filter_).tobytes() == img.resize(size, filter_).tobytes()


def test_without_libvips_everything_is_pillows_result(grainy, monkeypatch):
    monkeypatch.setattr(rs, "_vips", lambda: None)
    out = rs.resample(grainy, (540, 540), Image.Resampling.BICUBIC, box=(0, 0, 1000, 1000))
    assert out.tobytes() == grainy.resize((540, 540), Image.Resampling.BICUBIC, box=(0, 0, 1000, 1000)).tobytes()


def test_reuse_pixels_hands_the_pixels_over_once(grainy, monkeypatch):
    img = grainy.copy()
    copies: list[int] = []  # ids: Image.__eq__ compares pixels, through tobytes
    real = Image.Image.tobytes
    monkeypatch.setattr(Image.Image, "tobytes", lambda self, *a: copies.append(id(self)) or real(self, *a))
    without = [rs.resample(img, s, Image.Resampling.BICUBIC) for s in ((540, 540), (600, 314))]
    assert copies.count(id(img)) == 2
    copies.clear()
    with rs.reuse_pixels(img):
        within = [rs.resample(img, s, Image.Resampling.BICUBIC) for s in ((540, 540), (600, 314))]
        other = rs.resample(grainy, (540, 540), Image.Resampling.BICUBIC)  # another image: its own copy
    assert copies.count(id(img)) == 1 and copies.count(id(grainy)) == 1
    assert [a.tobytes() for a in within] == [a.tobytes() for a in without]
    assert other.tobytes() == without[0].tobytes()
    copies.clear()
    rs.resample(img, (540, 540), Image.Resampling.BICUBIC)  # after the block: copied again
    assert copies.count(id(img)) == 1
