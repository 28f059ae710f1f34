"""Offline procedural renderer behind the `local` provider.

A stand-in, not a diffusion model: it turns the structured prompt spec (subject, palette, style,
lighting, composition, mood) and a seed into an abstract product/marketing render that behaves
like a real one for everything downstream: brand colours to find, a crisp hero subject for the
content-aware crop, texture for the sharpness gate, no clipped highlights or crushed shadows, and
a layout that moves with the seed so near-duplicate gates see distinct images.

Speed comes from splitting the picture by frequency. Everything smooth (gradient, soft shapes,
light pools, shadows, vignette) is computed with numpy on a small grid and upscaled; everything
crisp (hero subject, podium, lines, frame) is drawn at full resolution with Pillow on supersampled
masks; film grain is one full-resolution noise layer.

Determinism: one numpy Generator seeded from the seed and a SHA-256 of the canonical spec JSON
(Python's hash() is salted per process). Layout draws come before any draw whose count depends
on the output size, so one spec+seed gives the same layout at every size, adapted to the aspect.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

RENDERER_MODEL = "local-procedural-v1"

# The seed document's brand palette, with its pure white background softened so nothing clips.
DEFAULT_PALETTE = ("#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50", "#F4F1EA")

STYLES = ("product", "portrait", "landscape", "cyberpunk", "vintage", "minimalist")
LIGHTINGS = ("product", "portrait", "moody", "golden", "natural")
COMPOSITIONS = ("rule_of_thirds", "golden_ratio", "leading_lines", "symmetry", "frame", "centered")
HERO_KINDS = ("sphere", "cube", "bottle", "watch", "slab")

_LOWRES_LONG_SIDE = 480        # smooth layers are computed at most this big, then upscaled
_MASK_BUDGET_PIXELS = 24_000_000  # cap on a supersampled mask, so huge frames stay fast
_TONE_FLOOR, _TONE_CEILING = 12 / 255, 244 / 255  # output range before grain: no clipping

Colour = np.ndarray  # shape (3,), float32 sRGB in 0..1
Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- vocabulary

# Checked in this order: the first style whose words appear in the spec's style text wins.
_STYLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cyberpunk", ("cyberpunk", "neon", "futuristic", "synthwave", "sci-fi", "scifi")),
    ("vintage", ("vintage", "retro", "film", "nostalg", "analog", "sepia")),
    ("minimalist", ("minimal", "simple", "negative space")),
    ("portrait", ("portrait", "bokeh", "headshot", "shallow")),
    ("landscape", ("landscape", "panoram", "scenic", "outdoor", "nature", "epic")),
    ("product", ("product", "commerce", "studio", "packshot", "commercial", "clean")),
)
_LIGHTING_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("moody", ("moody", "dramatic", "low key", "low-key", "hard", "noir", "dark", "chiaroscuro")),
    ("golden", ("golden", "sunset", "sunrise", "warm light")),
    ("portrait", ("portrait", "rembrandt", "rim", "45")),
    ("natural", ("natural", "daylight", "window", "overcast", "ambient")),
    ("product", ("product", "studio", "softbox", "soft", "high key", "high-key", "even")),
)
_COMPOSITION_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rule_of_thirds", ("third",)),
    ("golden_ratio", ("golden", "phi", "fibonacci", "spiral")),
    ("leading_lines", ("leading", "lines", "converg", "perspective")),
    ("symmetry", ("symmetr", "mirror")),
    ("frame", ("frame", "framing", "door", "window", "arch")),
    ("centered", ("center", "centre", "central")),
)
_SUBJECT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("watch", ("watch", "clock", "coin", "compass", "timepiece")),
    ("bottle", ("bottle", "perfume", "serum", "drink", "wine", "beer", "soda", "lotion",
                "shampoo", "cosmetic", "fragrance", "jar")),
    ("slab", ("phone", "tablet", "laptop", "card", "book", "screen", "device", "gadget")),
    ("cube", ("box", "package", "packaging", "gift", "cube", "speaker", "carton")),
    ("sphere", ("ball", "sphere", "orb", "fruit", "apple", "orange", "planet", "bubble", "pearl")),
)
_DEFAULT_LIGHTING = {"product": "product", "portrait": "portrait", "landscape": "golden",
                     "cyberpunk": "moody", "vintage": "natural", "minimalist": "product"}


@dataclass(frozen=True)
class _Look:
    """What a style does to the picture."""

    bg_luma: float          # target brightness of the background
    saturation: float
    grain: float            # film grain sigma in 8-bit levels
    tint: tuple[float, float, float]
    fade: float             # lifted black point (film look)
    podium: bool            # stand the hero on a plinth, as in a studio packshot
    soft_shapes: tuple[int, int]  # how many soft background shapes (min, max)


@dataclass(frozen=True)
class _Light:
    """What a lighting setup does (after the seed document's LIGHTING_PRESETS)."""

    ambient: float          # share of the hero colour left in its shadow side
    key: float              # strength of the key light pool on the background
    key_edge: float         # falloff of the pool, short-side units: small = hard light
    vignette: float
    contrast: float
    exposure: float         # background brightness multiplier
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


_LOOKS = {
    "product": _Look(0.84, 1.00, 1.6, (1.00, 1.00, 1.00), 0.00, True, (2, 4)),
    "portrait": _Look(0.56, 0.95, 2.2, (1.02, 1.00, 0.98), 0.00, False, (2, 3)),
    "landscape": _Look(0.64, 1.05, 2.2, (1.02, 1.00, 0.97), 0.00, False, (1, 2)),
    "cyberpunk": _Look(0.10, 1.30, 2.6, (0.98, 0.98, 1.04), 0.00, False, (2, 3)),
    "vintage": _Look(0.66, 0.75, 4.5, (1.08, 1.00, 0.85), 0.06, True, (2, 3)),
    "minimalist": _Look(0.87, 0.90, 1.3, (1.00, 1.00, 1.00), 0.00, True, (1, 2)),
}
_LIGHTS = {
    "product": _Light(0.62, 0.16, 0.55, 0.10, 0.96, 1.00),
    "portrait": _Light(0.42, 0.22, 0.40, 0.24, 1.06, 0.90),
    "moody": _Light(0.20, 0.50, 0.018, 0.45, 1.18, 0.40),
    "golden": _Light(0.50, 0.30, 0.50, 0.20, 1.04, 1.00, (1.06, 1.00, 0.90)),
    "natural": _Light(0.55, 0.14, 0.60, 0.16, 1.00, 1.00),
}
# mood word -> (saturation, contrast, exposure, tint)
_MOODS: tuple[tuple[tuple[str, ...], tuple[float, float, float, tuple[float, float, float]]], ...] = (
    (("calm", "serene", "peaceful", "gentle", "soft", "dreamy"), (0.85, 0.92, 1.03, (1.0, 1.0, 1.0))),
    (("energetic", "bold", "vibrant", "playful", "fun", "dynamic"), (1.15, 1.08, 1.0, (1.0, 1.0, 1.0))),
    (("warm", "cozy", "cosy", "nostalgic", "inviting"), (1.0, 1.0, 1.0, (1.05, 1.0, 0.92))),
    (("cool", "fresh", "crisp", "icy", "clean"), (1.0, 1.02, 1.02, (0.96, 1.0, 1.05))),
    (("dramatic", "dark", "mysterious", "intense"), (1.05, 1.12, 0.85, (1.0, 1.0, 1.0))),
    (("luxury", "luxurious", "elegant", "premium", "sophisticated"), (0.92, 1.08, 0.95, (1.02, 1.0, 0.98))),
)


def _match(text: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    """First table key one of whose words occurs in `text`, else None.

    Long words match anywhere ("phone" in "smartphone", "nostalg" in "nostalgic"); words of four
    letters or fewer must start a word, so "rim" does not fire on "prime" nor "box" on "xbox".
    """
    norm = str(text).lower().replace("_", " ").replace("-", " ")
    for key, words in table:
        for word in (key, *words):
            word = word.replace("_", " ").replace("-", " ")
            boundary = r"(?<![a-z0-9])" if len(word) <= 4 else ""
            if re.search(boundary + re.escape(word), norm):
                return key
    return None


# --------------------------------------------------------------------------- colour helpers

def _hex_to_rgb(value: str) -> Colour:
    text = str(value).strip().lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    try:
        if len(text) != 6:
            raise ValueError
        return np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32) / 255.0
    except ValueError:
        raise ValueError(f"palette colour {value!r} is not a #rrggbb hex colour") from None


def _luma(c: Colour) -> float:
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def _chroma(c: Colour) -> float:
    return float(c.max() - c.min())


def _saturate(c: Colour, amount: float) -> Colour:
    grey = _luma(c)
    return np.clip(grey + (c - grey) * amount, 0.0, 1.0).astype(np.float32)


def _with_luma(c: Colour, target: float) -> Colour:
    """Mix towards white or black until the colour's luma is `target` (luma is linear in the mix)."""
    target = float(np.clip(target, 0.0, 1.0))
    current = _luma(c)
    if current < target:
        t = (target - current) / max(1e-6, 1.0 - current)
        return (c + (1.0 - c) * t).astype(np.float32)
    t = (current - target) / max(1e-6, current)
    return (c * (1.0 - t)).astype(np.float32)


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return (a + (b - a) * t).astype(np.float32)


def _rgb8(c: Colour) -> tuple[int, int, int]:
    return tuple(int(round(float(v) * 255)) for v in np.clip(c, 0.0, 1.0))  # type: ignore[return-value]


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class _Soft:
    """One soft background shape, in short-side units."""

    kind: str               # blob, band, ring, disc
    x: float
    y: float
    size: float             # sigma / radius / band half-width
    angle: float
    colour: Colour
    alpha: float


@dataclass
class _Scene:
    width: int
    height: int
    style: str
    lighting: str
    composition: str
    look: _Look
    light: _Light
    contrast: float
    tint: tuple[float, float, float]
    grain: float
    bg_luma: float
    bg: tuple[Colour, Colour]
    hero_rgb: Colour
    accents: list[Colour]
    podium_rgb: Colour
    line_rgb: Colour
    hero_kind: str
    with_strap: bool
    hero_box: Box           # short-side units
    podium_box: Box | None
    light_dir: tuple[float, float]   # image-plane unit vector pointing at the light
    gradient_angle: float
    soft_shapes: list[_Soft] = field(default_factory=list)
    line_targets: list[tuple[float, float, float]] = field(default_factory=list)  # angle, width, kind
    frame_arch: bool = False
    props: list[_Soft] = field(default_factory=list)
    hero_params: tuple[float, ...] = ()   # free draws for painters (watch hands, grid vanishing point)
    ridge_phases: tuple[float, ...] = ()  # landscape hills: 3 layers x 3 sine phases

    @property
    def short(self) -> int:
        return min(self.width, self.height)

    @property
    def aspect_w(self) -> float:
        return self.width / self.short

    @property
    def aspect_h(self) -> float:
        return self.height / self.short

    def px(self, v: float) -> float:
        return v * self.short


def _scene_rng(spec: dict[str, Any], seed: int) -> np.random.Generator:
    """Seed from the seed and a stable digest of the spec (never Python's salted hash())."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    seed64 = int(seed) % (1 << 64)
    words = [seed64 & 0xFFFFFFFF, seed64 >> 32] + [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(words)


def _parse_palette(value: Any) -> list[Colour]:
    if not value:
        return [_hex_to_rgb(c) for c in DEFAULT_PALETTE]
    if isinstance(value, str):
        value = [value]
    return [_hex_to_rgb(c) for c in value]


def _plan_scene(spec: dict[str, Any], rng: np.random.Generator, width: int, height: int) -> _Scene:
    style = _match(spec.get("style", ""), _STYLE_WORDS) or "product"
    lighting = _match(spec.get("lighting", ""), _LIGHTING_WORDS) or _DEFAULT_LIGHTING[style]
    composition = _match(spec.get("composition", ""), _COMPOSITION_WORDS) or "rule_of_thirds"
    subject = str(spec.get("subject", "") or "")
    look, light = _LOOKS[style], _LIGHTS[lighting]
    mood_sat, mood_con, mood_exp, mood_tint = _mood_grade(str(spec.get("mood", "") or ""))

    saturation = look.saturation * mood_sat
    bg_luma = float(np.clip(look.bg_luma * light.exposure * mood_exp, 0.07, 0.9))
    palette = [_saturate(c, saturation) for c in _parse_palette(spec.get("palette"))]
    bg, hero_rgb, accents = _assign_colours(palette, bg_luma, style == "cyberpunk" or lighting == "moody", style, rng)
    bg_luma = (_luma(bg[0]) + _luma(bg[1])) / 2  # what the ground really is, after brand matching
    podium_target = bg_luma - 0.14 if bg_luma > 0.4 else bg_luma + 0.16
    podium_rgb = _toward_luma(min(accents, key=lambda c: abs(_luma(c) - podium_target)), podium_target, 0.7)

    hero_kind = _match(subject, _SUBJECT_WORDS) or HERO_KINDS[int(rng.integers(len(HERO_KINDS)))]
    light_dir = _plan_light_dir(lighting, rng)
    scene = _Scene(
        width=width, height=height, style=style, lighting=lighting, composition=composition,
        look=look, light=light, contrast=light.contrast * mood_con,
        tint=tuple(a * b * c for a, b, c in zip(look.tint, light.tint, mood_tint)),  # type: ignore[arg-type]
        grain=look.grain + (0.6 if lighting == "moody" else 0.0), bg_luma=bg_luma,
        bg=bg, hero_rgb=hero_rgb, accents=accents,
        podium_rgb=podium_rgb,
        line_rgb=_contrasting(accents + [hero_rgb], bg_luma),
        hero_kind=hero_kind, with_strap="watch" in subject.lower(),
        hero_box=(0, 0, 0, 0), podium_box=None, light_dir=light_dir,
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
    )
    _place_hero(scene, rng)
    scene.soft_shapes = _plan_soft_shapes(scene, rng)
    scene.line_targets = [(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.6, 1.4)), float(rng.random()))
                          for _ in range(6)]
    scene.frame_arch = bool(rng.random() < 0.5)
    scene.props = _plan_props(scene, rng)
    scene.hero_params = tuple(float(v) for v in rng.random(8))
    scene.ridge_phases = tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 9))
    return scene


def _mood_grade(mood: str) -> tuple[float, float, float, tuple[float, float, float]]:
    sat, con, exp, tint = 1.0, 1.0, 1.0, (1.0, 1.0, 1.0)
    text = mood.lower()
    for words, (s, c, e, t) in _MOODS:
        if any(w in text for w in words):
            sat, con, exp = sat * s, con * c, exp * e
            tint = (tint[0] * t[0], tint[1] * t[1], tint[2] * t[2])
    return sat, con, exp, tint


def _toward_luma(c: Colour, target: float, share: float) -> Colour:
    """Move a colour only `share` of the way to a luma, so it still reads as the brand colour."""
    return _with_luma(c, _luma(c) + (target - _luma(c)) * share)


def _assign_colours(palette: list[Colour], bg_luma: float, dark: bool, style: str,
                    rng: np.random.Generator) -> tuple[tuple[Colour, Colour], Colour, list[Colour]]:
    """Background pair, hero colour and accents, all from the brand palette.

    The ground takes the palette colours nearest the style's brightness, moved only part of the
    way towards it: a brand gate compares dominant colours with the palette, and a light ground
    made by bleaching a saturated colour reads as off-brand.
    """
    n = len(palette)
    near = sorted(range(n), key=lambda i: abs(_luma(palette[i]) - bg_luma))[:3]
    first = near[int(rng.integers(min(2, len(near))))]
    others = [i for i in near if i != first] or [first]
    second = others[int(rng.integers(len(others)))]
    push = 0.85 if dark else 0.6  # a dark scene must be dark even with a light palette
    bg = (_toward_luma(palette[first], bg_luma + 0.05, push), _toward_luma(palette[second], bg_luma - 0.06, push))
    ground = (_luma(bg[0]) + _luma(bg[1])) / 2
    # The hero is the colour that stands out most against the ground: luma distance + chroma.
    candidates = [i for i in range(n) if i != first] or [first]
    ranked = sorted(candidates, key=lambda i: -(abs(_luma(palette[i]) - ground) + 0.6 * _chroma(palette[i])))
    hero_index = ranked[int(rng.integers(min(2, len(ranked))))]
    hero = palette[hero_index]
    if abs(_luma(hero) - ground) < 0.3:
        hero = _with_luma(hero, ground - 0.38 if ground > 0.45 else ground + 0.38)
    order = [int(i) for i in rng.permutation(n)]
    rest = [palette[i] for i in order if i != hero_index] or [_with_luma(hero, 0.5)]
    if style == "cyberpunk":  # neon: saturated, bright accents on a dark ground
        rest = [_with_luma(_saturate(c, 1.5), max(0.5, _luma(c))) for c in rest]
        hero = _with_luma(_saturate(hero, 1.4), max(0.5, _luma(hero)))
    return bg, hero, rest


def _contrasting(colours: list[Colour], bg_luma: float) -> Colour:
    best = max(colours, key=lambda c: abs(_luma(c) - bg_luma) + 0.3 * _chroma(c))
    if abs(_luma(best) - bg_luma) < 0.25:
        best = _with_luma(best, bg_luma - 0.3 if bg_luma > 0.45 else bg_luma + 0.3)
    return best


def _plan_light_dir(lighting: str, rng: np.random.Generator) -> tuple[float, float]:
    spread = {"product": (0.5, 1.0), "portrait": (0.65, 0.95), "moody": (0.2, 0.7),
              "golden": (1.0, 1.3), "natural": (0.4, 0.9)}[lighting]
    side = 1.0 if rng.random() < 0.5 else -1.0
    angle = -math.pi / 2 + side * float(rng.uniform(*spread))
    return math.cos(angle), math.sin(angle)


_HERO_WIDTH = {"sphere": 1.0, "cube": 0.92, "bottle": 0.42, "watch": 0.9, "slab": 0.54}


def _composition_point(scene: _Scene, rng: np.random.Generator) -> tuple[float, float]:
    """Where the hero's centre goes, as fractions of width and height."""
    pick = [float(v) for v in rng.random(4)]
    jitter = (pick[2] - 0.5, pick[3] - 0.5)
    third = (1 / 3 if pick[0] < 0.5 else 2 / 3, 1 / 3 if pick[1] < 0.5 else 2 / 3)
    if scene.composition in ("rule_of_thirds", "leading_lines"):
        return third[0] + 0.04 * jitter[0], third[1] + 0.04 * jitter[1]
    if scene.composition == "golden_ratio":
        phi = 1 / 1.618034
        u = (phi if pick[0] < 0.5 else 1 - phi) + 0.02 * jitter[0]
        return u, (phi if pick[1] < 0.5 else 1 - phi) + 0.02 * jitter[1]
    if scene.composition == "symmetry":
        return 0.5, 0.5 + 0.06 * jitter[1]
    if scene.composition == "frame":
        return 0.5 + 0.1 * jitter[0], 0.52 + 0.06 * jitter[1]
    return 0.5, 0.5 + 0.04 * jitter[1]  # centered


def _place_hero(scene: _Scene, rng: np.random.Generator) -> None:
    """Size the hero (and its podium) and put its centre on the composition point."""
    size_range = {"symmetry": (0.36, 0.46), "centered": (0.36, 0.46), "frame": (0.26, 0.32)}
    lo, hi = size_range.get(scene.composition, (0.27, 0.36))
    hero_h = float(rng.uniform(lo, hi)) * (0.8 if scene.style == "minimalist" else 1.0)
    u, v = _composition_point(scene, rng)
    hero_w = hero_h * _HERO_WIDTH[scene.hero_kind]
    cx, cy = u * scene.aspect_w, v * scene.aspect_h
    podium = None
    if scene.look.podium:
        pw = max(hero_w * 1.55, hero_h * 0.75)
        ph = hero_h * float(rng.uniform(0.22, 0.34))
        cap = pw * 0.26  # the podium's elliptical top; the hero stands on its centre line
        podium = (-pw / 2, hero_h / 2 - cap * 0.45, pw / 2, hero_h / 2 + ph + cap / 2)
    # Keep the whole group (hero + podium) inside the frame with a margin, moving it minimally.
    left = min(-hero_w / 2, podium[0] if podium else 0.0)
    right = max(hero_w / 2, podium[2] if podium else 0.0)
    top, bottom = -hero_h / 2, podium[3] if podium else hero_h / 2
    margin = 0.05
    cx = float(np.clip(cx, margin - left, scene.aspect_w - margin - right))
    cy = float(np.clip(cy, margin - top, scene.aspect_h - margin - bottom))
    if bottom - top + 2 * margin > scene.aspect_h or right - left + 2 * margin > scene.aspect_w:
        cx, cy = scene.aspect_w / 2, scene.aspect_h / 2 - (bottom + top) / 2
    scene.hero_box = (cx - hero_w / 2, cy - hero_h / 2, cx + hero_w / 2, cy + hero_h / 2)
    if podium:
        scene.podium_box = (cx + podium[0], cy + podium[1], cx + podium[2], cy + podium[3])


def _plan_soft_shapes(scene: _Scene, rng: np.random.Generator) -> list[_Soft]:
    lo, hi = scene.look.soft_shapes
    count = int(rng.integers(lo, hi + 1))
    kinds = ("blob", "band", "ring") if scene.style != "cyberpunk" else ("band", "band", "ring")
    shapes = []
    for i in range(count):
        draws = rng.random(6)
        kind = kinds[int(draws[0] * len(kinds))]
        colour = scene.accents[i % len(scene.accents)]
        if scene.bg_luma > 0.4:  # keep light grounds airy: shapes are tints, not blots
            colour = _toward_luma(colour, min(0.95, scene.bg_luma + 0.04 - 0.2 * draws[5]), 0.7)
        elif scene.style != "cyberpunk":  # dark grounds stay dark: only the key light may glow
            colour = _toward_luma(colour, scene.bg_luma * (0.6 + 0.7 * draws[5]), 0.8)
        size = {"blob": 0.25 + 0.3 * draws[3], "band": 0.05 + 0.12 * draws[3], "ring": 0.3 + 0.4 * draws[3]}[kind]
        alpha = (0.35 + 0.3 * draws[4]) * (1.4 if scene.style == "cyberpunk" else 1.0)
        shapes.append(_Soft(kind, float(draws[1] * scene.aspect_w), float(draws[2] * scene.aspect_h),
                            size, float(rng.uniform(0, math.pi)), colour, min(0.8, alpha)))
    if scene.style == "portrait":  # bokeh: out-of-focus discs of light
        for _ in range(18):
            d = rng.random(5)
            colour = _with_luma(scene.accents[int(d[3] * len(scene.accents))], min(0.92, scene.bg_luma + 0.25))
            shapes.append(_Soft("disc", float(d[0] * scene.aspect_w), float(d[1] * scene.aspect_h),
                                0.02 + 0.07 * float(d[2]), 0.0, colour, 0.12 + 0.25 * float(d[4])))
    if scene.composition == "symmetry":  # mirror every shape about the vertical axis
        shapes += [_Soft(s.kind, scene.aspect_w - s.x, s.y, s.size, math.pi - s.angle, s.colour, s.alpha)
                   for s in shapes]
    return shapes


_PROP_COUNTS = {"product": (2, 4), "minimalist": (1, 2), "portrait": (1, 3), "landscape": (0, 2),
                "cyberpunk": (2, 4), "vintage": (1, 3)}
_PROP_KINDS = ("orb", "ring", "pill", "dots")
_PROP_CANDIDATES = 12


def _group_box(scene: _Scene) -> Box:
    """Hero plus podium, in short-side units."""
    if scene.podium_box is None:
        return scene.hero_box
    return (min(scene.hero_box[0], scene.podium_box[0]), scene.hero_box[1],
            max(scene.hero_box[2], scene.podium_box[2]), scene.podium_box[3])


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _plan_props(scene: _Scene, rng: np.random.Generator) -> list[_Soft]:
    """Small crisp set dressing (orbs, rings, pills, dot grids) in the free space around the hero.

    A fixed number of candidates is always drawn, so the rng stream (and with it everything
    planned later) never depends on which candidates happen to fit.
    """
    lo, hi = _PROP_COUNTS[scene.style]
    want = int(rng.integers(lo, hi + 1))
    draws = rng.random((_PROP_CANDIDATES, 6))
    gx0, gy0, gx1, gy1 = _group_box(scene)
    keep_out = 0.16 if scene.composition == "frame" else 0.05
    taken: list[Box] = [(gx0 - keep_out, gy0 - keep_out * 1.4, gx1 + keep_out, gy1 + keep_out)]
    props: list[_Soft] = []
    # Props are accents: a colour that vanishes into the ground would only add noise.
    colours = [c for c in scene.accents if abs(_luma(c) - scene.bg_luma) > 0.18] or scene.accents
    for d in draws:
        if len(props) >= want:
            break
        size = 0.025 + 0.04 * float(d[3])
        x = 0.06 + size + float(d[1]) * (scene.aspect_w - 0.12 - 2 * size)
        y = 0.06 + size + float(d[2]) * (scene.aspect_h - 0.12 - 2 * size)
        box = (x - size * 1.3, y - size * 1.3, x + size * 1.3, y + size * 1.3)
        mirrored = (scene.aspect_w - box[2], box[1], scene.aspect_w - box[0], box[3])
        if any(_overlaps(box, t) for t in taken) or (scene.composition == "symmetry" and _overlaps(box, mirrored)):
            continue
        kind = _PROP_KINDS[int(d[0] * len(_PROP_KINDS))]
        # Secondary to the hero: smaller, and a step closer to the ground's brightness.
        colour = _toward_luma(colours[int(d[4] * len(colours))], scene.bg_luma, 0.3)
        props.append(_Soft(kind, x, y, size, float(d[5]) * math.pi, colour, 1.0))
        taken.append(box)
        if scene.composition == "symmetry":
            props.append(_Soft(kind, scene.aspect_w - x, y, size, math.pi - float(d[5]) * math.pi, colour, 1.0))
            taken.append(mirrored)
    return props


# --------------------------------------------------------------------------- smooth layers

def _lowres_grid(scene: _Scene) -> tuple[np.ndarray, np.ndarray]:
    scale = min(1.0, _LOWRES_LONG_SIDE / max(scene.width, scene.height))
    lw, lh = max(4, round(scene.width * scale)), max(4, round(scene.height * scale))
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) / lw * scene.aspect_w)[None, :]
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) / lh * scene.aspect_h)[:, None]
    return xs, ys


