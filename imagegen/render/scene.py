"""Scene planning: the spec and the seeded rng decide everything the painters draw (style, brand
colours, light direction, hero and podium placement, soft shapes, props) before any pixel is made.

Layout draws come before any draw whose count depends on the output size, so one spec+seed gives
the same layout at every size, adapted to the aspect.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagegen.render.colour import Colour, chroma, contrasting, hex_to_rgb, luma, saturate, toward_luma, with_luma
from imagegen.render.vocabulary import (
    COMPOSITION_WORDS,
    DEFAULT_LIGHTING,
    HERO_KINDS,
    LIGHTING_WORDS,
    LIGHTS,
    LOOKS,
    STYLE_WORDS,
    SUBJECT_WORDS,
    Light,
    Look,
    match_words,
    mood_grade,
)

# The seed document's brand palette, with its pure white background softened so nothing clips.
DEFAULT_PALETTE = ("#FF6B6B", "#4ECDC4", "#FFE66D", "#2C3E50", "#F4F1EA")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Soft:
    """One soft background shape, in short-side units."""

    kind: str               # blob, band, ring, disc
    x: float
    y: float
    size: float             # sigma / radius / band half-width
    angle: float
    colour: Colour
    alpha: float


@dataclass
class Scene:
    """Everything one render draws, planned before any pixel: sizes in pixels, positions in short-side units."""

    width: int
    height: int
    style: str
    lighting: str
    composition: str
    look: Look
    light: Light
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
    soft_shapes: list[Soft] = field(default_factory=list)
    line_targets: list[tuple[float, float, float]] = field(default_factory=list)  # angle, width, kind
    frame_arch: bool = False
    props: list[Soft] = field(default_factory=list)
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


def scene_rng(spec: dict[str, Any], seed: int) -> np.random.Generator:
    """Seed from the seed and a stable digest of the spec (never Python's salted hash())."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    seed64 = int(seed) % (1 << 64)
    words = [seed64 & 0xFFFFFFFF, seed64 >> 32] + [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(words)


def _parse_palette(value: Any) -> list[Colour]:
    if not value:
        return [hex_to_rgb(c) for c in DEFAULT_PALETTE]
    if isinstance(value, str):
        value = [value]
    return [hex_to_rgb(c) for c in value]


def plan_scene(spec: dict[str, Any], rng: np.random.Generator, width: int, height: int) -> Scene:
    """The whole plan of one render, drawn from `rng` in a fixed order (the rng stream is the layout)."""
    style = match_words(spec.get("style", ""), STYLE_WORDS) or "product"
    lighting = match_words(spec.get("lighting", ""), LIGHTING_WORDS) or DEFAULT_LIGHTING[style]
    composition = match_words(spec.get("composition", ""), COMPOSITION_WORDS) or "rule_of_thirds"
    subject = str(spec.get("subject", "") or "")
    look, light = LOOKS[style], LIGHTS[lighting]
    mood_sat, mood_con, mood_exp, mood_tint = mood_grade(str(spec.get("mood", "") or ""))

    saturation = look.saturation * mood_sat
    bg_luma = float(np.clip(look.bg_luma * light.exposure * mood_exp, 0.07, 0.9))
    palette = [saturate(c, saturation) for c in _parse_palette(spec.get("palette"))]
    bg, hero_rgb, accents = _assign_colours(palette, bg_luma, style == "cyberpunk" or lighting == "moody", style, rng)
    bg_luma = (luma(bg[0]) + luma(bg[1])) / 2  # what the ground really is, after brand matching
    podium_target = bg_luma - 0.14 if bg_luma > 0.4 else bg_luma + 0.16
    podium_rgb = toward_luma(min(accents, key=lambda c: abs(luma(c) - podium_target)), podium_target, 0.7)

    hero_kind = match_words(subject, SUBJECT_WORDS) or HERO_KINDS[int(rng.integers(len(HERO_KINDS)))]
    light_dir = _plan_light_dir(lighting, rng)
    tint_r, tint_g, tint_b = (a * b * c for a, b, c in zip(look.tint, light.tint, mood_tint))
    scene = Scene(
        width=width, height=height, style=style, lighting=lighting, composition=composition,
        look=look, light=light, contrast=light.contrast * mood_con,
        tint=(tint_r, tint_g, tint_b),
        grain=look.grain + (0.6 if lighting == "moody" else 0.0), bg_luma=bg_luma,
        bg=bg, hero_rgb=hero_rgb, accents=accents,
        podium_rgb=podium_rgb,
        line_rgb=contrasting(accents + [hero_rgb], bg_luma),
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


def _assign_colours(palette: list[Colour], bg_luma: float, dark: bool, style: str,
                    rng: np.random.Generator) -> tuple[tuple[Colour, Colour], Colour, list[Colour]]:
    """Background pair, hero colour and accents, all from the brand palette.

    The ground takes the palette colours nearest the style's brightness, moved only part of the
    way towards it: a brand gate compares dominant colours with the palette, and a light ground
    made by bleaching a saturated colour reads as off-brand.
    """
    n = len(palette)
    near = sorted(range(n), key=lambda i: abs(luma(palette[i]) - bg_luma))[:3]
    first = near[int(rng.integers(min(2, len(near))))]
    others = [i for i in near if i != first] or [first]
    second = others[int(rng.integers(len(others)))]
    push = 0.85 if dark else 0.6  # a dark scene must be dark even with a light palette
    bg = (toward_luma(palette[first], bg_luma + 0.05, push), toward_luma(palette[second], bg_luma - 0.06, push))
    ground = (luma(bg[0]) + luma(bg[1])) / 2
    # The hero is the colour that stands out most against the ground: luma distance + chroma.
    candidates = [i for i in range(n) if i != first] or [first]
    ranked = sorted(candidates, key=lambda i: -(abs(luma(palette[i]) - ground) + 0.6 * chroma(palette[i])))
    hero_index = ranked[int(rng.integers(min(2, len(ranked))))]
    hero = palette[hero_index]
    if abs(luma(hero) - ground) < 0.3:
        hero = with_luma(hero, ground - 0.38 if ground > 0.45 else ground + 0.38)
    order = [int(i) for i in rng.permutation(n)]
    rest = [palette[i] for i in order if i != hero_index] or [with_luma(hero, 0.5)]
    if style == "cyberpunk":  # neon: saturated, bright accents on a dark ground
        rest = [with_luma(saturate(c, 1.5), max(0.5, luma(c))) for c in rest]
        hero = with_luma(saturate(hero, 1.4), max(0.5, luma(hero)))
    return bg, hero, rest


def _plan_light_dir(lighting: str, rng: np.random.Generator) -> tuple[float, float]:
    spread = {"product": (0.5, 1.0), "portrait": (0.65, 0.95), "moody": (0.2, 0.7),
              "golden": (1.0, 1.3), "natural": (0.4, 0.9)}[lighting]
    side = 1.0 if rng.random() < 0.5 else -1.0
    angle = -math.pi / 2 + side * float(rng.uniform(*spread))
    return math.cos(angle), math.sin(angle)


_HERO_WIDTH = {"sphere": 1.0, "cube": 0.92, "bottle": 0.42, "watch": 0.9, "slab": 0.54, "face": 0.74}


def _composition_point(scene: Scene, rng: np.random.Generator) -> tuple[float, float]:
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


def _place_hero(scene: Scene, rng: np.random.Generator) -> None:
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


def _plan_soft_shapes(scene: Scene, rng: np.random.Generator) -> list[Soft]:
    lo, hi = scene.look.soft_shapes
    count = int(rng.integers(lo, hi + 1))
    kinds = ("blob", "band", "ring") if scene.style != "cyberpunk" else ("band", "band", "ring")
    shapes = []
    for i in range(count):
        draws = rng.random(6)
        kind = kinds[int(draws[0] * len(kinds))]
        colour = scene.accents[i % len(scene.accents)]
        if scene.bg_luma > 0.4:  # keep light grounds airy: shapes are tints, not blots
            colour = toward_luma(colour, min(0.95, scene.bg_luma + 0.04 - 0.2 * draws[5]), 0.7)
        elif scene.style != "cyberpunk":  # dark grounds stay dark: only the key light may glow
            colour = toward_luma(colour, scene.bg_luma * (0.6 + 0.7 * draws[5]), 0.8)
        size = {"blob": 0.25 + 0.3 * draws[3], "band": 0.05 + 0.12 * draws[3], "ring": 0.3 + 0.4 * draws[3]}[kind]
        alpha = (0.35 + 0.3 * draws[4]) * (1.4 if scene.style == "cyberpunk" else 1.0)
        shapes.append(Soft(kind, float(draws[1] * scene.aspect_w), float(draws[2] * scene.aspect_h),
                           size, float(rng.uniform(0, math.pi)), colour, min(0.8, alpha)))
    if scene.style == "portrait":  # bokeh: out-of-focus discs of light
        for _ in range(18):
            d = rng.random(5)
            colour = with_luma(scene.accents[int(d[3] * len(scene.accents))], min(0.92, scene.bg_luma + 0.25))
            shapes.append(Soft("disc", float(d[0] * scene.aspect_w), float(d[1] * scene.aspect_h),
                               0.02 + 0.07 * float(d[2]), 0.0, colour, 0.12 + 0.25 * float(d[4])))
    if scene.composition == "symmetry":  # mirror every shape about the vertical axis
        shapes += [Soft(s.kind, scene.aspect_w - s.x, s.y, s.size, math.pi - s.angle, s.colour, s.alpha)
                   for s in shapes]
    return shapes


_PROP_COUNTS = {"product": (2, 4), "minimalist": (1, 2), "portrait": (1, 3), "landscape": (0, 2),
                "cyberpunk": (2, 4), "vintage": (1, 3)}
_PROP_KINDS = ("orb", "ring", "pill", "dots")
_PROP_CANDIDATES = 12


def group_box(scene: Scene) -> Box:
    """Hero plus podium, in short-side units."""
    if scene.podium_box is None:
        return scene.hero_box
    return (min(scene.hero_box[0], scene.podium_box[0]), scene.hero_box[1],
            max(scene.hero_box[2], scene.podium_box[2]), scene.podium_box[3])


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _plan_props(scene: Scene, rng: np.random.Generator) -> list[Soft]:
    """Small crisp set dressing (orbs, rings, pills, dot grids) in the free space around the hero.

    A fixed number of candidates is always drawn, so the rng stream (and with it everything
    planned later) never depends on which candidates happen to fit.
    """
    lo, hi = _PROP_COUNTS[scene.style]
    want = int(rng.integers(lo, hi + 1))
    draws = rng.random((_PROP_CANDIDATES, 6))
    gx0, gy0, gx1, gy1 = group_box(scene)
    keep_out = 0.16 if scene.composition == "frame" else 0.05
    taken: list[Box] = [(gx0 - keep_out, gy0 - keep_out * 1.4, gx1 + keep_out, gy1 + keep_out)]
    props: list[Soft] = []
    # Props are accents: a colour that vanishes into the ground would only add noise.
    colours = [c for c in scene.accents if abs(luma(c) - scene.bg_luma) > 0.18] or scene.accents
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
        colour = toward_luma(colours[int(d[4] * len(colours))], scene.bg_luma, 0.3)
        props.append(Soft(kind, x, y, size, float(d[5]) * math.pi, colour, 1.0))
        taken.append(box)
        if scene.composition == "symmetry":
            props.append(Soft(kind, scene.aspect_w - x, y, size, math.pi - float(d[5]) * math.pi, colour, 1.0))
            taken.append(mirrored)
    return props
