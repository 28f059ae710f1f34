"""Quality-gate measurements: each metric passes an image made to pass and fails one made to fail.

Images are synthetic (numpy/Pillow) so the tests need no fixtures on disk. The thresholds below
are the recommended policy defaults; the assertions use them so a drifting metric shows up here.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, features

from imagegen.imaging import metrics
from imagegen.imaging.metrics import (
    ImageMeasurements,
    blockiness,
    brand_delta_e,
    ciede2000,
    dominant_colors,
    exposure_clipping,
    find_near_duplicates,
    hex_to_rgb,
    measure_image,
    noise_sigma,
    phash,
    phash_distance,
    rgb_to_lab,
    sharpness,
    sniff_format,
)

DEFAULT_TONES = ((240, 246, 250), (78, 205, 196), (44, 62, 80))
BRAND = ["#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50", "#FFFFFF"]
OFF_BRAND_TONES = ((120, 40, 140), (140, 138, 45), (20, 100, 40))

# Recommended policy defaults (units: see the imagegen.imaging.metrics module docstring).
MIN_SHARPNESS = 35.0
MAX_BLOCKINESS = 3.0
MAX_CLIPPED_FRACTION = 0.05
MAX_NOISE_SIGMA = 2.5
MAX_BRAND_DELTA_E = 15.0
DUPLICATE_MAX_DISTANCE = 8


# --------------------------------------------------------------------------- synthetic images


def scene(size: int = 1024, seed: int = 0, grain: float = 3.0, tones=None) -> Image.Image:
    """A stock-render-like image: smooth gradient backdrop, crisp shapes and lines, light grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1, c2 = (np.asarray(t, np.float32) for t in (tones or DEFAULT_TONES))
    w1 = (0.6 * x + 0.4 * y)[..., None]
    w2 = (y**2)[..., None] * 0.5
    backdrop = (c0 * (1 - w1) + c1 * w1) * (1 - w2) + c2 * w2
    img = Image.fromarray(np.clip(backdrop, 0, 255).astype(np.uint8), "RGB")
    draw, s = ImageDraw.Draw(img), size / 2048
    cx, cy = rng.uniform(500, 1500, 2) * s
    draw.ellipse([cx - 380 * s, cy - 380 * s, cx + 380 * s, cy + 380 * s], fill=(255, 107, 107))
    draw.rounded_rectangle([200 * s, 1350 * s, 1100 * s, 1850 * s], radius=int(60 * s), fill=(255, 230, 109))
    for i in range(8):
        start, end = (1200 * s, (200 + 180 * i) * s), (1900 * s, (260 + 170 * i) * s)
        draw.line([start, end], fill=(44, 62, 80), width=max(2, int(8 * s)))
    draw.text((150 * s, 120 * s), "SPRING SALE -30%", fill=(255, 255, 255), font_size=int(110 * s))
    return add_noise(img, grain, seed, per_channel=False)


def add_noise(img: Image.Image, sigma: float, seed: int = 1, per_channel: bool = True) -> Image.Image:
    rng = np.random.default_rng(seed)
    shape = (img.height, img.width, 3) if per_channel else (img.height, img.width, 1)
    noisy = np.asarray(img, np.float32) + rng.normal(0, sigma, shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def levels(img: Image.Image, gain: float, offset: float) -> Image.Image:
    scaled = np.asarray(img, np.float32) * gain + offset
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "RGB")


