"""What the words of a prompt spec mean to the renderer: the style, lighting, composition and subject
word tables, and what each style, lighting setup and mood does to the picture."""

from __future__ import annotations

import re
from dataclasses import dataclass

STYLES = ("product", "portrait", "landscape", "cyberpunk", "vintage", "minimalist")
LIGHTINGS = ("product", "portrait", "moody", "golden", "natural")
COMPOSITIONS = ("rule_of_thirds", "golden_ratio", "leading_lines", "symmetry", "frame", "centered")
HERO_KINDS = ("sphere", "cube", "bottle", "watch", "slab")


# Checked in this order: the first style whose words appear in the spec's style text wins.
STYLE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cyberpunk", ("cyberpunk", "neon", "futuristic", "synthwave", "sci-fi", "scifi")),
    ("vintage", ("vintage", "retro", "film", "nostalg", "analog", "sepia")),
    ("minimalist", ("minimal", "simple", "negative space")),
    ("portrait", ("portrait", "bokeh", "headshot", "shallow")),
    ("landscape", ("landscape", "panoram", "scenic", "outdoor", "nature", "epic")),
    ("product", ("product", "commerce", "studio", "packshot", "commercial", "clean")),
)
LIGHTING_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("moody", ("moody", "dramatic", "low key", "low-key", "hard", "noir", "dark", "chiaroscuro")),
    ("golden", ("golden", "sunset", "sunrise", "warm light")),
    ("portrait", ("portrait", "rembrandt", "rim", "45")),
    ("natural", ("natural", "daylight", "window", "overcast", "ambient")),
    ("product", ("product", "studio", "softbox", "soft", "high key", "high-key", "even")),
)
COMPOSITION_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rule_of_thirds", ("third",)),
    ("golden_ratio", ("golden", "phi", "fibonacci", "spiral")),
    ("leading_lines", ("leading", "lines", "converg", "perspective")),
    ("symmetry", ("symmetr", "mirror")),
    ("frame", ("frame", "framing", "door", "window", "arch")),
    ("centered", ("center", "centre", "central")),
)
SUBJECT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("watch", ("watch", "clock", "coin", "compass", "timepiece")),
    ("bottle", ("bottle", "perfume", "serum", "drink", "wine", "beer", "soda", "lotion",
                "shampoo", "cosmetic", "fragrance", "jar")),
    ("slab", ("phone", "tablet", "laptop", "card", "book", "screen", "device", "gadget")),
    ("cube", ("box", "package", "packaging", "gift", "cube", "speaker", "carton")),
    ("sphere", ("ball", "sphere", "orb", "fruit", "apple", "orange", "planet", "bubble", "pearl")),
    # last, so a product named with a face word ("face serum", "watch face") stays that product; never drawn
    # at random (not in HERO_KINDS): only a subject that names a person gets a face
    ("face", ("person", "people", "woman", "women", "headshot", "selfie", "portrait of")),
)
DEFAULT_LIGHTING = {"product": "product", "portrait": "portrait", "landscape": "golden",
                    "cyberpunk": "moody", "vintage": "natural", "minimalist": "product"}


@dataclass(frozen=True)
class Look:
    """What a style does to the picture."""

    bg_luma: float          # target brightness of the background
    saturation: float
    grain: float            # film grain sigma in 8-bit levels
    tint: tuple[float, float, float]
    fade: float             # lifted black point (film look)
    podium: bool            # stand the hero on a plinth, as in a studio packshot
    soft_shapes: tuple[int, int]  # how many soft background shapes (min, max)


@dataclass(frozen=True)
class Light:
    """What a lighting setup does (after the seed document's LIGHTING_PRESETS)."""

    ambient: float          # share of the hero colour left in its shadow side
    key: float              # strength of the key light pool on the background
    key_edge: float         # falloff of the pool, short-side units: small = hard light
    vignette: float
    contrast: float
    exposure: float         # background brightness multiplier
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


LOOKS = {
    "product": Look(0.84, 1.00, 1.6, (1.00, 1.00, 1.00), 0.00, True, (2, 4)),
    "portrait": Look(0.56, 0.95, 2.2, (1.02, 1.00, 0.98), 0.00, False, (2, 3)),
    "landscape": Look(0.64, 1.05, 2.2, (1.02, 1.00, 0.97), 0.00, False, (1, 2)),
    "cyberpunk": Look(0.10, 1.30, 2.6, (0.98, 0.98, 1.04), 0.00, False, (2, 3)),
    "vintage": Look(0.66, 0.75, 4.5, (1.08, 1.00, 0.85), 0.06, True, (2, 3)),
    "minimalist": Look(0.87, 0.90, 1.3, (1.00, 1.00, 1.00), 0.00, True, (1, 2)),
}
LIGHTS = {
    "product": Light(0.62, 0.16, 0.55, 0.10, 0.96, 1.00),
    "portrait": Light(0.42, 0.22, 0.40, 0.24, 1.06, 0.90),
    "moody": Light(0.20, 0.50, 0.018, 0.45, 1.18, 0.40),
    "golden": Light(0.50, 0.30, 0.50, 0.20, 1.04, 1.00, (1.06, 1.00, 0.90)),
    "natural": Light(0.55, 0.14, 0.60, 0.16, 1.00, 1.00),
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


def match_words(text: str, table: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
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


def mood_grade(mood: str) -> tuple[float, float, float, tuple[float, float, float]]:
    """(saturation, contrast, exposure, tint) multipliers of every mood word found in `mood`."""
    sat, con, exp, tint = 1.0, 1.0, 1.0, (1.0, 1.0, 1.0)
    text = mood.lower()
    for words, (s, c, e, t) in _MOODS:
        if any(w in text for w in words):
            sat, con, exp = sat * s, con * c, exp * e
            tint = (tint[0] * t[0], tint[1] * t[1], tint[2] * t[2])
    return sat, con, exp, tint
