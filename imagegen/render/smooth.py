"""The smooth layers, computed small with numpy and upscaled: ground gradient, studio sweep, landscape
ridges, soft shapes, key light pool and contact shadow, and the vignette map."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from imagegen.render.colour import Colour, luma, mix, smoothstep, with_luma
from imagegen.render.scene import Scene, Soft

_LOWRES_LONG_SIDE = 480        # smooth layers are computed at most this big, then upscaled


def _lowres_grid(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    scale = min(1.0, _LOWRES_LONG_SIDE / max(scene.width, scene.height))
    lw, lh = max(4, round(scene.width * scale)), max(4, round(scene.height * scale))
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) / lw * scene.aspect_w)[None, :]
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) / lh * scene.aspect_h)[:, None]
    return xs, ys


def _blend(img: np.ndarray, colour: Colour, alpha: np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * colour


def _gradient(scene: Scene, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    angle = scene.gradient_angle
    if scene.composition == "symmetry":  # a mirror-symmetric ground runs vertically
        angle = math.pi / 2 if math.sin(angle) >= 0 else -math.pi / 2
    if scene.style == "landscape":  # sky: light at the horizon, deeper overhead
        angle = -math.pi / 2 + 0.25 * math.sin(angle)
    ca, sa = math.cos(angle), math.sin(angle)
    reach = 0.5 * (abs(scene.aspect_w * ca) + abs(scene.aspect_h * sa))
    t = ((xs - scene.aspect_w / 2) * ca + (ys - scene.aspect_h / 2) * sa) / reach
    t = smoothstep(0.0, 1.0, 0.5 + 0.5 * t)[..., None]
    c0, c1 = scene.bg
    return (c0 + (c1 - c0) * t).astype(np.float32)


def _soft_alpha(shape: Soft, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy = xs - shape.x, ys - shape.y
    if shape.kind == "blob":
        return shape.alpha * np.exp(-(dx * dx + dy * dy) / (2 * shape.size ** 2))
    if shape.kind == "band":
        dist = dx * math.sin(shape.angle) - dy * math.cos(shape.angle)
        return shape.alpha * np.exp(-(dist * dist) / (2 * shape.size ** 2))
    dist = np.sqrt(dx * dx + dy * dy)
    if shape.kind == "ring":
        return shape.alpha * np.exp(-((dist - shape.size) ** 2) / (2 * (0.06 * shape.size + 0.01) ** 2))
    return shape.alpha * smoothstep(shape.size, shape.size * 0.8, dist)  # bokeh disc


def _landscape_ridges(scene: Scene, img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """Layered hills, lighter with distance (atmospheric perspective), plus a low sun."""
    phases = np.reshape(scene.ridge_phases, (3, 3))
    sun = with_luma(max(scene.accents, key=luma), 0.9)
    sx, sy = scene.aspect_w * (0.25 + 0.5 * (phases[0, 0] / (2 * math.pi))), scene.aspect_h * 0.45
    dist = np.sqrt((xs - sx) ** 2 + (ys - sy) ** 2)
    _blend(img, sun, 0.5 * np.exp(-dist ** 2 / (2 * 0.18 ** 2)) + 0.45 * smoothstep(0.075, 0.065, dist))
    for layer in range(3):
        base = scene.aspect_h * (0.58 + 0.12 * layer)
        ridge = base + sum(0.05 / (k + 1) * np.sin((k + 1.3) * 2.1 * xs + phases[layer, k]) for k in range(3))
        colour = with_luma(scene.accents[layer % len(scene.accents)], scene.bg_luma * (0.8 - 0.2 * layer))
        _blend(img, colour, smoothstep(-0.004, 0.004, ys - ridge) * 0.95)


def _studio_sweep(scene: Scene, img: np.ndarray, ys: np.ndarray) -> None:
    """A floor that curves up into the backdrop, darker than the wall."""
    floor_y = scene.podium_box[3] if scene.podium_box else scene.hero_box[3]
    floor = with_luma(scene.bg[1], scene.bg_luma * 0.86)
    _blend(img, floor, 0.75 * smoothstep(floor_y - 0.35, floor_y + 0.1, ys) * np.ones_like(img[..., 0]))


def _shadow_and_light(scene: Scene, img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """Key light pool behind the hero and the hero's soft contact shadow."""
    x0, y0, x1, y1 = scene.hero_box
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, y1 - y0
    lx, ly = scene.light_dir
    px, py = cx + lx * 0.35 * size, cy + ly * 0.35 * size
    dist = np.sqrt((xs - px) ** 2 + ((ys - py) * 0.8) ** 2)
    radius = 0.45 + 0.4 * size if scene.lighting != "moody" else 0.2 + 0.6 * size
    pool = smoothstep(radius + scene.light.key_edge, radius - scene.light.key_edge, dist)
    if scene.lighting != "moody":
        pool = np.exp(-dist ** 2 / (2 * radius ** 2))
    glow = with_luma(mix(scene.bg[0], np.ones(3, np.float32), 0.5), min(0.93, scene.bg_luma + 0.3))
    _blend(img, glow, scene.light.key * pool)
    if scene.style == "cyberpunk":  # neon halo around the hero
        halo = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (0.7 * size) ** 2))
        _blend(img, scene.hero_rgb, 0.45 * halo)
        return
    ground = scene.podium_box or scene.hero_box
    gx = (ground[0] + ground[2]) / 2 - lx * 0.08
    gw = (ground[2] - ground[0]) * 0.62
    shadow = np.exp(-(((xs - gx) / gw) ** 2 + ((ys - ground[3] + 0.01) / (0.09 * gw + 0.02)) ** 2) * 2.0)
    _blend(img, with_luma(scene.bg[1], scene.bg_luma * 0.35), 0.55 * shadow)


def paint_smooth(scene: Scene) -> Image.Image:
    xs, ys = _lowres_grid(scene)
    img = _gradient(scene, xs, ys)
    if scene.style in ("product", "minimalist", "vintage"):
        _studio_sweep(scene, img, ys)
    if scene.style == "landscape":
        _landscape_ridges(scene, img, xs, ys)
    for shape in scene.soft_shapes:
        _blend(img, shape.colour, _soft_alpha(shape, xs, ys))
    _shadow_and_light(scene, img, xs, ys)
    small = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return small.resize((scene.width, scene.height), Image.Resampling.BICUBIC)


def vignette_map(scene: Scene) -> Image.Image:
    """Multiplier image (L, 255 = unchanged), darkening towards the corners."""
    xs, ys = _lowres_grid(scene)
    dx = (xs / scene.aspect_w - 0.5) * 2
    dy = (ys / scene.aspect_h - 0.5) * 2
    r = np.sqrt(dx * dx + dy * dy) / math.sqrt(2)
    keep = 1.0 - scene.light.vignette * smoothstep(0.3, 1.05, r)
    small = Image.fromarray((keep * 255 + 0.5).astype(np.uint8), "L")
    return small.resize((scene.width, scene.height), Image.Resampling.BILINEAR)