def flat_palette_image(colours: list[tuple[int, int, int]], size: int = 512) -> Image.Image:
    """Background in colours[0], one shape per remaining colour, light grain."""
    img = Image.new("RGB", (size, size), colours[0])
    draw = ImageDraw.Draw(img)
    step = size // (len(colours) + 1)
    for i, colour in enumerate(colours[1:], start=1):
        draw.rectangle([i * step - step // 3, step, i * step + step // 3, size - step], fill=colour)
    return add_noise(img, 2.0, per_channel=False)


def save(img: Image.Image, path: Path, fmt: str = "PNG", **options) -> Path:
    img.save(path, fmt, **options)
    return path


def measure(img: Image.Image, tmp_path: Path, fmt: str = "PNG", palette=None, **options) -> ImageMeasurements:
    path = save(img, tmp_path / f"img.{fmt.lower()}", fmt, **options)
    return measure_image(path, "img", palette=palette)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def crisp() -> Image.Image:
    return scene(1024)


# --------------------------------------------------------------------------- sniff_format


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "AVIF", "GIF", "TIFF", "BMP"])
def test_sniff_format_recognises_each_format_by_magic_bytes(fmt):
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow build has no AVIF encoder")
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, fmt)
    assert sniff_format(buffer.getvalue()[:64]) == fmt


def test_sniff_format_finds_avif_in_compatible_brands_only():
    # major brand mif1, compatible brands mif1 + avif (as some encoders write it)
    ftyp = struct.pack(">I", 24) + b"ftyp" + b"mif1" + b"\x00\x00\x00\x00" + b"mif1" + b"avif"
    assert sniff_format(ftyp + b"\x00" * 16) == "AVIF"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world, not an image",
        struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isommp41",  # MP4 video
        struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic",  # HEIC, not AVIF
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF but audio
    ],
)
def test_sniff_format_returns_none_for_other_content(head):
    assert sniff_format(head) is None


# --------------------------------------------------------------------------- measure_image


def test_measure_image_reports_a_good_png(crisp, tmp_path):
    result = measure(crisp, tmp_path, palette=BRAND)

    assert result.decoded_ok and result.decode_error is None
    assert (result.width, result.height) == (1024, 1024)
    assert result.format_detected == result.format_declared == "PNG"
    assert result.bytes == (tmp_path / "img.png").stat().st_size
    assert len(result.dominant_colors) == len(result.dominant_shares) == 5
    assert all(c.startswith("#") and len(c) == 7 for c in result.dominant_colors)
    assert result.dominant_shares == sorted(result.dominant_shares, reverse=True)
    assert sum(result.dominant_shares) == pytest.approx(1.0, abs=0.01)
    assert result.phash is not None and len(result.phash) == 16
    assert result.brand_delta_e is not None and result.brand_delta_e < MAX_BRAND_DELTA_E


def test_measure_image_result_stays_small_when_pickled(crisp, tmp_path):
    # Prefect pickles task results: no pixels may ride along.
    assert len(pickle.dumps(measure(crisp, tmp_path))) < 2_000


def test_brand_delta_e_is_none_without_palette(crisp, tmp_path):
    assert measure(crisp, tmp_path).brand_delta_e is None


def test_format_is_detected_from_content_not_extension(crisp, tmp_path):
    path = save(crisp, tmp_path / "actually_a_jpeg.png", "JPEG", quality=90)
    result = measure_image(path, "x")
    assert result.decoded_ok
    assert result.format_detected == "JPEG"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_reported_not_raised(crisp, tmp_path, fmt):
    data = io.BytesIO()
    crisp.save(data, fmt)
    path = tmp_path / "truncated"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])

    result = measure_image(path, "t")

    assert result.decoded_ok is False
    assert "truncated" in result.decode_error
    assert result.format_detected == fmt  # the header survived
    assert (result.width, result.height) == (1024, 1024)
    assert result.sharpness == 0.0 and result.phash is None


