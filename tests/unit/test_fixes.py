"""Local fixes: each must move its metric the right way on an image made to fail it, stay
RGB-in/RGB-out at the same size, and leave its input untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imagegen.imaging.fixes import denoise, fix_exposure, sharpen, shift_to_palette
from imagegen.imaging.metrics import ImageMeasurements, hex_to_rgb, measure_image

DEFAULT_TONES = ((240, 246, 250), (78, 205, 196), (44, 62, 80))
BRAND = ["#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50", "#FFFFFF"]


def scene(size: int = 1024, tones=DEFAULT_TONES, grain: float = 3.0) -> Image.Image:
    """Gradient backdrop, crisp shapes and lines, light grain (a small stock-render stand-in)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1, c2 = (np.asarray(t, np.float32) for t in tones)
    w1 = (0.6 * x + 0.4 * y)[..., None]
    backdrop = (c0 * (1 - w1) + c1 * w1) * (1 - 0.5 * y[..., None] ** 2) + c2 * 0.5 * y[..., None] ** 2
    img = Image.fromarray(np.clip(backdrop, 0, 255).astype(np.uint8), "RGB")
    draw, s = ImageDraw.Draw(img), size / 1024
    draw.ellipse([150 * s, 150 * s, 550 * s, 550 * s], fill=(255, 107, 107))
    draw.rectangle([100 * s, 680 * s, 550 * s, 920 * s], fill=(255, 230, 109))
    for i in range(8):
        start, end = (600 * s, (100 + 90 * i) * s), (950 * s, (130 + 85 * i) * s)
        draw.line([start, end], fill=(44, 62, 80), width=max(2, int(4 * s)))
    return add_noise(img, grain, per_channel=False)


def add_noise(img: Image.Image, sigma: float, per_channel: bool = True) -> Image.Image:
    rng = np.random.default_rng(7)
    shape = (img.height, img.width, 3 if per_channel else 1)
    noisy = np.asarray(img, np.float32) + rng.normal(0, sigma, shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def levels(img: Image.Image, gain: float, offset: float) -> Image.Image:
    scaled = np.asarray(img, np.float32) * gain + offset
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "RGB")


def measure(img: Image.Image, tmp_path: Path, palette=None) -> ImageMeasurements:
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.png"
    img.save(path)
    result = measure_image(path, path.stem, palette=palette)
    assert result.decoded_ok
    return result


@pytest.fixture(scope="module")
def base() -> Image.Image:
    return scene()


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize(
    "fix",
    [fix_exposure, sharpen, denoise, lambda img: shift_to_palette(img, BRAND)],
    ids=["fix_exposure", "sharpen", "denoise", "shift_to_palette"],
)
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_fixes_return_rgb_of_the_same_size_and_leave_the_input_alone(base, fix, mode):
    source = base.crop((0, 0, 640, 360)).convert(mode)
    before = source.tobytes()
    result = fix(source)
    assert result.mode == "RGB"
    assert result.size == source.size
    assert source.tobytes() == before


# --------------------------------------------------------------------------- exposure


def test_fix_exposure_lifts_crushed_shadows(base, tmp_path):
    crushed = levels(base, 0.3, -60)
    before, after = measure(crushed, tmp_path), measure(fix_exposure(crushed), tmp_path)
    assert before.clipped_dark > 0.3
    assert after.clipped_dark < 0.01
    mean_luma = lambda img: np.asarray(img.convert("L")).mean()  # noqa: E731
    assert mean_luma(fix_exposure(crushed)) > mean_luma(crushed) + 20


def test_fix_exposure_rolls_off_blown_highlights(base, tmp_path):
    blown = levels(base, 1.5, 60)
    before, after = measure(blown, tmp_path), measure(fix_exposure(blown), tmp_path)
    assert before.clipped_bright > 0.4
    assert after.clipped_bright < 0.01


def test_fix_exposure_brightens_an_underexposed_image_toward_mid_grey(base):
    dark = levels(base, 0.35, 0)
    mean_before = np.asarray(dark.convert("L")).mean()
    mean_after = np.asarray(fix_exposure(dark).convert("L")).mean()
    assert mean_before < 80
    assert abs(mean_after - 128) < abs(mean_before - 128) / 2


# --------------------------------------------------------------------------- sharpen


def test_sharpen_raises_sharpness_of_a_blurred_image(base, tmp_path):
    blurred = base.filter(ImageFilter.GaussianBlur(2))
    before, after = measure(blurred, tmp_path), measure(sharpen(blurred), tmp_path)
    assert after.sharpness > before.sharpness * 2


def test_sharpen_scales_its_radius_with_resolution(tmp_path):
    # The same relative blur at 2x the resolution gets the same relative improvement.
    gains = []
    for size in (1024, 2048):
        blurred = scene(size).filter(ImageFilter.GaussianBlur(2 * size / 1024))
        gains.append(measure(sharpen(blurred), tmp_path).sharpness / measure(blurred, tmp_path).sharpness)
    assert gains[1] == pytest.approx(gains[0], rel=0.35)


# --------------------------------------------------------------------------- denoise


def test_denoise_lowers_noise_sigma_of_a_noisy_image(base, tmp_path):
    noisy = add_noise(base, 20)
    before, after = measure(noisy, tmp_path), measure(denoise(noisy), tmp_path)
    assert after.noise_sigma < before.noise_sigma / 2


def test_denoise_keeps_a_clean_image_sharp(base, tmp_path):
    before, after = measure(base, tmp_path), measure(denoise(base), tmp_path)
    assert after.sharpness > before.sharpness * 0.8
    assert after.noise_sigma <= before.noise_sigma


# --------------------------------------------------------------------------- palette


@pytest.fixture(scope="module")
def off_brand() -> Image.Image:
    return scene(tones=((120, 40, 140), (140, 138, 45), (20, 100, 40)))


def test_shift_to_palette_lowers_brand_delta_e(off_brand, tmp_path):
    before = measure(off_brand, tmp_path, BRAND).brand_delta_e
    gentle = measure(shift_to_palette(off_brand, BRAND), tmp_path, BRAND).brand_delta_e
    full = measure(shift_to_palette(off_brand, BRAND, strength=1.0), tmp_path, BRAND).brand_delta_e
    assert gentle < before * 0.8
    assert full < gentle


def test_shift_to_palette_with_zero_strength_is_identity(off_brand):
    assert shift_to_palette(off_brand, BRAND, strength=0.0).tobytes() == off_brand.tobytes()


def test_shift_to_palette_keeps_texture(off_brand):
    # Regions move by an offset, so local variation (grain, shading) survives.
    shifted = shift_to_palette(off_brand, BRAND, strength=1.0)
    texture = lambda img: np.asarray(img.convert("L"), np.float32)[400:500, 700:800].std()  # noqa: E731
    assert texture(shifted) > texture(off_brand) * 0.7


def test_shift_to_palette_barely_moves_an_on_brand_image():
    img = Image.new("RGB", (256, 256), hex_to_rgb("#FFFFFF"))
    ImageDraw.Draw(img).rectangle([40, 40, 200, 200], fill=hex_to_rgb("#4ECDC4"))
    diff = np.abs(np.asarray(shift_to_palette(img, BRAND), np.int16) - np.asarray(img, np.int16))
    assert diff.max() <= 2
