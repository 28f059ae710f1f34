"""Web delivery: byte-budget search, SSIM floor, PNG palette (codec), responsive breakpoints, <picture>,
format policy, blurhash."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from PIL import Image

from imagegen.imaging import blurhash, codec, picture, responsive
from imagegen.imaging.encode import build_xmp


def _photo(width: int = 480, height: int = 320, seed: int = 0) -> Image.Image:
    """Photo-like: smooth colour gradients, a few soft shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([40 + 180 * x / width, 50 + 150 * y / height, 200 - 120 * (x + y) / (width + height)], axis=-1)
    for cx, cy, r, tone in ((0.3, 0.4, 0.18, (90, -40, -30)), (0.7, 0.6, 0.22, (-50, 30, 60))):
        d2 = (x - cx * width) ** 2 + (y - cy * height) ** 2
        rgb += np.exp(-d2 / (2 * (r * width) ** 2))[..., None] * np.array(tone)
    rgb += rng.normal(0, 10, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _flat_graphic(width: int = 400, height: int = 300) -> Image.Image:
    img = Image.new("RGB", (width, height), "#ffffff")
    img.paste((230, 57, 70), (20, 20, 200, 150))
    img.paste((29, 53, 87), (150, 120, 380, 280))
    img.paste((241, 196, 15), (60, 200, 140, 280))
    return img


# --------------------------------------------------------------------------- bisection


def _sizes(img: Image.Image, fmt: str, q_min: int, q_max: int) -> dict[int, int]:
    return {q: len(codec.encode_bytes(img, fmt, q)) for q in range(q_min, q_max + 1)}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_bisection_matches_brute_force_within_one_step(fmt: str) -> None:
    img = _photo()
    q_min, q_max = codec.QUALITY_RANGE[fmt]
    sizes = _sizes(img, fmt, q_min, q_max)
    qualities = sorted(sizes)
    checked = 0
    for q in qualities[2:-1:4]:  # budgets just above the size at q, across the range
        budget = sizes[q] + 1
        calls: list[int] = []

        def encode(quality: int) -> bytes:
            calls.append(quality)
            return codec.encode_bytes(img, fmt, quality)

        found = codec.bisect_quality(encode, budget, q_min, q_max)
        best = max(qq for qq, size in sizes.items() if size <= budget)
        assert found.fits and len(found.data) <= budget
        assert best - 1 <= found.quality <= best, (budget, found.probes, best)
        assert len(calls) == found.encodes <= codec.MAX_ENCODES
        checked += 1
    assert checked >= 8


def _curve(step_sizes: list[int]) -> dict[int, int]:
    sizes, total = {}, 1000
    for q in range(1, 101):
        total += step_sizes[q % len(step_sizes)]
        sizes[q] = total
    return sizes


@pytest.mark.parametrize("steps", [[50], [5, 400, 20, 3000], [0, 0, 900], [1, 2, 3, 50_000]])
def test_bisection_guarantee_on_monotone_curves(steps: list[int]) -> None:
    """Within `tolerance` over QUALITY_RANGE-sized ranges (exact by default), within one step
    over 1..100, never over 7 encodes; a looser tolerance costs fewer encodes on average."""
    sizes = _curve(steps)
    mean_encodes = {}
    for (q_min, q_max), tolerance, slack in (((30, 90), 0, 0), ((30, 90), 1, 1), ((30, 90), 2, 2), ((1, 100), 0, 1)):
        encodes = []
        for budget in range(sizes[q_min] - 10, sizes[q_max] + 10, max(1, (sizes[q_max] - sizes[q_min]) // 97)):
            found = codec.bisect_quality(lambda q: b"x" * sizes[q], budget, q_min, q_max, tolerance=tolerance)
            fitting = [q for q in range(q_min, q_max + 1) if sizes[q] <= budget]
            assert found.encodes <= 7
            encodes.append(found.encodes)
            if not fitting:
                assert not found.fits and found.quality == q_min
            else:
                assert found.fits and max(fitting) - slack <= found.quality <= max(fitting)
        mean_encodes[(q_min, tolerance)] = sum(encodes) / len(encodes)
    assert mean_encodes[(30, 2)] <= mean_encodes[(30, 1)] <= mean_encodes[(30, 0)]
    assert mean_encodes[(30, 2)] < mean_encodes[(30, 0)]


def test_bisection_costs_one_encode_when_the_top_quality_fits() -> None:
    found = codec.bisect_quality(lambda q: b"x" * q, 10_000, 30, 90)
    assert (found.quality, found.encodes, found.fits) == (90, 1, True)


# --------------------------------------------------------------------------- budgets and floor


def test_budget_encode_is_progressive_jpeg_with_xmp() -> None:
    xmp = build_xmp(prompt="p", model="m", provider="x", seed=3)
    result = codec.encode_to_budget(_photo(), "jpg", 30_000, ssim_floor=0.8, xmp=xmp)
    assert result.ok and result.bytes == len(result.data) <= 30_000
    with Image.open(io.BytesIO(result.data)) as im:
        assert im.format == "JPEG" and im.info.get("progressive") and im.size == (480, 320)
        assert b"trainedAlgorithmicMedia" in im.info["xmp"]
    assert 0.8 <= result.ssim <= 1.0


def test_ssim_floor_reports_a_wrecking_budget() -> None:
    img = _photo()
    wrecked = codec.encode_to_budget(img, "JPEG", 4_000, ssim_floor=0.9, quality_range=(1, 90))
    assert wrecked.within_budget and wrecked.bytes <= 4_000
    assert wrecked.floor_violated and not wrecked.ok
    assert wrecked.ssim < 0.9 and "below the floor" in wrecked.reason

    fine = codec.encode_to_budget(img, "JPEG", 60_000, ssim_floor=0.9)
    assert fine.ok and fine.reason is None and fine.ssim > 0.9 and fine.quality > wrecked.quality


def test_unreachable_budget_is_reported_not_raised() -> None:
    result = codec.encode_to_budget(_photo(), "WEBP", 1_500)
    assert not result.within_budget and result.bytes > 1_500
    assert result.quality == codec.QUALITY_RANGE["WEBP"][0] and "exceeds the budget" in result.reason


def test_avif_budget() -> None:
    result = codec.encode_to_budget(_photo(), "AVIF", 12_000)
    assert result.within_budget and result.bytes <= 12_000 and result.encodes <= 7
    assert Image.open(io.BytesIO(result.data)).format == "AVIF"


def test_jpeg_flattens_alpha_onto_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    result = codec.encode_to_budget(rgba, "JPEG")
    assert Image.open(io.BytesIO(result.data)).convert("RGB").getpixel((32, 32)) >= (250, 250, 250)


def test_png_palette_only_when_ssim_holds() -> None:
    flat = codec.encode_png(_flat_graphic())
    assert flat.palette and Image.open(io.BytesIO(flat.data)).mode == "P"
    assert flat.bytes < len(codec.encode_bytes(_flat_graphic(), "PNG"))

    photo = _photo()
    quantised_ssim = codec.luma_ssim(photo, codec.palette_quantise(photo))
    result = codec.encode_png(photo, palette_floor=quantised_ssim + 0.001)
    assert not result.palette and Image.open(io.BytesIO(result.data)).mode == "RGB"
    accepted = codec.encode_png(photo, palette_floor=quantised_ssim - 0.001)
    assert accepted.palette and accepted.bytes < result.bytes


def test_png_over_budget_falls_back_to_palette_and_reports_the_floor() -> None:
    photo = _photo()
    lossless = len(codec.encode_bytes(photo, "PNG"))
    result = codec.encode_png(photo, max_bytes=lossless - 1, ssim_floor=0.9999, palette_floor=0.9999)
    assert result.palette and result.within_budget and result.floor_violated and "256-colour" in result.reason


def test_luma_ssim_ranks_damage() -> None:
    img = _photo()
    good = codec.decode(codec.encode_bytes(img, "JPEG", 90))
    bad = codec.decode(codec.encode_bytes(img, "JPEG", 5))
    assert codec.luma_ssim(img, img) == pytest.approx(1.0)
    assert codec.luma_ssim(img, good) > codec.luma_ssim(img, bad) + 0.05


# --------------------------------------------------------------------------- breakpoints


@pytest.mark.parametrize("fmt,step,max_images", [("JPEG", 8_000, 10), ("JPEG", 3_000, 4), ("WEBP", 5_000, 8)])
def test_breakpoints_obey_step_bounds_and_count(fmt: str, step: int, max_images: int) -> None:
    img = _photo(1600, 1000)
    result = responsive.responsive_breakpoints(img, fmt, min_width=240, max_width=1400, bytes_step=step,
                                               max_images=max_images)
    widths, sizes = result.widths, [r.bytes for r in result.renditions]
    assert widths[0] == 240 and widths[-1] == 1400
    assert widths == sorted(set(widths)) and 2 <= len(widths) <= max_images
    assert all(b - a >= step for a, b in zip(sizes, sizes[1:])), sizes
    for r in result.renditions:
        assert r.bytes == len(r.data)
        assert abs(r.height - round(r.width * 1000 / 1600)) <= 1
        assert Image.open(io.BytesIO(r.data)).size == (r.width, r.height)
    assert result.encodes >= len(widths)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_breakpoints_with_max_images_1_deliver_the_widest_rendition_alone(fmt: str) -> None:
    """`publish.responsive.max_images: 1` once failed every asset with a KeyError: the single width was
    chosen without being encoded."""
    result = responsive.responsive_breakpoints(_photo(1600, 1000), fmt, min_width=240, max_width=1400,
                                               bytes_step=1_000, max_images=1)
    assert result.widths == [1400]
    (only,) = result.renditions
    assert only.bytes == len(only.data) > 0
    assert Image.open(io.BytesIO(only.data)).size == (1400, 875)


def test_breakpoints_more_images_where_bytes_grow_faster() -> None:
    """Detailed images earn more breakpoints than smooth ones under the same step: the point of
    choosing by bytes instead of fixed widths."""
    noisy = _photo(1600, 1000)
    smooth = Image.linear_gradient("L").resize((1600, 1000)).convert("RGB")
    n_noisy = len(responsive.responsive_breakpoints(noisy, "JPEG", bytes_step=10_000, max_images=20).widths)
    n_smooth = len(responsive.responsive_breakpoints(smooth, "JPEG", bytes_step=10_000, max_images=20).widths)
    # 1600 px: the gradient's JPEG grows ~24 KB over the whole range, the noisy photo's ~260 KB.
    assert n_smooth <= 3 and n_noisy >= 10


def test_breakpoints_never_upscale() -> None:
    result = responsive.responsive_breakpoints(_photo(500, 300), "JPEG", min_width=320, max_width=4000, bytes_step=1_000)
    assert max(result.widths) == 500 and min(result.widths) == 320


def test_breakpoints_publish_only_real_encodes_and_probe_the_curve_cheaply() -> None:
    """Probes (baseline JPEG) sample the curve; every delivered rendition is a real, progressive
    encode whose reported bytes are its own, and the byte steps hold on those real bytes."""
    result = responsive.responsive_breakpoints(_photo(1600, 1000), "JPEG", min_width=240, max_width=1400,
                                               bytes_step=8_000, max_images=10)
    assert result.probe_encodes >= 3 and len(result.widths) >= 4
    sizes = [r.bytes for r in result.renditions]
    assert all(b - a >= 8_000 for a, b in zip(sizes, sizes[1:])), sizes
    for r in result.renditions:
        with Image.open(io.BytesIO(r.data)) as im:
            assert im.info.get("progressive") and r.bytes == len(r.data)


def test_breakpoints_within_one_step_encode_only_the_ends() -> None:
    smooth = Image.linear_gradient("L").resize((1600, 1000)).convert("RGB")
    result = responsive.responsive_breakpoints(smooth, "WEBP", min_width=320, max_width=1600, bytes_step=50_000)
    assert result.widths == [1600] and result.encodes == 2 and result.probe_encodes == 0


def _power_curve(width: int) -> int:
    return int(0.5 * width ** 1.5)  # 2.9 KB at 320 px .. 42 KB at 1920 px


def _plan(size_at, bytes_step: int = 8_000, refinements: int | None = None) -> tuple[list[int], list[int]]:
    encoded: list[int] = []

    def counted(width: int) -> int:
        encoded.append(width)
        return size_at(width)

    widths = sorted({round(320 * (1920 / 320) ** (i / 4)) for i in range(5)})
    curve = [(w, _power_curve(w)) for w in widths]  # the prediction: exact for _power_curve itself
    extra = {} if refinements is None else {"refinements": refinements}
    return responsive._plan_and_verify(curve, counted, bytes_step, 8, **extra), sorted(set(encoded))


def test_breakpoints_encode_no_width_that_cannot_be_a_step_from_both_neighbours() -> None:
    """With exact predictions every aimed width is kept; once the last kept file is within two
    steps of the maximum's no further width is encoded (it could not be a step from both)."""
    kept, encoded = _plan(_power_curve)
    sizes = [_power_curve(w) for w in kept]
    assert all(b - a >= 8_000 for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[-1] - sizes[-2] < 2 * 8_000
    assert encoded == kept, (encoded, kept)


def test_breakpoints_push_past_a_plateau_instead_of_ending_the_run() -> None:
    """Real sizes wiggle between neighbouring widths: a few re-aims that land just short of the
    step must not end the srcset at its first width (it was [320, 1920] with 2 re-aims)."""
    wanted = _power_curve(320) + 8_000
    aim = math.ceil((wanted / 0.5) ** (1 / 1.5))

    def plateau(width: int) -> int:  # files just short of the step for 11 px around the first aim
        return wanted - 50 if aim - 2 <= width <= aim + 8 else _power_curve(width)

    assert _plan(plateau, refinements=2)[0] == [320, 1920]
    kept, _ = _plan(plateau)
    sizes = [plateau(w) for w in kept]
    assert len(kept) == 5 and all(b - a >= 8_000 for a, b in zip(sizes, sizes[1:])), (kept, sizes)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_probe_encode_is_cheaper_and_close_in_bytes_after_calibration(fmt: str) -> None:
    """The real/probe byte ratio measured at the ends predicts the real bytes in between."""
    img = _photo(1600, 1000)
    cascade = responsive.WidthCascade(img)
    q = None if fmt == "PNG" else codec.DEFAULT_QUALITY[fmt]
    real = {w: len(codec.encode_bytes(cascade.at(w), fmt, q)) for w in (320, 560, 980, 1600)}
    probe = {w: len(codec.encode_bytes(cascade.at(w), fmt, q, probe=True)) for w in real}
    curve = dict(responsive._probed_curve(sorted(real), real.__getitem__, probe.__getitem__))
    assert curve[320] == real[320] and curve[1600] == real[1600]
    for w in (560, 980):
        assert abs(curve[w] / real[w] - 1) < 0.08, (w, curve[w], real[w])


def test_probe_jpeg_is_baseline() -> None:
    data = codec.encode_bytes(_photo(), "JPEG", 80, probe=True)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and not im.info.get("progressive")


def test_width_cascade_matches_direct_resize_in_size_and_quality() -> None:
    """A width made from a >= 2x wider intermediate has the direct resize's size and looks the same."""
    from skimage.metrics import structural_similarity

    img = _photo(2048, 1365, seed=3)
    cascade = responsive.WidthCascade(img)
    assert cascade.at(4000) is img and cascade.at(2048) is img
    for width in (1920, 900, 450, 320, 211):  # 900 from the source, 450 and 320 from 900, 211 from 450
        made, direct = cascade.at(width), responsive.resize_to_width(img, width)
        assert made.size == direct.size
        ssim = structural_similarity(np.asarray(made.convert("L")), np.asarray(direct.convert("L")), data_range=255)
        assert ssim > 0.99, (width, ssim)
    assert cascade.at(320) is cascade.at(320)


def test_width_cascade_resizes_from_a_wide_enough_intermediate(monkeypatch) -> None:
    img = _photo(2000, 1000)
    cascade = responsive.WidthCascade(img)
    sources: list[int] = []
    real_resize = Image.Image.resize

    def spy(self, size, *args, **kwargs):
        sources.append(self.width)
        return real_resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", spy)
    cascade.at(1000)
    cascade.at(600)  # 1000 is less than 2x wider: from the source
    cascade.at(480)  # from the 1000 px image
    assert sources[:3] == [2000, 2000, 1000]


# --------------------------------------------------------------------------- <picture>


def test_picture_snippet_order_srcsets_and_escaping() -> None:
    srcsets = {
        "JPEG": [("/a/hero-640.jpg", 640), ("/a/hero-320.jpg", 320)],
        "AVIF": [("/a/hero-320.avif", 320), ("/a/hero-640.avif", 640)],
        "WEBP": [("/a/hero-320.webp", 320), ("/a/hero,1 640.webp", 640)],
    }
    html = picture.picture_html(srcsets, alt='Watch "Nova" <limited> & co', width=640, height=400,
                                sizes="(max-width: 600px) 100vw, 50vw")
    assert html.startswith("<picture>") and html.endswith("</picture>")
    avif, webp, img = html.index('type="image/avif"'), html.index('type="image/webp"'), html.index("<img ")
    assert avif < webp < img
    assert 'srcset="/a/hero-320.avif 320w, /a/hero-640.avif 640w"' in html
    assert "/a/hero%2C1%20640.webp 640w" in html  # a comma or space would split the candidate
    assert 'srcset="/a/hero-320.jpg 320w, /a/hero-640.jpg 640w"' in html and 'src="/a/hero-640.jpg"' in html
    assert 'alt="Watch &quot;Nova&quot; &lt;limited&gt; &amp; co"' in html
    assert 'width="640" height="400"' in html
    assert html.count('sizes="(max-width: 600px) 100vw, 50vw"') == 3
    assert "<limited>" not in html


def test_picture_needs_a_fallback_and_keeps_empty_alt() -> None:
    with pytest.raises(ValueError, match="fallback"):
        picture.picture_html({"AVIF": [("a.avif", 100)]}, alt="x", width=100, height=100)
    html = picture.picture_html({"PNG": [("a.png", 100)]}, alt="", width=100, height=50)
    assert 'alt=""' in html and "<source" not in html


def test_transparency_is_detected_by_alpha_actually_used() -> None:
    transparent = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    assert codec.has_transparency(transparent) and not codec.has_transparency(_photo().convert("RGBA"))


# --------------------------------------------------------------------------- blurhash


def test_blurhash_decodes_to_the_average_colour() -> None:
    img = _photo(640, 400)
    hash_ = blurhash.blurhash_placeholder(img)
    x, y = blurhash.blurhash_components(640, 400)
    assert (x, y) == (4, 2) and len(hash_) == 4 + 2 * x * y
    decoded = np.asarray(blurhash.decode_blurhash(hash_, 32, 20), dtype=np.float64).reshape(-1, 3).mean(axis=0)
    actual = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert np.abs(decoded - actual).max() < 12, (decoded, actual)


def test_blurhash_differs_by_content_and_follows_portrait_aspect() -> None:
    assert blurhash.blurhash_components(300, 600) == (2, 4)
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    assert blurhash.blurhash_placeholder(red) != blurhash.blurhash_placeholder(blue)
    assert re.fullmatch(r"[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]+", blurhash.blurhash_placeholder(red))


def test_blurhash_matches_the_reference_c_implementation() -> None:
    """Our numpy BlurHash against woltapp's C encoder/decoder (blurhash-python, a test dependency)."""
    import blurhash as reference

    assert hasattr(reference, "PixelMode"), "the installed `blurhash` is not blurhash-python"
    import warnings

    cases = ((_photo(64, 40), (4, 3)), (_photo(40, 64, seed=2), (3, 5)), (Image.new("RGB", (9, 9), "red"), (1, 1)))
    for img, comps in cases:
        ours = blurhash.blurhash_encode(np.asarray(img), *comps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # it reads pixels with Image.getdata
            theirs = reference.encode(img.copy(), *comps)
        assert ours == theirs
        mine = np.asarray(blurhash.decode_blurhash(ours, 16, 12), dtype=np.int16)
        ref = np.asarray(reference.decode(theirs, 16, 12), dtype=np.int16)
        assert np.abs(mine - ref).max() <= 1