def test_non_image_bytes_are_reported(tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    result = measure_image(path, "n")
    assert result.decoded_ok is False
    assert result.format_detected is None
    assert "not a recognised image format" in result.decode_error


def test_empty_and_missing_files_are_reported(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert measure_image(empty, "e").decode_error == "empty file"
    missing = measure_image(tmp_path / "missing.png", "m")
    assert missing.decoded_ok is False and missing.decode_error.startswith("cannot read file")


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (1, 1), (10, 20, 30)),
        Image.new("RGB", (7, 5), (10, 20, 30)),
        Image.new("P", (64, 48), 3),
        Image.new("CMYK", (64, 48), (0, 100, 100, 0)),
        Image.fromarray(np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)),
    ],
    ids=["1x1", "7x5", "palette", "cmyk", "16-bit"],
)
def test_unusual_but_valid_images_measure_without_nan(tmp_path, img):
    path = save(img, tmp_path / "odd.tiff", "TIFF")
    result = measure_image(path, "odd", palette=BRAND)
    assert result.decoded_ok
    numbers = [result.sharpness, result.blockiness, result.noise_sigma, result.brand_delta_e]
    assert all(np.isfinite(numbers))


def test_transparency_is_flattened_onto_white(tmp_path):
    path = save(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), tmp_path / "clear.png")
    result = measure_image(path, "clear")
    assert result.dominant_colors == ["#ffffff"]
    assert result.clipped_bright == 1.0


@pytest.mark.parametrize("width,height", [(9000, 8000), (20000, 20000)])
def test_decompression_bombs_are_refused(tmp_path, width, height):
    # 72 MP trips our 64 MP limit; 400 MP trips Pillow's own DecompressionBombError at open.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(width, height))
    result = measure_image(path, "b")
    assert result.decoded_ok is False
    assert "decompression bomb" in result.decode_error


def test_sharpness_does_not_depend_on_resolution(tmp_path):
    # Measured at the fixed analysis size, the same scene at 1024 and 2048 px scores alike
    # (a Laplacian on native pixels would differ ~4x).
    small = measure(scene(1024), tmp_path).sharpness
    large = measure(scene(2048), tmp_path).sharpness
    assert large == pytest.approx(small, rel=0.35)


# --------------------------------------------------------------------------- sharpness


def test_sharpness_of_known_patterns():
    assert sharpness(np.full((64, 64), 128.0)) == 0.0
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2) * 255.0
    # 4-neighbour Laplacian is +-4*255 everywhere, so its variance is 1020**2.
    assert sharpness(checkerboard) == pytest.approx(1020.0**2)


def test_sharpness_passes_crisp_and_fails_blurred(crisp, tmp_path):
    crisp_score = measure(crisp, tmp_path).sharpness
    blurred_score = measure(crisp.filter(ImageFilter.GaussianBlur(4)), tmp_path).sharpness
    assert crisp_score > MIN_SHARPNESS * 3
    assert blurred_score < MIN_SHARPNESS
    assert crisp_score / blurred_score > 10


# --------------------------------------------------------------------------- blockiness


def test_blockiness_passes_png_and_fails_jpeg_quality_5(crisp, tmp_path):
    png = measure(crisp, tmp_path).blockiness
    jpeg_q5 = measure(crisp, tmp_path, "JPEG", quality=5).blockiness
    jpeg_q95 = measure(crisp, tmp_path, "JPEG", quality=95).blockiness
    assert png == pytest.approx(1.0, abs=0.1)
    assert jpeg_q95 < MAX_BLOCKINESS
    assert jpeg_q5 > MAX_BLOCKINESS * 2


def test_blockiness_ignores_real_edges_that_sit_on_the_block_grid():
    # Flat graphics drawn at multiples of 8 put every edge on a block boundary.
    img = Image.new("L", (512, 512), 240)
    draw = ImageDraw.Draw(img)
    for x in range(0, 512, 64):
        draw.rectangle([x, x, x + 31, 511], fill=(x * 7) % 256)
    assert blockiness(np.asarray(img, np.float32)) == pytest.approx(1.0, abs=0.05)


def test_blockiness_of_synthetic_blocks_and_of_smooth_ramp():
    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.arange(256.0), np.arange(256.0)) / 2.0
    blocks = np.kron(rng.uniform(100, 140, (32, 32)), np.ones((8, 8))) + smooth / 8
    assert blockiness(smooth) == pytest.approx(1.0, abs=0.01)
    assert blockiness(blocks) > 20


