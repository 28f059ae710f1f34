"""Content-aware crops: the subject stays in, the aspect is the target's, the size is exact."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imagegen.imaging import crop
from imagegen.imaging.crop import (
    BICUBIC_MAX_FACTOR,
    downscale_filter,
    largest_window,
    plan_crop,
    render_variant,
    saliency_map,
)
from imagegen.imaging.resample import resample as resample_image
from imagegen.render.renderer import describe_scene, render_local


def _scene_with_object(size=(1000, 1000), box=(760, 420, 900, 580), colour=(200, 30, 40)) -> Image.Image:
    """A soft beige gradient with one small red object far from the centre."""
    w, h = size
    ramp = np.linspace(225, 205, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    img = Image.fromarray(ramp.astype(np.uint8), "RGB")
    ImageDraw.Draw(img).ellipse(box, fill=colour)
    return img


def _contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def _aspect_matches(box, target_w, target_h) -> bool:
    w, h = box[2] - box[0], box[3] - box[1]
    # within one pixel of rounding on the computed side
    return abs(w - h * target_w / target_h) <= 1.0 or abs(h - w * target_h / target_w) <= 1.0


def test_saliency_map_is_small_normalised_and_peaks_on_the_object():
    img = _scene_with_object()
    sal = saliency_map(img)
    assert sal.shape == (256, 256) and sal.dtype == np.float32
    assert 0.0 <= sal.min() and sal.max() == pytest.approx(1.0)
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    assert 0.72 < x / 256 < 0.93 and 0.38 < y / 256 < 0.62


def test_saliency_map_keeps_the_aspect():
    assert saliency_map(Image.new("RGB", (1200, 600), "white")).shape == (128, 256)


def test_off_centre_object_is_kept_where_a_centre_crop_loses_it():
    img = _scene_with_object()
    obj = (760, 420, 900, 580)
    box = plan_crop(saliency_map(img), 1000, 1000, 1080, 1920)  # 9:16 from 1:1
    assert _contains(box, obj)
    centre_w = round(1000 * 1080 / 1920)
    centre = ((1000 - centre_w) // 2, 0, (1000 - centre_w) // 2 + centre_w, 1000)
    assert not _contains(centre, obj), "the test object must be one a centre crop cuts"
    assert _aspect_matches(box, 1080, 1920)


def test_wide_target_from_square_keeps_a_low_object():
    img = _scene_with_object(box=(200, 780, 360, 930))
    box = plan_crop(saliency_map(img), 1000, 1000, 1910, 1000)  # 1.91:1 link card
    assert box[0] == 0 and box[2] == 1000 and _contains(box, (200, 780, 360, 930))
    assert _aspect_matches(box, 1910, 1000)


@pytest.mark.parametrize("target", [(1080, 1920), (1200, 628), (1080, 1350), (1080, 1080), (1600, 900)])
def test_render_variant_is_exact_size_and_never_stretched(target):
    img = _scene_with_object()
    sal = saliency_map(img)
    out = render_variant(img, *target, saliency=sal)
    assert out.size == target and out.mode == "RGB"
    assert _aspect_matches(plan_crop(sal, 1000, 1000, *target), *target)


def test_render_variant_keeps_the_object_visible():
    img = _scene_with_object()
    out = np.asarray(render_variant(img, 540, 960))
    red = (out[..., 0] > 150) & (out[..., 1] < 90)
    assert red.sum() > 0.02 * red.size


def test_small_source_is_upscaled_not_stretched():
    img = _scene_with_object(size=(400, 400), box=(300, 150, 380, 250))
    out = render_variant(img, 1080, 1350)
    assert out.size == (1080, 1350)


def test_same_aspect_uses_the_whole_image():
    sal = saliency_map(_scene_with_object())
    assert plan_crop(sal, 1000, 1000, 1080, 1080) == (0, 0, 1000, 1000)


def test_largest_window_rules():
    assert largest_window(2048, 2048, 1080, 1920) == (1152, 2048)
    assert largest_window(2048, 2048, 1200, 628) == (2048, 1072)
    assert largest_window(1920, 1080, 1080, 1080) == (1080, 1080)
    with pytest.raises(ValueError):
        largest_window(0, 10, 10, 10)


def test_flat_image_falls_back_to_a_centred_crop():
    img = Image.new("RGB", (800, 800), (120, 130, 140))
    box = plan_crop(saliency_map(img), 800, 800, 400, 800)
    assert box == (200, 0, 600, 800)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rendered_product_survives_a_story_crop(seed):
    spec = {"subject": "perfume bottle", "style": "product", "composition": "rule_of_thirds"}
    img = render_local(spec, seed, 1024, 1024)
    hero = describe_scene(spec, seed, 1024, 1024)["hero_box"]
    box = plan_crop(saliency_map(img), 1024, 1024, 1080, 1920)
    assert box[0] <= hero[0] + 2 and box[2] >= hero[2] - 2


# --------------------------------------------------------------------------- resampling filter

GRAINY = {"subject": "a neon motorcycle in a rainy street", "style": "cyberpunk", "lighting": "moody",
          "composition": "leading_lines", "mood": "electric"}
PRODUCT = {"subject": "a ceramic coffee mug with tulips", "style": "product", "lighting": "product",
           "composition": "rule_of_thirds"}


def _full_luma_ssim(a: Image.Image, b: Image.Image) -> float:
    from skimage.metrics import structural_similarity

    x, y = (np.asarray(im.convert("L"), dtype=np.float64) for im in (a, b))
    return float(structural_similarity(x, y, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def test_downscale_filter_is_bicubic_within_2x_only():
    bicubic, lanczos = Image.Resampling.BICUBIC, Image.Resampling.LANCZOS
    assert BICUBIC_MAX_FACTOR == 2.0
    assert downscale_filter(2048, 1920) == bicubic  # hero, story, srcset top: 1.07
    assert downscale_filter(2048, 1080) == bicubic  # instagram square: 1.90
    assert downscale_filter(2048, 1024) == bicubic  # exactly 2x
    assert downscale_filter(2048, 1023) == lanczos  # beyond 2x: LANCZOS after an integer box reduce
    assert downscale_filter(2048, 300) == lanczos  # thumbnails
    assert downscale_filter(1080, 1080) == lanczos  # no scaling
    assert downscale_filter(400, 1350) == lanczos  # upscales keep LANCZOS


@pytest.mark.parametrize("spec", [GRAINY, PRODUCT], ids=["grainy", "product"])
def test_bicubic_variants_match_lanczos_within_the_ssim_bound(spec, monkeypatch):
    """Within 2x, render_variant's BICUBIC output is the LANCZOS one to full-size luma SSIM >= 0.995
    (the grain of the neon look is the worst case; the product look is >= 0.999); beyond 2x and for
    upscales it is LANCZOS itself."""
    img = render_local({**spec, "palette": ["#ff6b6b", "#4ecdc4", "#ffe66d", "#2c3e50"]}, 1, 1024, 1024)
    sal = saliency_map(img)
    floor = 0.995 if spec is GRAINY else 0.999
    filters: list[int] = []

    def spy(image, size, resample, *args, **kwargs):
        filters.append(resample)
        return resample_image(image, size, resample, *args, **kwargs)

    monkeypatch.setattr(crop, "resample_image", spy)
    # factors 1.07 (hero, story), 1.28 (x), 1.71 (link card), 1.90 (square), then 3.4 and 0.8
    for target in [(960, 300), (540, 960), (800, 450), (600, 314), (540, 540), (300, 300), (1280, 1280)]:
        box = plan_crop(sal, img.width, img.height, *target)
        out = render_variant(img, *target, saliency=sal)
        assert out.size == target
        factor = (box[2] - box[0]) / target[0]
        # the bound holds against Pillow's own LANCZOS, whichever engine (libvips, Pillow) resampled
        pillow_lanczos = img.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        if 1.0 < factor <= 2.0:
            assert filters[-1] == Image.Resampling.BICUBIC
            assert _full_luma_ssim(pillow_lanczos, out) >= floor, (target, factor)
        else:
            assert filters[-1] == Image.Resampling.LANCZOS
            assert out.tobytes() == resample_image(img, target, Image.Resampling.LANCZOS, box=box,
                                                   reducing_gap=3.0).tobytes()
            assert _full_luma_ssim(pillow_lanczos, out) >= 0.99, (target, factor)
