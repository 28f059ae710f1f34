"""Brand operations: border, logo overlay, palette swatch, grading presets, outpaint canvas."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagegen.imaging import brand


def _scene(width: int = 320, height: int = 240) -> Image.Image:
    """Neutral-ish colourful test image: gradients in all three channels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([60 + 140 * x / width, 70 + 120 * y / height, 180 - 100 * x / width], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def _means(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def _luma(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float64)


def _saturation(img: Image.Image) -> float:
    return float(np.asarray(img.convert("HSV"), dtype=np.float64)[..., 1].mean())


# --------------------------------------------------------------------------- border


def test_border_in_pixels_and_as_share() -> None:
    img = _scene()
    framed = brand.add_border(img, 10, "#ff0000")
    assert framed.size == (340, 260)
    assert framed.getpixel((0, 0)) == (255, 0, 0) and framed.getpixel((9, 130)) == (255, 0, 0)
    assert framed.getpixel((10, 10)) == img.getpixel((0, 0))
    assert brand.add_border(img, 0.05).size == (320 + 24, 240 + 24)  # 5 % of 240 = 12 px each side
    rgba = brand.add_border(img.convert("RGBA"), 4, (0, 0, 255))
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 0, 255, 255)
    assert img.size == (320, 240)  # input untouched


# --------------------------------------------------------------------------- logo

def _logo() -> Image.Image:
    logo = Image.new("RGBA", (200, 100), (0, 0, 255, 255))  # opaque blue, 2:1
    return logo


@pytest.mark.parametrize("position,corner", [("se", (1, 1)), ("sw", (0, 1)), ("ne", (1, 0)), ("nw", (0, 0))])
def test_logo_lands_in_the_requested_corner(position, corner):
    base = Image.new("RGB", (1000, 800), (255, 255, 255))
    out = brand.overlay_logo(base, _logo(), position=position, opacity=1.0, scale=0.2, margin=0.05)
    assert out.mode == "RGB" and out.size == base.size
    blue = np.asarray(out)[..., 2].astype(int) - np.asarray(out)[..., 0]
    ys, xs = np.nonzero(blue > 200)
    # 20 % of 1000 = 200 px wide, aspect kept -> 100 px high; margin 5 % of 800 = 40 px
    assert xs.max() - xs.min() + 1 == 200 and ys.max() - ys.min() + 1 == 100
    expected_x = 40 if corner[0] == 0 else 1000 - 40 - 200
    expected_y = 40 if corner[1] == 0 else 800 - 40 - 100
    assert (xs.min(), ys.min()) == (expected_x, expected_y)


def test_logo_opacity_blends_and_centre_works():
    base = Image.new("RGB", (400, 400), (255, 255, 255))
    out = brand.overlay_logo(base, _logo(), position="center", opacity=0.5, scale=0.5)
    r, g, b = out.getpixel((200, 200))
    assert 120 <= r <= 135 and b == 255  # half blue over white
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_logo_rejects_bad_arguments():
    base = Image.new("RGB", (100, 100))
    with pytest.raises(ValueError):
        brand.overlay_logo(base, _logo(), position="bottom-right")
    with pytest.raises(ValueError):
        brand.overlay_logo(base, _logo(), opacity=1.5)


# --------------------------------------------------------------------------- palette


def test_palette_swatch_finds_colours_and_shares() -> None:
    img = Image.new("RGB", (100, 100), "#1d3557")
    img.paste((230, 57, 70), (0, 0, 100, 30))   # 30 %
    img.paste((241, 196, 15), (0, 30, 100, 50))  # 20 %
    swatch = brand.palette_swatch(img, k=3, size=(300, 40))
    assert swatch.hex == ["#1d3557", "#e63946", "#f1c40f"]
    assert swatch.shares == pytest.approx([0.5, 0.3, 0.2], abs=0.01)
    assert swatch.image.size == (300, 40)
    assert swatch.image.getpixel((10, 20)) == (29, 53, 87)
    assert swatch.image.getpixel((160, 20)) == (230, 57, 70)  # bars are as wide as their shares
    assert swatch.image.getpixel((260, 20)) == (241, 196, 15)


# --------------------------------------------------------------------------- grading


def test_publishing_web_options_accept_exactly_the_grading_presets() -> None:
    """publishing.WebOptions spells the presets out (importing brand there would load scikit-image)."""
    from typing import get_args

    from imagegen.publishing import WebOptions

    literal, none = get_args(WebOptions.model_fields["grade"].annotation)
    assert get_args(literal) == brand.GRADING_PRESETS and none is type(None)


def test_white_balance_gains_keep_luminance() -> None:
    for temperature, tint in ((0.4, 0.05), (-0.7, 0.2), (1.0, -1.0)):
        r, g, b = brand.white_balance_gains(temperature, tint)
        assert 0.2126 * r + 0.7152 * g + 0.0722 * b == pytest.approx(1.0)
    r, _, b = brand.white_balance_gains(0.5)
    assert r > 1 > b
    with pytest.raises(ValueError):
        brand.white_balance_gains(1.5)


def test_warm_and_cool_shift_white_balance_not_brightness() -> None:
    img = _scene()
    before = _means(img)
    warm, cool = _means(brand.grade(img, "warm")), _means(brand.grade(img, "cool"))
    assert warm[0] - warm[2] > before[0] - before[2] + 15
    assert cool[0] - cool[2] < before[0] - before[2] - 15
    for graded in ("warm", "cool"):
        assert _luma(brand.grade(img, graded)).mean() == pytest.approx(_luma(img).mean(), rel=0.04)


def test_grey_turns_warm_or_cool() -> None:
    grey = Image.new("RGB", (8, 8), (128, 128, 128))
    r, g, b = brand.grade(grey, "warm").getpixel((0, 0))
    assert r > g > b
    r, g, b = brand.grade(grey, "cool").getpixel((0, 0))
    assert b > r


def test_vintage_is_sepia_and_faded() -> None:
    img = _scene()
    vintage = brand.grade(img, "vintage")
    r, g, b = _means(vintage)
    assert r > g > b  # brown/cream toning
    assert _saturation(vintage) < _saturation(img) * 0.8 or _saturation(img) < 60
    lum = _luma(vintage)
    assert lum.min() >= 15 and lum.std() < _luma(img).std()  # lifted blacks, softer contrast
    black = brand.grade(Image.new("RGB", (4, 4), (0, 0, 0)), "vintage").getpixel((0, 0))
    assert min(black) >= 15 and black[0] > black[2]


def test_dramatic_adds_contrast_and_saturation() -> None:
    img = _scene()
    dramatic = brand.grade(img, "dramatic")
    assert _luma(dramatic).std() > _luma(img).std() * 1.2
    assert _saturation(dramatic) > _saturation(img) * 1.15


def test_grade_strength_alpha_and_unknown_preset() -> None:
    img = _scene().convert("RGBA")
    img.putalpha(Image.new("L", img.size, 120))
    assert np.array_equal(np.asarray(brand.grade(img, "warm", strength=0.0)), np.asarray(img))
    half, full = _means(brand.grade(img, "warm", 0.5)), _means(brand.grade(img, "warm"))
    base = _means(img)
    assert base[0] < half[0] < full[0]
    graded = brand.grade(img, "dramatic")
    assert graded.mode == "RGBA" and graded.getchannel("A").getextrema() == (120, 120)
    with pytest.raises(ValueError):
        brand.grade(img, "sunny")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- outpainting


def test_outpaint_square_to_landscape() -> None:
    img = _scene(400, 400)
    req = brand.outpaint_canvas(img, (16, 9), seam=8)
    assert req.size == (711, 400) and req.box == (156, 0, 556, 400)  # 311 new columns, centred
    assert req.image.crop(req.box).tobytes() == img.tobytes()  # original pixels untouched
    mask = np.asarray(req.mask)
    assert mask.shape == (400, 711)
    assert (mask[:, :156] == 255).all() and (mask[:, 556:] == 255).all()
    assert (mask[:, 156:164] == 255).all() and (mask[:, 548:556] == 255).all()  # seam overlap
    assert (mask[:, 164:548] == 0).all()  # top/bottom are canvas edges: no seam there
    alpha = np.asarray(req.rgba.getchannel("A"))
    assert (alpha == 255 - mask).all()
    assert "blurred border" in req.instruction and "text" in req.instruction


def test_outpaint_fill_continues_the_edges() -> None:
    img = _scene(300, 300)
    req = brand.outpaint_canvas(img, 2.0, seam=0)
    left_fill = np.asarray(req.image.crop((req.box[0] - 20, 0, req.box[0], 300)), dtype=np.float64).mean(axis=(0, 1))
    left_edge = np.asarray(img.crop((0, 0, 20, 300)), dtype=np.float64).mean(axis=(0, 1))
    assert np.abs(left_fill - left_edge).max() < 20  # mirrored colour, no black bars


def test_outpaint_portrait_anchor_and_multiple() -> None:
    img = _scene(300, 200)
    req = brand.outpaint_canvas(img, 4 / 5, anchor=(0.5, 0.0), multiple_of=16, subject_hint="a watch on slate")
    w, h = req.size
    assert w % 16 == 0 and h % 16 == 0 and w >= 300 and h >= 375
    assert req.box[1] == 0 and req.instruction.endswith("The image shows a watch on slate.")


def test_outpaint_at_same_aspect_generates_nothing() -> None:
    req = brand.outpaint_canvas(_scene(320, 240), 4 / 3)
    assert req.size == (320, 240) and req.mask.getextrema() == (0, 0)


def test_overlay_logo_is_available_from_brand() -> None:
    logo = Image.new("RGBA", (40, 20), (255, 255, 255, 255))
    out = brand.overlay_logo(_scene(), logo, position="se", opacity=1.0, scale=0.25, margin=0.05)
    assert out.getpixel((320 - 12 - 5, 240 - 12 - 5)) == (255, 255, 255)