def test_blockiness_needs_the_native_grid(crisp, tmp_path):
    # Downscaling a blocky JPEG by a non-multiple of 8 scatters the block edges: why
    # measure_image measures blockiness on the original pixels.
    path = save(crisp, tmp_path / "q5.jpg", "JPEG", quality=5)
    decoded = Image.open(path).convert("L")
    native = blockiness(metrics.native_gray_crop(decoded))
    resampled = blockiness(np.asarray(decoded.resize((700, 700), Image.Resampling.LANCZOS), np.float32))
    assert native > MAX_BLOCKINESS * 2 > resampled


# --------------------------------------------------------------------------- exposure


def test_exposure_clipping_fractions_are_exact():
    ramp = np.tile(np.arange(256.0), (4, 1))
    dark, bright = exposure_clipping(ramp)
    assert dark == pytest.approx(3 / 256) and bright == pytest.approx(3 / 256)


def test_exposure_passes_well_exposed_and_fails_black_or_white(crisp, tmp_path):
    normal = measure(crisp, tmp_path)
    crushed = measure(levels(crisp, 0.3, -60), tmp_path)
    blown = measure(levels(crisp, 1.5, 60), tmp_path)
    assert normal.clipped_dark < MAX_CLIPPED_FRACTION and normal.clipped_bright < MAX_CLIPPED_FRACTION
    assert crushed.clipped_dark > 0.3
    assert blown.clipped_bright > 0.4


# --------------------------------------------------------------------------- noise


def test_noise_sigma_recovers_known_noise_on_flat_grey():
    rng = np.random.default_rng(0)
    noisy = 128.0 + rng.normal(0, 10.0, (512, 512))
    assert noise_sigma(noisy) == pytest.approx(10.0, rel=0.05)


def test_noise_sigma_of_a_flat_image_is_zero_not_nan():
    assert noise_sigma(np.full((64, 64), 77.0)) == 0.0


def test_noise_sigma_does_not_read_crisp_edges_as_noise():
    img = Image.new("L", (512, 512), 30)
    draw = ImageDraw.Draw(img)
    for i in range(12):
        draw.line([(0, 40 * i), (511, 40 * i + 200)], fill=230, width=3)
        draw.ellipse([20 * i, 30 * i, 20 * i + 90, 30 * i + 90], outline=200, width=2)
    assert noise_sigma(np.asarray(img, np.float32)) < 0.5


def test_noise_passes_clean_and_fails_noisy(crisp, tmp_path):
    clean = measure(crisp, tmp_path).noise_sigma
    noisy = measure(add_noise(crisp, 25), tmp_path).noise_sigma
    assert clean < MAX_NOISE_SIGMA * 0.6
    assert noisy > MAX_NOISE_SIGMA * 2


# --------------------------------------------------------------------------- colour


def test_hex_to_rgb():
    assert hex_to_rgb("#FF6B6B") == (255, 107, 107)
    assert hex_to_rgb("4ecdc4") == (78, 205, 196)
    assert hex_to_rgb("#f6b") == (255, 102, 187)
    for bad in ("#12345", "#gggggg", ""):
        with pytest.raises(ValueError):
            hex_to_rgb(bad)


def test_dominant_colors_are_ordered_with_true_shares():
    img = Image.new("RGB", (100, 100), (30, 60, 200))
    img.paste((220, 40, 40), (0, 0, 100, 60))  # 60 % red, 40 % blue
    dominant = dominant_colors(img, k=5)
    assert [colour for colour, _ in dominant] == [(220, 40, 40), (30, 60, 200)]
    assert [share for _, share in dominant] == pytest.approx([0.6, 0.4])


def test_dominant_color_shares_follow_area_not_octree_bucket_order():
    # Pillow's octree files leftover pixels under index 0; shares must reflect area.
    img = scene(512)
    dominant = dominant_colors(img, k=5)
    assert max(share for _, share in dominant) < 0.45


# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
# supplementary test data, and mathematical observations", Table 1 (pairs 1, 2, 4, 7, 17, 25, 29, 31, 34).
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize("lab1,lab2,expected", SHARMA_PAIRS)
def test_ciede2000_matches_sharma_reference_data(lab1, lab2, expected):
    assert float(ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=1e-4)
    assert float(ciede2000(np.array(lab2), np.array(lab1))) == pytest.approx(expected, abs=1e-4)


def test_rgb_to_lab_matches_reference_srgb_values():
    lab = rgb_to_lab([(255, 255, 255), (255, 0, 0)])
    assert lab[0] == pytest.approx([100.0, 0.0, 0.0], abs=0.01)
    assert lab[1] == pytest.approx([53.24, 80.09, 67.20], abs=0.05)


def test_brand_delta_e_uses_nearest_palette_colour_and_weights_by_share():
    assert brand_delta_e([((78, 205, 196), 1.0)], BRAND) == pytest.approx(0.0, abs=1e-6)
    grey = (128, 128, 128)
    grey_to_brand = float(ciede2000(rgb_to_lab([grey]), rgb_to_lab([hex_to_rgb(c) for c in BRAND])).min())
    mixed = brand_delta_e([((255, 107, 107), 0.75), (grey, 0.25)], BRAND)
    assert mixed == pytest.approx(0.25 * grey_to_brand, rel=1e-6)


def test_brand_delta_e_passes_on_palette_and_fails_off_palette(tmp_path):
    on = flat_palette_image([hex_to_rgb(c) for c in ("#FFFFFF", "#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50")])
    off = flat_palette_image([(192, 192, 255), (123, 45, 142), (142, 138, 45), (224, 123, 0), (26, 107, 47)])
    on_score = measure(on, tmp_path, palette=BRAND).brand_delta_e
    off_score = measure(off, tmp_path, palette=BRAND).brand_delta_e
    assert on_score < 2.0  # below a just-noticeable difference
    assert off_score > MAX_BRAND_DELTA_E


def test_brand_delta_e_separates_rich_on_and_off_brand_scenes(tmp_path):
    on_score = measure(scene(1024), tmp_path, palette=BRAND).brand_delta_e
    off_score = measure(scene(1024, tones=OFF_BRAND_TONES), tmp_path, palette=BRAND).brand_delta_e
    assert on_score < MAX_BRAND_DELTA_E < off_score


# --------------------------------------------------------------------------- near duplicates


def test_phash_distance():
    assert phash_distance("0000000000000000", "000000000000000f") == 4
    assert phash_distance("ffffffffffffffff", "0000000000000000") == 64
    with pytest.raises(ValueError):
        phash_distance("00", "0000")


def test_phash_passes_different_images_and_flags_near_identical(crisp):
    original = phash(crisp)
    recompressed = io.BytesIO()
    crisp.save(recompressed, "JPEG", quality=70)
    near = [
        Image.open(recompressed),
        crisp.resize((512, 512)),
        ImageEnhance.Brightness(crisp).enhance(1.08),
        add_noise(crisp, 10),
    ]
    different = [
        scene(1024, seed=2),
        scene(1024, tones=OFF_BRAND_TONES),
        crisp.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    ]
    assert max(phash_distance(original, phash(img)) for img in near) <= DUPLICATE_MAX_DISTANCE // 2
    assert min(phash_distance(original, phash(img)) for img in different) > DUPLICATE_MAX_DISTANCE


def test_find_near_duplicates_points_later_images_at_the_earliest_match():
    hashes = [
        ("a", "0000000000000000"),
        ("b", "0000000000000003"),  # 2 from a
        ("c", "ffffffffffffffff"),
        ("d", "000000000000000f"),  # 4 from a, 2 from b: points at a
        ("e", ""),  # failed decode: skipped
        ("f", "fffffffffffffff0"),  # 4 from c
    ]
    assert find_near_duplicates(hashes, max_distance=4) == {"b": "a", "d": "a", "f": "c"}
    assert find_near_duplicates(hashes, max_distance=0) == {}