def _blend(img: np.ndarray, colour: Colour, alpha: np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * colour


def _gradient(scene: _Scene, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    angle = scene.gradient_angle
    if scene.composition == "symmetry":  # a mirror-symmetric ground runs vertically
        angle = math.pi / 2 if math.sin(angle) >= 0 else -math.pi / 2
    if scene.style == "landscape":  # sky: light at the horizon, deeper overhead
        angle = -math.pi / 2 + 0.25 * math.sin(angle)
    ca, sa = math.cos(angle), math.sin(angle)
    reach = 0.5 * (abs(scene.aspect_w * ca) + abs(scene.aspect_h * sa))
    t = ((xs - scene.aspect_w / 2) * ca + (ys - scene.aspect_h / 2) * sa) / reach
    t = _smoothstep(0.0, 1.0, 0.5 + 0.5 * t)[..., None]
    c0, c1 = scene.bg
    return (c0 + (c1 - c0) * t).astype(np.float32)


def _soft_alpha(shape: _Soft, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy = xs - shape.x, ys - shape.y
    if shape.kind == "blob":
        return shape.alpha * np.exp(-(dx * dx + dy * dy) / (2 * shape.size ** 2))
    if shape.kind == "band":
        dist = dx * math.sin(shape.angle) - dy * math.cos(shape.angle)
        return shape.alpha * np.exp(-(dist * dist) / (2 * shape.size ** 2))
    dist = np.sqrt(dx * dx + dy * dy)
    if shape.kind == "ring":
        return shape.alpha * np.exp(-((dist - shape.size) ** 2) / (2 * (0.06 * shape.size + 0.01) ** 2))
    return shape.alpha * _smoothstep(shape.size, shape.size * 0.8, dist)  # bokeh disc


def _landscape_ridges(scene: _Scene, img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """Layered hills, lighter with distance (atmospheric perspective), plus a low sun."""
    phases = np.reshape(scene.ridge_phases, (3, 3))
    sun = _with_luma(max(scene.accents, key=_luma), 0.9)
    sx, sy = scene.aspect_w * (0.25 + 0.5 * (phases[0, 0] / (2 * math.pi))), scene.aspect_h * 0.45
    dist = np.sqrt((xs - sx) ** 2 + (ys - sy) ** 2)
    _blend(img, sun, 0.5 * np.exp(-dist ** 2 / (2 * 0.18 ** 2)) + 0.45 * _smoothstep(0.075, 0.065, dist))
    for layer in range(3):
        base = scene.aspect_h * (0.58 + 0.12 * layer)
        ridge = base + sum(0.05 / (k + 1) * np.sin((k + 1.3) * 2.1 * xs + phases[layer, k]) for k in range(3))
        colour = _with_luma(scene.accents[layer % len(scene.accents)], scene.bg_luma * (0.8 - 0.2 * layer))
        _blend(img, colour, _smoothstep(-0.004, 0.004, ys - ridge) * 0.95)


def _studio_sweep(scene: _Scene, img: np.ndarray, ys: np.ndarray) -> None:
    """A floor that curves up into the backdrop, darker than the wall."""
    floor_y = scene.podium_box[3] if scene.podium_box else scene.hero_box[3]
    floor = _with_luma(scene.bg[1], scene.bg_luma * 0.86)
    _blend(img, floor, 0.75 * _smoothstep(floor_y - 0.35, floor_y + 0.1, ys) * np.ones_like(img[..., 0]))


def _shadow_and_light(scene: _Scene, img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
    """Key light pool behind the hero and the hero's soft contact shadow."""
    x0, y0, x1, y1 = scene.hero_box
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, y1 - y0
    lx, ly = scene.light_dir
    px, py = cx + lx * 0.35 * size, cy + ly * 0.35 * size
    dist = np.sqrt((xs - px) ** 2 + ((ys - py) * 0.8) ** 2)
    radius = 0.45 + 0.4 * size if scene.lighting != "moody" else 0.2 + 0.6 * size
    pool = _smoothstep(radius + scene.light.key_edge, radius - scene.light.key_edge, dist)
    if scene.lighting != "moody":
        pool = np.exp(-dist ** 2 / (2 * radius ** 2))
    glow = _with_luma(_mix(scene.bg[0], np.ones(3, np.float32), 0.5), min(0.93, scene.bg_luma + 0.3))
    _blend(img, glow, scene.light.key * pool)
    if scene.style == "cyberpunk":  # neon halo around the hero
        halo = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (0.7 * size) ** 2))
        _blend(img, scene.hero_rgb, 0.45 * halo)
        return
    ground = scene.podium_box or scene.hero_box
    gx = (ground[0] + ground[2]) / 2 - lx * 0.08
    gw = (ground[2] - ground[0]) * 0.62
    shadow = np.exp(-(((xs - gx) / gw) ** 2 + ((ys - ground[3] + 0.01) / (0.09 * gw + 0.02)) ** 2) * 2.0)
    _blend(img, _with_luma(scene.bg[1], scene.bg_luma * 0.35), 0.55 * shadow)


def _paint_smooth(scene: _Scene) -> Image.Image:
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


def _vignette_map(scene: _Scene) -> Image.Image:
    """Multiplier image (L, 255 = unchanged), darkening towards the corners."""
    xs, ys = _lowres_grid(scene)
    dx = (xs / scene.aspect_w - 0.5) * 2
    dy = (ys / scene.aspect_h - 0.5) * 2
    r = np.sqrt(dx * dx + dy * dy) / math.sqrt(2)
    keep = 1.0 - scene.light.vignette * _smoothstep(0.3, 1.05, r)
    small = Image.fromarray((keep * 255 + 0.5).astype(np.uint8), "L")
    return small.resize((scene.width, scene.height), Image.Resampling.BILINEAR)


# --------------------------------------------------------------------------- crisp layers

@dataclass(frozen=True)
class _Prim:
    """A drawing primitive in full-resolution pixel coordinates."""

    kind: str                       # ellipse, rrect, polygon, line
    points: tuple[float, ...]       # box (x0, y0, x1, y1) or flat point list
    radius: float = 0.0             # rrect corner radius or line width
    corners: tuple[bool, bool, bool, bool] | None = None
    erase: bool = False             # cut a hole instead of filling


def _prim_bounds(p: _Prim) -> Box:
    xs, ys = p.points[0::2], p.points[1::2]
    pad = p.radius if p.kind == "line" else 0.0
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


def _aa_mask(prims: list[_Prim], width: int, height: int) -> tuple[Image.Image, tuple[int, int]] | None:
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


def _shaded(kind: str, base: Colour, size: tuple[int, int], scene: _Scene) -> Image.Image:
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


def _linear_fill(c0: Colour, c1: Colour, size: tuple[int, int], angle: float) -> Image.Image:
    w, h = size
    sw, sh = max(2, w // 8), max(2, h // 8)
    u = np.linspace(-1, 1, sw, dtype=np.float32)[None, :]
    v = np.linspace(-1, 1, sh, dtype=np.float32)[:, None]
    t = np.clip(0.5 + 0.5 * (u * math.cos(angle) + v * math.sin(angle)) / 1.2, 0, 1)[..., None]
    col = c0 + (c1 - c0) * t
    small = Image.fromarray((np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _paint(canvas: Image.Image, prims: list[_Prim], fill: Colour | str, scene: _Scene,
           opacity: float = 1.0, base: Colour | None = None) -> None:
    """Composite one part: a mask from `prims`, filled with a colour or a shading kind."""
    made = _aa_mask(prims, canvas.width, canvas.height)
    if made is None:
        return
    mask, (x0, y0) = made
    if opacity < 1.0:
        mask = mask.point(lambda a: int(a * opacity + 0.5))
    if isinstance(fill, str):
        tile = _shaded(fill, base if base is not None else scene.hero_rgb, mask.size, scene)
        canvas.paste(tile, (x0, y0), mask)
    else:
        canvas.paste(_rgb8(fill), (x0, y0, x0 + mask.width, y0 + mask.height), mask)


def _box_px(scene: _Scene, box: Box) -> Box:
    return tuple(scene.px(v) for v in box)  # type: ignore[return-value]


def _rotated_ellipse(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 40) -> tuple[float, ...]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ex, ey = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return tuple(float(v) for pair in zip(cx + ex * ca - ey * sa, cy + ex * sa + ey * ca) for v in pair)


def _paint_podium(canvas: Image.Image, scene: _Scene) -> None:
    if scene.podium_box is None:
        return
    x0, y0, x1, y1 = _box_px(scene, scene.podium_box)
    cap = (x1 - x0) * 0.26          # height of the elliptical top
    top_c, bottom_c = y0 + cap / 2, y1 - cap / 2
    body = [_Prim("rrect", (x0, top_c, x1, bottom_c)), _Prim("ellipse", (x0, bottom_c - cap / 2, x1, y1))]
    _paint(canvas, body, "cylinder", scene, base=scene.podium_rgb)
    top = _with_luma(scene.podium_rgb, min(0.93, _luma(scene.podium_rgb) + 0.12))
    _paint(canvas, [_Prim("ellipse", (x0, y0, x1, y0 + cap))], top, scene)
    hx0, _, hx1, _ = _box_px(scene, scene.hero_box)
    inset = (hx1 - hx0) * 0.12
    contact = _with_luma(scene.podium_rgb, _luma(scene.podium_rgb) * 0.55)
    _paint(canvas, [_Prim("ellipse", (hx0 + inset, top_c - cap * 0.12, hx1 - inset, top_c + cap * 0.16))],
           contact, scene, opacity=0.45)


def _paint_hero(canvas: Image.Image, scene: _Scene) -> None:
    painter = {"sphere": _hero_sphere, "cube": _hero_cube, "bottle": _hero_bottle,
               "watch": _hero_watch, "slab": _hero_slab}[scene.hero_kind]
    painter(canvas, scene, _box_px(scene, scene.hero_box))


def _highlight(scene: _Scene, base: Colour, amount: float = 0.7) -> Colour:
    return _mix(base, np.ones(3, np.float32), amount)


def _hero_sphere(canvas: Image.Image, scene: _Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    r = (x1 - x0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    _paint(canvas, [_Prim("ellipse", box)], "sphere", scene)
    lx, ly = scene.light_dir
    hx, hy = cx + lx * r * 0.5, cy + ly * r * 0.5
    _paint(canvas, [_Prim("polygon", _rotated_ellipse(hx, hy, r * 0.2, r * 0.1, math.atan2(ly, lx) + math.pi / 2))],
           _highlight(scene, scene.hero_rgb, 0.8), scene, opacity=0.75)


def _hero_cube(canvas: Image.Image, scene: _Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    s = y1 - y0
    cx = (x0 + x1) / 2
    top = (cx, y0, x1, y0 + s / 4, cx, y0 + s / 2, x0, y0 + s / 4)
    left = (x0, y0 + s / 4, cx, y0 + s / 2, cx, y1, x0, y1 - s / 4)
    right = (cx, y0 + s / 2, x1, y0 + s / 4, x1, y1 - s / 4, cx, y1)
    amb = scene.light.ambient
    lit_right = scene.light_dir[0] > 0
    lit = right if lit_right else left
    hexagon = (cx, y0, x1, y0 + s / 4, x1, y1 - s / 4, cx, y1, x0, y1 - s / 4, x0, y0 + s / 4)
    lit_gain, dark_gain = amb + (1 - amb) * 0.8, amb
    # The dark silhouette first, so anti-aliased face seams never show the background through.
    _paint(canvas, [_Prim("polygon", hexagon)], scene.hero_rgb * dark_gain, scene)
    _paint(canvas, [_Prim("polygon", lit)], scene.hero_rgb * lit_gain, scene)
    _paint(canvas, [_Prim("polygon", top)], _highlight(scene, scene.hero_rgb, 0.25), scene)
    # A band wrapped round both side faces (a gift-box ribbon), shaded like the face it is on.
    band = scene.accents[0]
    t0, t1 = 0.42, 0.6
    for face_x, gain in ((x0, lit_gain if not lit_right else dark_gain), (x1, lit_gain if lit_right else dark_gain)):
        outer_top, inner_top = y0 + s / 4, y0 + s / 2
        h = s / 2
        quad = (face_x, outer_top + t0 * h, cx, inner_top + t0 * h, cx, inner_top + t1 * h, face_x, outer_top + t1 * h)
        _paint(canvas, [_Prim("polygon", quad)], band * gain, scene)
    edge = _highlight(scene, scene.hero_rgb, 0.75)
    _paint(canvas, [_Prim("line", (x0, y0 + s / 4, cx, y0 + s / 2, x1, y0 + s / 4), radius=max(1.0, s * 0.008))],
           edge, scene, opacity=0.8)


def _hero_bottle(canvas: Image.Image, scene: _Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    shoulder = y0 + h * 0.3
    body = [_Prim("rrect", (x0, shoulder, x1, y0 + h * 0.62), radius=w * 0.42),
            _Prim("rrect", (x0, y0 + h * 0.45, x1, y1), radius=w * 0.12)]
    neck_w = w * 0.36
    _paint(canvas, [_Prim("rrect", (cx - neck_w / 2, y0 + h * 0.1, cx + neck_w / 2, shoulder + w * 0.2))],
           "cylinder", scene)
    _paint(canvas, body, "cylinder", scene)
    cap_w = w * 0.46
    _paint(canvas, [_Prim("rrect", (cx - cap_w / 2, y0, cx + cap_w / 2, y0 + h * 0.13), radius=w * 0.05)],
           "cylinder", scene, base=scene.accents[-1] if len(scene.accents) > 1 else scene.podium_rgb)
    label = scene.accents[0]
    _paint(canvas, [_Prim("rrect", (x0, y0 + h * 0.55, x1, y0 + h * 0.8))], "cylinder", scene, base=label)
    side = 1 if scene.light_dir[0] > 0 else -1
    sx = cx + side * w * 0.28
    glint = _Prim("rrect", (sx - w * 0.04, shoulder + w * 0.25, sx + w * 0.04, y1 - h * 0.06), radius=w * 0.04)
    _paint(canvas, [glint], np.ones(3, np.float32) * 0.96, scene, opacity=0.45)


def _hero_watch(canvas: Image.Image, scene: _Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    r = (y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if scene.with_strap:
        strap = _with_luma(scene.hero_rgb, _luma(scene.hero_rgb) * 0.6)
        band = _Prim("rrect", (cx - r * 0.5, cy - r * 1.55, cx + r * 0.5, cy + r * 1.55), radius=r * 0.12)
        _paint(canvas, [band], "cylinder", scene, base=strap)
    _paint(canvas, [_Prim("ellipse", (cx - r, cy - r, cx + r, cy + r))], "sphere", scene)
    face = _with_luma(scene.accents[-1], 0.9 if _luma(scene.hero_rgb) < 0.6 else 0.2)
    rf = r * 0.8
    _paint(canvas, [_Prim("ellipse", (cx - rf, cy - rf, cx + rf, cy + rf))], "panel", scene, base=face)
    ink = _contrasting([scene.hero_rgb, scene.podium_rgb, *scene.accents], _luma(face))
    def spoke(angle: float, start: float, end: float, width: float) -> _Prim:
        ca, sa = math.cos(angle), math.sin(angle)
        return _Prim("line", (cx + start * ca, cy + start * sa, cx + end * ca, cy + end * sa), radius=width)

    ticks = [spoke(k * math.pi / 6, rf * (0.78 if k % 3 else 0.68), rf * 0.9, max(1.0, r * 0.035)) for k in range(12)]
    ticks.append(spoke(scene.hero_params[0] * 2 * math.pi, 0.0, rf * 0.5, r * 0.06))   # hour hand
    ticks.append(spoke(scene.hero_params[1] * 2 * math.pi, 0.0, rf * 0.78, r * 0.04))  # minute hand
    ticks.append(_Prim("ellipse", (cx - r * 0.07, cy - r * 0.07, cx + r * 0.07, cy + r * 0.07)))
    _paint(canvas, ticks, ink, scene)


def _hero_slab(canvas: Image.Image, scene: _Scene, box: Box) -> None:
    x0, y0, x1, y1 = box
    w = x1 - x0
    body = _with_luma(scene.hero_rgb, min(_luma(scene.hero_rgb), 0.3))
    _paint(canvas, [_Prim("rrect", box, radius=w * 0.14)], "panel", scene, base=body)
    inset = w * 0.06
    screen = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
    c0 = scene.accents[0]
    c1 = scene.hero_rgb if len(scene.accents) < 2 else scene.accents[1]
    made = _aa_mask([_Prim("rrect", screen, radius=w * 0.09)], canvas.width, canvas.height)
    if made is not None:
        mask, origin = made
        fill = _linear_fill(c0, c1, mask.size, scene.gradient_angle)
        canvas.paste(fill, origin, mask)
    cam = w * 0.035
    cx = (x0 + x1) / 2
    cam_y = y0 + inset * 1.6
    _paint(canvas, [_Prim("ellipse", (cx - cam, cam_y - cam, cx + cam, cam_y + cam))], body * 0.5, scene)
    # A glass reflection: one crisp diagonal edge across the screen.
    sx0, sy0, sx1, sy1 = screen
    glare = (sx0, sy0, sx0 + (sx1 - sx0) * 0.75, sy0, sx0, sy0 + (sy1 - sy0) * 0.45)
    _paint(canvas, [_Prim("polygon", glare)], np.ones(3, np.float32), scene, opacity=0.14)


def _paint_leading_lines(canvas: Image.Image, scene: _Scene) -> None:
    """Wedges and lines from the edges converging on the hero (roads, fences, light rays)."""
    x0, y0, x1, y1 = _box_px(scene, scene.hero_box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = math.hypot(scene.width, scene.height)
    wedges, lines = [], []
    base = scene.line_targets[0][0]
    for k, (_, width, kind) in enumerate(scene.line_targets[:5]):
        angle = base + k * 2 * math.pi / 5 + 0.25 * (width - 1)
        ex, ey = cx + reach * math.cos(angle), cy + reach * math.sin(angle)
        if kind < 0.4:
            half = scene.short * 0.2 * width  # half the wedge's width where it leaves the frame
            nx, ny = -math.sin(angle) * half, math.cos(angle) * half
            wedges.append(_Prim("polygon", (cx, cy, ex + nx, ey + ny, ex - nx, ey - ny)))
        else:
            lines.append(_Prim("line", (cx, cy, ex, ey), radius=max(1.5, scene.short * 0.006 * width)))
    colour = scene.line_rgb
    if wedges:
        _paint(canvas, wedges, _mix(colour, scene.bg[0], 0.55), scene, opacity=0.5)
    if lines:
        _paint(canvas, lines, colour, scene, opacity=0.85)


def _paint_frame(canvas: Image.Image, scene: _Scene) -> None:
    """A door/window frame around the hero group: a panel behind it and a crisp border."""
    gx0, gy0, gx1, gy1 = _box_px(scene, _group_box(scene))
    pad = scene.short * 0.09
    inner = (max(0.0, gx0 - pad), max(0.0, gy0 - pad * 1.3),
             min(scene.width, gx1 + pad), min(scene.height, gy1 + pad * 0.6))
    thick = scene.short * 0.045
    outer = (inner[0] - thick, inner[1] - thick, inner[2] + thick, inner[3] + thick)
    radius = (inner[2] - inner[0]) / 2 if scene.frame_arch else scene.short * 0.01
    corners = (True, True, False, False) if scene.frame_arch else None
    panel = _with_luma(scene.bg[0], min(0.92, scene.bg_luma + 0.1) if scene.bg_luma < 0.8 else scene.bg_luma - 0.08)
    _paint(canvas, [_Prim("rrect", inner, radius=radius, corners=corners)], panel, scene, opacity=0.85)
    ring = [_Prim("rrect", outer, radius=radius + thick, corners=corners),
            _Prim("rrect", inner, radius=radius, corners=corners, erase=True)]
    _paint(canvas, ring, "panel", scene, base=scene.line_rgb)


def _capsule(cx: float, cy: float, length: float, radius: float, angle: float, n: int = 16) -> tuple[float, ...]:
    """Polygon of a rotated pill: two half circles joined by straight sides."""
    ca, sa = math.cos(angle), math.sin(angle)
    points: list[float] = []
    for end, start in ((1, -math.pi / 2), (-1, math.pi / 2)):
        ex, ey = cx + end * ca * length / 2, cy + end * sa * length / 2
        for t in np.linspace(start, start + math.pi, n):
            points += [ex + radius * math.cos(t + angle), ey + radius * math.sin(t + angle)]
    return tuple(points)


def _paint_props(canvas: Image.Image, scene: _Scene) -> None:
    for prop in scene.props:
        x, y, r = scene.px(prop.x), scene.px(prop.y), scene.px(prop.size)
        if prop.kind == "orb":
            _paint(canvas, [_Prim("ellipse", (x - r, y - r, x + r, y + r))], "sphere", scene, base=prop.colour)
        elif prop.kind == "ring":
            ring = [_Prim("ellipse", (x - r, y - r, x + r, y + r)),
                    _Prim("ellipse", (x - r * 0.62, y - r * 0.62, x + r * 0.62, y + r * 0.62), erase=True)]
            _paint(canvas, ring, "panel", scene, base=prop.colour)
        elif prop.kind == "pill":
            _paint(canvas, [_Prim("polygon", _capsule(x, y, r * 1.6, r * 0.42, prop.angle))], "cylinder", scene,
                   base=prop.colour)
        else:  # a small grid of dots, the flat graphic accent of a lot of marketing layouts
            dot, step = r * 0.13, r * 0.55
            dots = [_Prim("ellipse", (x + i * step - dot, y + j * step - dot, x + i * step + dot, y + j * step + dot))
                    for i in (-1.5, -0.5, 0.5, 1.5) for j in (-1, 0, 1)]
            _paint(canvas, dots, prop.colour, scene)


def _paint_neon_grid(canvas: Image.Image, scene: _Scene) -> None:
    """Synthwave floor: lines fanning from a vanishing point plus rungs closing in on the horizon."""
    horizon = scene.height * 0.66
    vx = scene.width * (0.5 + 0.2 * (scene.hero_params[2] - 0.5))
    lines = []
    for k in range(-8, 9):
        lines.append(_Prim("line", (vx, horizon, vx + k * scene.width * 0.18, scene.height * 1.02),
                           radius=max(1.0, scene.short * 0.003)))
    for k in range(1, 8):
        y = horizon + (scene.height - horizon) * (k / 7) ** 2
        lines.append(_Prim("line", (0, y, scene.width, y), radius=max(1.0, scene.short * 0.003)))
    _paint(canvas, lines, scene.accents[0], scene, opacity=0.7)


def _paint_moody_beam(canvas: Image.Image, scene: _Scene) -> None:
    """The hard key light made visible: a crisp-edged beam from above falling on the hero."""
    x0, y0, x1, y1 = _box_px(scene, scene.hero_box)
    cx, spread = (x0 + x1) / 2, (x1 - x0) * 0.9
    top_x = cx + scene.light_dir[0] * scene.short * 0.4
    beam = (top_x - scene.short * 0.04, -2.0, top_x + scene.short * 0.04, -2.0, cx + spread, y1, cx - spread, y1)
    _paint(canvas, [_Prim("polygon", beam)], np.array([1.0, 0.96, 0.88], np.float32), scene, opacity=0.12)


# --------------------------------------------------------------------------- finishing

def _soft_clip(x: np.ndarray, knee: float = 0.12) -> np.ndarray:
    """Clip to 0..1 with rounded shoulders, so highlights roll off instead of flattening."""
    y = np.clip(x, 0.0, 1.0)
    hi, lo = x > 1 - knee, x < knee
    y[hi] = 1 - knee + knee * np.tanh((x[hi] - (1 - knee)) / knee)
    y[lo] = knee - knee * np.tanh((knee - x[lo]) / knee)
    return y


def _tone_lut(scene: _Scene) -> list[int]:
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


def _grain_strength(canvas: Image.Image, scene: _Scene) -> np.ndarray:
    """Grain sigma per pixel: full in shadows and midtones, fading out in bright areas.

    Film grain shows least in highlights, and a clean bright studio backdrop keeps a product
    master compact as PNG (noise is what deflate cannot squeeze).
    """
    lw, lh = (max(1, round(scene.width / 8)), max(1, round(scene.height / 8)))
    luma = np.asarray(canvas.convert("L").resize((lw, lh), Image.Resampling.BOX), dtype=np.float32) / 255
    strength = scene.grain * (0.12 + 0.88 * _smoothstep(0.72, 0.3, luma))
    small = Image.fromarray(strength.astype(np.float32), "F")
    return np.asarray(small.resize((scene.width, scene.height), Image.Resampling.BILINEAR))


def _add_grain(canvas: Image.Image, scene: _Scene, rng: np.random.Generator) -> Image.Image:
    """Monochrome film grain, one full-resolution noise plane added to every channel."""
    noise = rng.standard_normal((scene.height, scene.width), dtype=np.float32)
    noise *= _grain_strength(canvas, scene)
    noise += 128.5
    plane = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "L")
    return ImageChops.add(canvas, Image.merge("RGB", (plane, plane, plane)), scale=1.0, offset=-128)


def render_local(spec: dict[str, Any], seed: int, width: int, height: int) -> Image.Image:
    """Render `spec` with `seed` at exactly `width` x `height` as an RGB image (deterministic)."""
    if width < 1 or height < 1:
        raise ValueError(f"cannot render a {width}x{height} image")
    spec = dict(spec or {})
    rng = _scene_rng(spec, seed)
    scene = _plan_scene(spec, rng, int(width), int(height))
    canvas = _paint_smooth(scene)
    if scene.style == "cyberpunk":
        _paint_neon_grid(canvas, scene)
    if scene.composition == "leading_lines":
        _paint_leading_lines(canvas, scene)
    if scene.composition == "frame":
        _paint_frame(canvas, scene)
    if scene.lighting == "moody":
        _paint_moody_beam(canvas, scene)
    _paint_props(canvas, scene)
    _paint_podium(canvas, scene)
    _paint_hero(canvas, scene)
    vignette = _vignette_map(scene)
    canvas = ImageChops.multiply(canvas, Image.merge("RGB", (vignette, vignette, vignette)))
    canvas = canvas.point(_tone_lut(scene))
    return _add_grain(canvas, scene, rng)


def describe_scene(spec: dict[str, Any], seed: int, width: int, height: int) -> dict[str, Any]:
    """The resolved style, lighting, composition and hero placement (for provenance metadata)."""
    spec = dict(spec or {})
    scene = _plan_scene(spec, _scene_rng(spec, seed), int(width), int(height))
    x0, y0, x1, y1 = _box_px(scene, scene.hero_box)
    return {"style": scene.style, "lighting": scene.lighting, "composition": scene.composition,
            "hero": scene.hero_kind,
            "hero_box": [round(x0), round(y0), round(x1), round(y1)]}
