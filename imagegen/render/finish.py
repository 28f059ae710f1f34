"""Finishing a render: the tone curve (contrast, tint, film fade, into an output range that never
clips) and monochrome film grain that fades out in the highlights."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops

from imagegen.render.colour import smoothstep
from imagegen.render.scene import Scene

_TONE_FLOOR, _TONE_CEILING = 12 / 255, 244 / 255  # output range before grain: no clipping


def _soft_clip(x: np.ndarray, knee: float = 0.12) -> np.ndarray:
    """Clip to 0..1 with rounded shoulders, so highlights roll off instead of flattening."""
    y = np.clip(x, 0.0, 1.0)
    hi, lo = x > 1 - knee, x < knee
    y[hi] = 1 - knee + knee * np.tanh((x[hi] - (1 - knee)) / knee)
    y[lo] = knee - knee * np.tanh((knee - x[lo]) / knee)
    return y


def tone_lut(scene: Scene) -> list[int]:
    """Per-channel curve: contrast, tint, film fade, then into the unclipped output range."""
    x = np.arange(256, dtype=np.float64) / 255
    lut: list[int] = []
    for gain in scene.tint:
        y = 0.5 + (x - 0.5) * scene.contrast
        y = _soft_clip(y * gain)
        y = scene.look.fade + y * (1 - scene.look.fade)
        y = _TONE_FLOOR + (_TONE_CEILING - _TONE_FLOOR) * y
        lut.extend(int(v) for v in np.round(y * 255))
    return lut


def _grain_strength(canvas: Image.Image, scene: Scene) -> np.ndarray:
    """Grain sigma per pixel: full in shadows and midtones, fading out in bright areas.

    Film grain shows least in highlights, and a clean bright studio backdrop keeps a product
    master compact as PNG (noise is what deflate cannot squeeze).
    """
    lw, lh = (max(1, round(scene.width / 8)), max(1, round(scene.height / 8)))
    luma = np.asarray(canvas.convert("L").resize((lw, lh), Image.Resampling.BOX), dtype=np.float32) / 255
    strength = scene.grain * (0.12 + 0.88 * smoothstep(0.72, 0.3, luma))
    small = Image.fromarray(strength.astype(np.float32), "F")
    return np.asarray(small.resize((scene.width, scene.height), Image.Resampling.BILINEAR))


def add_grain(canvas: Image.Image, scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Monochrome film grain, one full-resolution noise plane added to every channel."""
    noise = rng.standard_normal((scene.height, scene.width), dtype=np.float32)
    noise *= _grain_strength(canvas, scene)
    noise += 128.5
    plane = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "L")
    return ImageChops.add(canvas, Image.merge("RGB", (plane, plane, plane)), scale=1.0, offset=-128)
