"""Masked inpainting and style transfer in pixels, on images whose right answer is known: kept pixels stay
exactly as they were, repainted ones are exactly the edit's, the mask's size rule, and the style stand-ins."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagegen.imaging.masking import (
    MaskError,
    composite,
    feather_radius,
    feathered,
    fit_mask,
    inpaint_composite,
    load_mask,
)
from imagegen.imaging.style import (
    StyleReferenceError,
    describe_reference,
    left_panel,
    load_reference,
    transfer_colours,
    two_panel_canvas,
)


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def test_outside_the_feathered_mask_every_pixel_is_the_original_and_inside_the_edit():
    original, edited = _noise((200, 120), 1), _noise((200, 120), 2)
    mask = _box_mask((200, 120), (50, 30, 150, 90))
    merged, weights = inpaint_composite(original, edited, mask, feather=0.05)  # 6 px soft edge
    out, orig, edit, w = (np.asarray(im) for im in (merged, original, edited, weights))
    kept, repainted = w == 0, w == 255
    assert kept.sum() > 10_000 and repainted.sum() > 2_000  # both regions are large
    assert np.array_equal(out[kept], orig[kept])  # byte-identical where the feathered mask is 0
    assert np.array_equal(out[repainted], edit[repainted])
    soft = ~kept & ~repainted  # the feathered edge is a blend, between the two
    lo, hi = np.minimum(orig[soft], edit[soft]).astype(int), np.maximum(orig[soft], edit[soft]).astype(int)
    assert soft.any() and np.all((out[soft] >= lo - 1) & (out[soft] <= hi + 1))
    assert w[0, 0] == 0 and w[60, 100] == 255  # far outside kept, the centre repainted


def test_feathering_spreads_a_bounded_distance_only():
    mask = _box_mask((100, 100), (40, 40, 60, 60))
    soft = np.asarray(feathered(mask, feather_radius((100, 100), 0.03)))
    assert soft[50, 50] == 255 and soft[50, 30] == 0 and soft[50, 38] > 0  # 3 px radius reaches 2 px out
    assert np.array_equal(np.asarray(feathered(mask, 0)), np.asarray(mask))


def test_an_edit_of_another_size_is_resized_and_the_hard_mask_copies_the_original_exactly():
    original, edited = _noise((96, 64), 3), Image.new("RGB", (48, 32), (255, 0, 0))
    merged = composite(original, edited, _box_mask((96, 64), (0, 0, 48, 64)))
    out = np.asarray(merged)
    assert np.array_equal(out[:, 48:], np.asarray(original)[:, 48:])
    assert np.all(out[:, :48] == (255, 0, 0))


def test_mask_size_rule(tmp_path):
    mask = _box_mask((50, 25), (10, 5, 20, 15))
    assert fit_mask(mask, (50, 25)) is mask
    assert fit_mask(mask, (200, 100)).size == (200, 100)  # same aspect: resized
    with pytest.raises(MaskError, match="the mask is 50x25 px but the master is 100x100"):
        fit_mask(mask, (100, 100))


def test_load_mask_reads_white_as_repaint_and_transparent_as_keep(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    rgba.putpixel((2, 2), (255, 255, 255, 255))
    rgba.save(tmp_path / "alpha.png")
    loaded = load_mask(tmp_path / "alpha.png")
    assert loaded.weights.getpixel((2, 2)) == 255 and loaded.weights.getpixel((0, 0)) == 0
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize("make, reason", [
    (lambda p: Image.new("L", (8, 8), 0).save(p), "all black"),
    (lambda p: Image.new("L", (8, 8), 255).save(p, "JPEG"), "not a PNG"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40), "damaged"),
    (lambda p: p.mkdir(), "a folder"),
    (lambda p: None, "file not found"),
])
def test_bad_masks_are_refused_with_a_reason(tmp_path, make, reason):
    path = tmp_path / "mask.png"
    make(path)
    with pytest.raises(MaskError, match=reason):
        load_mask(path)


def test_colour_transfer_takes_the_reference_statistics():
    content = _noise((64, 64), 4)
    reference = Image.fromarray(np.random.default_rng(5).normal((200, 120, 40), (10, 20, 5), (64, 64, 3))
                                .clip(0, 255).astype(np.uint8))
    styled = np.asarray(transfer_colours(content, reference), dtype=float)
    ref = np.asarray(reference, dtype=float)
    assert np.allclose(styled.mean(axis=(0, 1)), ref.mean(axis=(0, 1)), atol=1.0)
    assert np.allclose(styled.std(axis=(0, 1)), ref.std(axis=(0, 1)), atol=1.0)
    # the content's structure survives: the ranks of pixel values in each channel are kept
    assert np.corrcoef(styled[:, :, 0].ravel(), np.asarray(content, dtype=float)[:, :, 0].ravel())[0, 1] > 0.99


def test_two_panel_canvas_round_trip():
    content, reference = _noise((80, 60), 6), Image.new("RGB", (30, 30), (0, 0, 255))
    canvas = two_panel_canvas(content, reference)
    assert canvas.size == (160, 60)
    assert np.array_equal(np.asarray(canvas)[:, :80], np.asarray(content))
    assert canvas.getpixel((120, 30)) == (0, 0, 255) and canvas.getpixel((85, 30)) == (128, 128, 128)
    assert np.array_equal(np.asarray(left_panel(canvas, (80, 60))), np.asarray(content))
    assert left_panel(canvas.resize((320, 120)), (80, 60)).size == (80, 60)


def test_reference_described_in_words():
    words = describe_reference(Image.new("RGB", (40, 40), (230, 120, 30)))
    assert "warm" in words and "vivid" in words and "#e6781e" in words


def test_load_reference_refuses_non_images(tmp_path):
    (tmp_path / "r.png").write_text("hello")
    with pytest.raises(StyleReferenceError, match="not an image"):
        load_reference(tmp_path / "r.png")
