"""The brand logo: refused with its own reason when it is not a whole PNG, JPEG or WebP within the caps
(checked with the brief, a bomb never decoded), and prepared once per run as marks that stamp the same
pixels as a resize from the full logo."""

from __future__ import annotations

import copy
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imagegen.brief_source import parse_brief
from imagegen.errors import BriefError
from imagegen.imaging import logo as logo_module
from imagegen.imaging.brand import overlay_logo
from imagegen.imaging.logo import (
    MAX_LOGO_BYTES,
    MAX_LOGO_PIXELS,
    LogoError,
    LogoMarks,
    check_logo,
    mark_size,
    prepare_marks,
)

BRIEF = {
    "campaign": "logo-test",
    "brand": {"name": "Bloom", "palette": ["#ff6b6b"], "logo": {"path": "logo.png"}},
    "subjects": [{"subject": "a ceramic coffee mug"}],
}
CAPS = "a PNG, JPEG or WebP image of at most 20 MB and 16 megapixels"


def logo_problems(folder: Path, path: str = "logo.png") -> list[tuple[str, str]]:
    data = copy.deepcopy(BRIEF)
    data["brand"]["logo"]["path"] = path
    with pytest.raises(BriefError) as info:
        parse_brief(data, folder)
    return info.value.problems


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 12_000) -> bytes:
    """A valid greyscale PNG of zeros: ~140 KB that inflate to 144 MP at the default side."""
    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def image_bytes(fmt: str, size=(300, 120), mode="RGBA") -> bytes:
    buffer = io.BytesIO()
    _gradient_logo(size).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def _gradient_logo(size=(300, 120)) -> Image.Image:
    """A logo with detail and partial transparency, so resampling differences would show."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = red.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    alpha = Image.radial_gradient("L").resize(size).point(lambda v: 255 - v)
    return Image.merge("RGBA", (red, green, blue, alpha))


# --------------------------------------------------------------------------- refusals, through the brief


@pytest.mark.parametrize("name, content, expected", [
    ("text", b"this is our logo, honest\n", "a text file, not an image: give " + CAPS),
    ("svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
     "an SVG (vector) file, which is not accepted: export the logo as " + CAPS),
    ("bare svg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>',
     "an SVG (vector) file, which is not accepted: export the logo as " + CAPS),
    ("random bytes", bytes(range(256)) * 8, "not an image (not PNG, JPEG or WebP): give " + CAPS),
    ("empty", b"", "the file is empty: give " + CAPS),
], ids=["text", "svg", "bare-svg", "random-bytes", "empty"])
def test_a_logo_that_is_not_an_image_is_refused_saying_what_it_is(tmp_path, name, content, expected):
    (tmp_path / "logo.png").write_bytes(content)
    assert logo_problems(tmp_path) == [("brand.logo.path", expected)]


def test_a_gif_logo_is_refused_by_its_format(tmp_path):
    Image.new("P", (64, 64), 3).save(tmp_path / "logo.png", "GIF")
    assert logo_problems(tmp_path) == [("brand.logo.path", "a GIF image, which is not accepted: give " + CAPS)]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_logo_is_refused(tmp_path, fmt):
    data = image_bytes(fmt, mode="RGBA" if fmt != "JPEG" else "RGB")
    (tmp_path / "logo.png").write_bytes(data[: len(data) * 2 // 3])
    [(field, reason)] = logo_problems(tmp_path)
    assert field == "brand.logo.path"
    assert "truncated or damaged" in reason, reason


def test_a_bomb_logo_is_refused_by_its_header_and_never_decoded(tmp_path, decoded):
    (tmp_path / "logo.png").write_bytes(bomb_png())
    assert logo_problems(tmp_path) == [(
        "brand.logo.path",
        f"the image is 12000x12000 px, over the {MAX_LOGO_PIXELS} pixel cap for a logo (give {CAPS})")]
    assert decoded == [], "the bomb's pixels were decoded"


def test_a_header_past_pillows_own_limit_is_refused_without_a_warning(tmp_path, recwarn):
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10 gigapixels, 1 KB of data
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                                        + _chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _chunk(b"IEND", b""))
    [(_, reason)] = logo_problems(tmp_path)
    assert reason.startswith(f"the image is far over the {MAX_LOGO_PIXELS} pixel cap"), reason
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_logo_over_the_byte_cap_is_refused_unread(tmp_path, monkeypatch):
    with open(tmp_path / "logo.png", "wb") as file:
        file.truncate(MAX_LOGO_BYTES + 1)  # sparse: nothing to write, and nothing may be read
    monkeypatch.setattr(logo_module.os, "open", lambda *a, **k: pytest.fail("an oversized logo was opened"))
    assert logo_problems(tmp_path) == [(
        "brand.logo.path",
        f"the file is {MAX_LOGO_BYTES + 1} bytes, over the {MAX_LOGO_BYTES} byte cap for a logo (give {CAPS})")]


def test_a_symlink_loop_is_refused(tmp_path):
    os.symlink(tmp_path / "b.png", tmp_path / "logo.png")
    os.symlink(tmp_path / "logo.png", tmp_path / "b.png")
    assert logo_problems(tmp_path) == [("brand.logo.path", "a symlink loop: the path never reaches a file")]


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "logo.png").mkdir()
    assert logo_problems(tmp_path) == [("brand.logo.path", f"a folder, not a file: give {CAPS}")]


def test_a_missing_logo_is_refused(tmp_path):
    assert logo_problems(tmp_path, "assets/logo.png") == [
        ("brand.logo.path", f"file not found (looked for {(tmp_path / 'assets' / 'logo.png').resolve()})")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_blocking_on_it(tmp_path):
    os.mkfifo(tmp_path / "logo.png")  # opening it for reading would wait for a writer forever
    assert logo_problems(tmp_path) == [("brand.logo.path", f"a FIFO (named pipe), not a file: give {CAPS}")]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_logos_pass(tmp_path, fmt):
    (tmp_path / "logo.png").write_bytes(image_bytes(fmt, mode="RGBA" if fmt != "JPEG" else "RGB"))
    data = copy.deepcopy(BRIEF)
    brief = parse_brief(data, tmp_path)
    assert brief.logo_path == (tmp_path / "logo.png").resolve()
    assert check_logo(brief.logo_path).format == fmt


def test_a_logo_is_decoded_once_however_often_the_brief_is_loaded(tmp_path, decoded):
    (tmp_path / "logo.png").write_bytes(image_bytes("PNG", size=(321, 123)))
    for _ in range(3):
        parse_brief(copy.deepcopy(BRIEF), tmp_path)
    assert decoded.count((321, 123)) == 1
    (tmp_path / "logo.png").write_bytes(image_bytes("PNG", size=(322, 123)))  # a changed file is checked again
    parse_brief(copy.deepcopy(BRIEF), tmp_path)
    assert decoded.count((322, 123)) == 1


# --------------------------------------------------------------------------- prepared marks


@pytest.mark.parametrize("scale", [0.12, 0.15, 0.5])
def test_prepared_marks_stamp_the_same_pixels_as_the_full_logo(tmp_path, scale):
    logo = _gradient_logo((997, 413))  # odd sizes: every mark is a real downscale with rounding
    logo.save(tmp_path / "logo.png")
    widths = [1080, 1200, 1600, 1920, 627, 64]
    marks = LogoMarks(prepare_marks(tmp_path / "logo.png", widths, scale, tmp_path / "work"), scale)
    for width in widths:
        scene = Image.linear_gradient("L").resize((width, 300)).convert("RGB")
        expected = overlay_logo(scene, logo, position="se", opacity=0.6, scale=scale)
        stamped = overlay_logo(scene, marks.for_image(width), position="se", opacity=0.6, scale=scale)
        assert marks.for_image(width).size == mark_size(width, logo.size, scale)
        assert stamped.tobytes() == expected.tobytes(), width


def test_marks_are_prepared_once_per_run_folder(tmp_path, decoded):
    (tmp_path / "logo.png").write_bytes(image_bytes("PNG", size=(800, 400)))
    work = tmp_path / "work"
    first = prepare_marks(tmp_path / "logo.png", [1080, 1200], 0.15, work)
    assert decoded == [(800, 400)]
    again = prepare_marks(tmp_path / "logo.png", [1200, 1080], 0.15, work)
    assert again == first and decoded == [(800, 400)], "the marks already there were made again"
    assert sorted(first) == [162, 180]
    assert {Path(p).parent for p in first.values()} == {Path(first[162]).parent}
    assert Path(first[162]).parent.parent == work


def test_a_width_nobody_prepared_takes_the_next_larger_mark(tmp_path):
    (tmp_path / "logo.png").write_bytes(image_bytes("PNG", size=(800, 400)))
    marks = LogoMarks(prepare_marks(tmp_path / "logo.png", [1000, 2000], 0.1, tmp_path / "work"), 0.1)
    assert marks.for_image(1500).width == 200  # overlay_logo resizes it down to 150
    assert marks.for_image(5000).width == 200  # none larger: the largest
    scene = Image.new("RGB", (1500, 500))
    assert overlay_logo(scene, marks.for_image(1500), scale=0.1).size == (1500, 500)


def test_a_logo_replaced_by_a_bomb_mid_run_is_refused_when_prepared(tmp_path, decoded):
    (tmp_path / "logo.png").write_bytes(bomb_png())
    with pytest.raises(LogoError, match="12000x12000 px, over the 16000000 pixel cap"):
        prepare_marks(tmp_path / "logo.png", [1080], 0.15, tmp_path / "work")
    assert decoded == []
