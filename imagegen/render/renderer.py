"""The renderer's entry points: `render_local` (plan the scene, paint smooth then crisp layers,
finish), `describe_scene` (the resolved plan, for provenance metadata) and `subject_mask` (the
pixels the subject covers, the ground truth background removal is measured against)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageChops

from imagegen.render.crisp import (
    paint_frame,
    paint_hero,
    paint_leading_lines,
    paint_moody_beam,
    paint_neon_grid,
    paint_podium,
    paint_props,
)
from imagegen.render.finish import add_grain, tone_lut
from imagegen.render.primitives import box_px
from imagegen.render.scene import plan_scene, scene_rng
from imagegen.render.smooth import paint_smooth, vignette_map

RENDERER_MODEL = "local-procedural-v1"


def render_local(spec: dict[str, Any], seed: int, width: int, height: int) -> Image.Image:
    """Render `spec` with `seed` at exactly `width` x `height` as an RGB image (deterministic)."""
    if width < 1 or height < 1:
        raise ValueError(f"cannot render a {width}x{height} image")
    spec = dict(spec or {})
    rng = scene_rng(spec, seed)
    scene = plan_scene(spec, rng, int(width), int(height))
    canvas = paint_smooth(scene)
    if scene.style == "cyberpunk":
        paint_neon_grid(canvas, scene)
    if scene.composition == "leading_lines":
        paint_leading_lines(canvas, scene)
    if scene.composition == "frame":
        paint_frame(canvas, scene)
    if scene.lighting == "moody":
        paint_moody_beam(canvas, scene)
    paint_props(canvas, scene)
    paint_podium(canvas, scene)
    paint_hero(canvas, scene)
    vignette = vignette_map(scene)
    canvas = ImageChops.multiply(canvas, Image.merge("RGB", (vignette, vignette, vignette)))
    canvas = canvas.point(tone_lut(scene))
    return add_grain(canvas, scene, rng)


def describe_scene(spec: dict[str, Any], seed: int, width: int, height: int) -> dict[str, Any]:
    """The resolved style, lighting, composition and hero placement (for provenance metadata)."""
    spec = dict(spec or {})
    scene = plan_scene(spec, scene_rng(spec, seed), int(width), int(height))
    x0, y0, x1, y1 = box_px(scene, scene.hero_box)
    return {"style": scene.style, "lighting": scene.lighting, "composition": scene.composition,
            "hero": scene.hero_kind,
            "hero_box": [round(x0), round(y0), round(x1), round(y1)]}


def subject_mask(spec: dict[str, Any], seed: int, width: int, height: int) -> Image.Image:
    """The subject's coverage in `render_local(spec, seed, width, height)` as an "L" image (255 = subject).

    The subject is what a product cut-out keeps: the hero and the podium it stands on, not the props,
    the soft shapes or the contact shadow. The same plan is painted by the same painters onto a black
    and a white canvas: where a painter covered a pixel by `a`, the two canvases differ by (1 - a) * 255,
    so coverage is read back exactly, anti-aliased edges included, without touching `render_local`.
    """
    spec = dict(spec or {})
    scene = plan_scene(spec, scene_rng(spec, seed), int(width), int(height))
    canvases = [Image.new("RGB", (scene.width, scene.height), grey) for grey in ((0, 0, 0), (255, 255, 255))]
    for canvas in canvases:
        paint_podium(canvas, scene)
        paint_hero(canvas, scene)
    black, white = (np.asarray(canvas, dtype=np.int16) for canvas in canvases)
    uncovered = (white - black).min(axis=2)  # every channel tells the same, to rounding
    return Image.fromarray((255 - uncovered).astype(np.uint8), "L")
