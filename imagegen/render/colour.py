"""Colour maths for the renderer: float sRGB triples (brand hex in, 8-bit out), luma, saturation and
mixing, the luma moves that keep a colour reading as its brand colour, and the smoothstep ramp of
every soft edge."""

from __future__ import annotations

import numpy as np

Colour = np.ndarray  # shape (3,), float32 sRGB in 0..1


def hex_to_rgb(value: str) -> Colour:
    text = str(value).strip().lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    try:
        if len(text) != 6:
            raise ValueError
        return np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32) / 255.0
    except ValueError:
        raise ValueError(f"palette colour {value!r} is not a #rrggbb hex colour") from None


def luma(c: Colour) -> float:
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def chroma(c: Colour) -> float:
    return float(c.max() - c.min())


def saturate(c: Colour, amount: float) -> Colour:
    grey = luma(c)
    return np.clip(grey + (c - grey) * amount, 0.0, 1.0).astype(np.float32)


def with_luma(c: Colour, target: float) -> Colour:
    """Mix towards white or black until the colour's luma is `target` (luma is linear in the mix)."""
    target = float(np.clip(target, 0.0, 1.0))
    current = luma(c)
    if current < target:
        t = (target - current) / max(1e-6, 1.0 - current)
        return (c + (1.0 - c) * t).astype(np.float32)
    t = (current - target) / max(1e-6, current)
    return (c * (1.0 - t)).astype(np.float32)


def mix(a: Colour, b: Colour, t: float) -> Colour:
    return (a + (b - a) * t).astype(np.float32)


def rgb8(c: Colour) -> tuple[int, int, int]:
    r, g, b = (int(round(float(v) * 255)) for v in np.clip(c, 0.0, 1.0))
    return r, g, b


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def toward_luma(c: Colour, target: float, share: float) -> Colour:
    """Move a colour only `share` of the way to a luma, so it still reads as the brand colour."""
    return with_luma(c, luma(c) + (target - luma(c)) * share)


def contrasting(colours: list[Colour], bg_luma: float) -> Colour:
    best = max(colours, key=lambda c: abs(luma(c) - bg_luma) + 0.3 * chroma(c))
    if abs(luma(best) - bg_luma) < 0.25:
        best = with_luma(best, bg_luma - 0.3 if bg_luma > 0.45 else bg_luma + 0.3)
    return best
