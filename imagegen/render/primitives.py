"""Crisp drawing at full resolution: primitives (ellipse, rounded rect, polygon, line) turned into
supersampled anti-aliased masks, shaded or gradient fills, and `paint`, which composites one part."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from imagegen.render.colour import Colour, rgb8
from imagegen.render.scene import Box, Scene

_MASK_BUDGET_PIXELS = 24_000_000  # cap on a supersampled mask, so huge frames stay fast


@dataclass(frozen=True)
class Prim:
    """A drawing primitive in full-resolution pixel coordinates."""

    kind: str                       # ellipse, rrect, polygon, line
    points: tuple[float, ...]       # box (x0, y0, x1, y1) or flat point list
    radius: float = 0.0             # rrect corner radius or line width
    corners: tuple[bool, bool, bool, bool] | None = None
    erase: bool = False             # cut a hole instead of filling


def _prim_bounds(p: Prim) -> Box:
    xs, ys = p.points[0::2], p.points[1::2]
    pad = p.radius if p.kind == "line" else 0.0
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


def aa_mask(prims: list[Prim], width: int, height: int) -> tuple[Image.Image, tuple[int, int]] | None:
    """Anti-aliased coverage mask of the primitives, cropped to their bounds within the image."""
    bounds = [_prim_bounds(p) for p in prims if not p.erase]
    x0 = max(0, math.floor(min(b[0] for b in bounds)) - 1)
    y0 = max(0, math.floor(min(b[1] for b in bounds)) - 1)
    x1 = min(width, math.ceil(max(b[2] for b in bounds)) + 1)
    y1 = min(height, math.ceil(max(b[3] for b in bounds)) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    w, h = x1 - x0, y1 - y0
    # Supersample (then box-reduce) for smooth, still crisp edges; fewer samples for huge masks.
    ss = max(1, min(4, int(math.sqrt(_MASK_BUDGET_PIXELS / (w * h)))))
    big = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(big)
    for p in prims:
        pts = [(v - (x0 if i % 2 == 0 else y0)) * ss for i, v in enumerate(p.points)]
        fill = 0 if p.erase else 255
        if p.kind == "ellipse":
            draw.ellipse(_ordered(pts), fill=fill)
        elif p.kind == "rrect":
            draw.rounded_rectangle(_ordered(pts), radius=max(0, int(p.radius * ss)), fill=fill, corners=p.corners)
        elif p.kind == "polygon":
            draw.polygon([(pts[i], pts[i + 1]) for i in range(0, len(pts), 2)], fill=fill)
        else:
            draw.line([(pts[i], pts[i + 1]) for i in range(0, len(pts), 2)], fill=fill,
                      width=max(1, int(round(p.radius * ss))))
    return (big.reduce(ss) if ss > 1 else big), (x0, y0)


def _ordered(pts: list[float]) -> tuple[float, float, float, float]:
    return min(pts[0], pts[2]), min(pts[1], pts[3]), max(pts[0], pts[2]), max(pts[1], pts[3])


def _shaded(kind: str, base: Colour, size: tuple[int, int], scene: Scene) -> Image.Image:
    """Smooth shading of a sphere, cylinder or flat panel, computed small and upscaled."""
    w, h = size
    sw, sh = max(4, min(w, w // 3 + 1)), max(4, min(h, h // 3 + 1))
    u = (np.arange(sw, dtype=np.float32) + 0.5) / sw * 2 - 1
    v = (np.arange(sh, dtype=np.float32) + 0.5) / sh * 2 - 1
    nx = np.broadcast_to(u[None, :], (sh, sw))
    ny = np.broadcast_to(v[:, None], (sh, sw)) if kind == "sphere" else np.zeros((sh, sw), np.float32)
    if kind == "panel":
        nx, ny = nx * 0.25, np.broadcast_to(v[:, None], (sh, sw)) * 0.25
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.0, 1.0))
    lx, ly = scene.light_dir
    light = np.array([lx * 0.75, ly * 0.75, 0.65], np.float32)
    light /= np.linalg.norm(light)
    diffuse = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0.0, 1.0) ** 40
    amb = scene.light.ambient
    col = base[None, None, :] * (amb + (1 - amb) * diffuse)[..., None]
    col = col + (0.35 * spec)[..., None] * (1 - col)
    if scene.lighting in ("portrait", "moody") or scene.style == "cyberpunk":  # rim light
        rim_colour = scene.accents[0] if scene.style == "cyberpunk" else np.ones(3, np.float32)
        rim = np.clip(1 - nz, 0, 1) ** 3 * (0.55 if scene.style == "cyberpunk" else 0.3)
        col = col + rim[..., None] * (rim_colour - col)
    small = Image.fromarray((np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return small.resize((w, h), Image.Resampling.BILINEAR)


def linear_fill(c0: Colour, c1: Colour, size: tuple[int, int], angle: float) -> Image.Image:
    w, h = size
    sw, sh = max(2, w // 8), max(2, h // 8)
    u = np.linspace(-1, 1, sw, dtype=np.float32)[None, :]
    v = np.linspace(-1, 1, sh, dtype=np.float32)[:, None]
    t = np.clip(0.5 + 0.5 * (u * math.cos(angle) + v * math.sin(angle)) / 1.2, 0, 1)[..., None]
    col = c0 + (c1 - c0) * t
    small = Image.fromarray((np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return small.resize((w, h), Image.Resampling.BILINEAR)


def paint(canvas: Image.Image, prims: list[Prim], fill: Colour | str, scene: Scene,
          opacity: float = 1.0, base: Colour | None = None) -> None:
    """Composite one part: a mask from `prims`, filled with a colour or a shading kind."""
    made = aa_mask(prims, canvas.width, canvas.height)
    if made is None:
        return
    mask, (x0, y0) = made
    if opacity < 1.0:
        mask = mask.point(lambda a: int(a * opacity + 0.5))
    if isinstance(fill, str):
        tile = _shaded(fill, base if base is not None else scene.hero_rgb, mask.size, scene)
        canvas.paste(tile, (x0, y0), mask)
    else:
        canvas.paste(rgb8(fill), (x0, y0, x0 + mask.width, y0 + mask.height), mask)


def box_px(scene: Scene, box: Box) -> Box:
    """A box in short-side units, in pixels."""
    x0, y0, x1, y1 = box
    return scene.px(x0), scene.px(y0), scene.px(x1), scene.px(y1)


def rotated_ellipse(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 40) -> tuple[float, ...]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ex, ey = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return tuple(float(v) for pair in zip(cx + ex * ca - ey * sa, cy + ex * sa + ey * ca) for v in pair)


def capsule(cx: float, cy: float, length: float, radius: float, angle: float, n: int = 16) -> tuple[float, ...]:
    """Polygon of a rotated pill: two half circles joined by straight sides."""
    ca, sa = math.cos(angle), math.sin(angle)
    points: list[float] = []
    for end, start in ((1, -math.pi / 2), (-1, math.pi / 2)):
        ex, ey = cx + end * ca * length / 2, cy + end * sa * length / 2
        for t in np.linspace(start, start + math.pi, n):
            points += [ex + radius * math.cos(t + angle), ey + radius * math.sin(t + angle)]
    return tuple(points)
