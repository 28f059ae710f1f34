"""The offline renderer and the `local` provider: deterministic, varied, any size, never flat."""

from __future__ import annotations

import hashlib

import imagehash
import numpy as np
import pytest
from PIL import Image

from imagegen.errors import ProviderRequestInvalid
from imagegen.models import GenerationRequest, ImageRef
from imagegen.providers.base import ImageGenerator
from imagegen.providers.local import LocalGenerator
from imagegen.render.renderer import describe_scene, render_local
from imagegen.render.vocabulary import COMPOSITIONS, STYLES

SPEC = {"subject": "perfume bottle", "palette": ["#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50", "#F4F1EA"],
        "style": "product", "lighting": "product", "composition": "rule_of_thirds", "mood": "fresh"}


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def test_same_inputs_give_identical_pixels():
    a = render_local(SPEC, 42, 512, 384)
    b = render_local(dict(reversed(list(SPEC.items()))), 42, 512, 384)  # key order must not matter
    assert a.mode == "RGB" and a.size == (512, 384)
    assert a.tobytes() == b.tobytes()


def test_spec_changes_the_picture():
    a = render_local(SPEC, 42, 256, 256)
    b = render_local({**SPEC, "mood": "dramatic"}, 42, 256, 256)
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4), (10, 11)])
def test_different_seeds_give_different_layouts(seeds):
    a, b = (render_local(SPEC, seed, 512, 512) for seed in seeds)
    assert np.abs(_pixels(a) - _pixels(b)).mean() > 8
    assert imagehash.phash(a) - imagehash.phash(b) > 10


@pytest.mark.parametrize("size", [(2048, 2048), (1152, 2048), (640, 360), (1200, 628), (33, 17)])
def test_any_size_and_aspect(size):
    img = render_local(SPEC, 7, *size)
    assert img.size == size and img.mode == "RGB"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_every_style_and_composition_is_textured_and_unclipped(style, composition):
    img = render_local({"style": style, "composition": composition}, 5, 384, 384)
    gray = np.asarray(img.convert("L"))
    assert gray.std() > 10, "a flat picture gives the gates nothing to measure"
    assert (gray <= 2).mean() < 0.03 and (gray >= 253).mean() < 0.03


def test_moody_lighting_is_darker_than_product_lighting():
    bright = np.asarray(render_local({**SPEC, "lighting": "product"}, 3, 256, 256).convert("L")).mean()
    dark = np.asarray(render_local({**SPEC, "lighting": "moody"}, 3, 256, 256).convert("L")).mean()
    assert dark < bright - 40


def test_hero_sits_on_the_composition_rule():
    for seed in range(4):
        scene = describe_scene({"composition": "rule_of_thirds"}, seed, 900, 900)
        x0, y0, x1, y1 = scene["hero_box"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        assert min(abs(cx - 300), abs(cx - 600)) < 60 and min(abs(cy - 300), abs(cy - 600)) < 60
        sym = describe_scene({"composition": "symmetry"}, seed, 900, 900)["hero_box"]
        assert abs((sym[0] + sym[2]) / 2 - 450) < 2


def test_bad_palette_colour_is_a_clear_error():
    with pytest.raises(ValueError, match="not a #rrggbb"):
        render_local({"palette": ["#12345"]}, 1, 64, 64)



# --------------------------------------------------------------------------- provider

def test_local_generator_writes_a_content_addressed_png(tmp_path):
    gen = LocalGenerator()
    assert isinstance(gen, ImageGenerator) and gen.name == "local"
    request = GenerationRequest(prompt="a perfume bottle", width=640, height=360, seed=9, spec=SPEC)
    result = gen.generate(request, tmp_path)

    ref = result.image
    data = (tmp_path / f"{ref.sha256}.png").read_bytes()
    assert ref.path == str((tmp_path / f"{ref.sha256}.png").resolve())
    assert hashlib.sha256(data).hexdigest() == ref.sha256 and ref.bytes == len(data)
    assert (ref.width, ref.height, ref.format) == (640, 360, "PNG")
    assert ref == ImageRef.from_file(ref.path)
    assert result.provider == "local" and result.model == "local-procedural-v1" and result.seed == 9
    assert result.metadata["stand_in"] is True and "not a diffusion model" in result.metadata["note"]
    assert result.generation_ms >= 0

    again = gen.generate(request, tmp_path)  # idempotent: same request, same bytes, one file
    assert again.image == ref
    assert len(list(tmp_path.iterdir())) == 1


def test_local_generator_capabilities_and_stand_in_edit(tmp_path):
    gen = LocalGenerator(master_size=1024)
    caps = gen.capabilities()
    assert (caps.max_prompt_chars, caps.negative_prompt, caps.max_side) == (500, "drop", 4096)
    assert caps.is_stand_in and not caps.supports_edit  # the gate's remedies regenerate, as before
    request = GenerationRequest(prompt="x", width=64, height=48, seed=1)
    source = gen.generate(request, tmp_path).image
    edited = gen.edit(source, "make it blue", request, tmp_path)  # a deterministic stand-in for inpainting
    assert (edited.image.width, edited.image.height) == (64, 48) and edited.image.sha256 != source.sha256
    assert gen.edit(source, "make it blue", request, tmp_path).image == edited.image
    assert gen.edit(source, "make it red", request, tmp_path).image.sha256 != edited.image.sha256
    assert edited.metadata["stand_in"] is True and edited.metadata["source_sha256"] == source.sha256


def test_local_generator_rejects_oversized_requests(tmp_path):
    with pytest.raises(ProviderRequestInvalid, match="4096"):
        LocalGenerator().generate(GenerationRequest(prompt="x", width=5000, height=64, seed=1), tmp_path)
