"""The prompt-engineering guide's tables as data.

The guide (seed 000, "PROMPT ENGINEERING GUIDE") builds a prompt as
[Subject] + [Style] + [Lighting] + [Composition] + [Quality] + [Negatives]. A brief names a style,
a lighting setup and a composition rule by key; this module holds what those keys expand to, so
briefs stay short and every campaign speaks the same prompt vocabulary.
"""

from __future__ import annotations

# Style name -> keywords. The first five rows are the guide's table; the last three are the
# looks marketing asks for most that the table lacks.
STYLE_KEYWORDS: dict[str, list[str]] = {
    "product": ["e-commerce", "white background", "clean", "professional"],
    "portrait": ["bokeh", "shallow depth of field", "professional lighting"],
    "landscape": ["epic", "panoramic", "golden hour"],
    "cyberpunk": ["neon", "dark", "futuristic", "RGB lighting"],
    "vintage": ["film grain", "warm tones", "nostalgic"],
    "minimalist": ["minimalist style", "negative space", "simple shapes", "muted background"],
    "luxury": ["luxury style", "elegant", "premium materials", "refined details"],
    "lifestyle": ["lifestyle photography", "candid", "natural setting", "authentic"],
}

# Lighting setup -> light role -> description. "product", "portrait" and "moody" are the guide's
# LIGHTING_PRESETS verbatim (45 degrees spelled out: some providers mangle non-ASCII);
# "golden_hour" and "studio_high_key" are added. A value of "none" means the light is absent.
LIGHTING_PRESETS: dict[str, dict[str, str]] = {
    "product": {"key": "softbox left", "fill": "reflector right", "back": "strip light", "ambient": "low"},
    "portrait": {"key": "softbox at 45 degrees", "fill": "ambient", "rim": "hair light", "ambient": "medium"},
    "moody": {"key": "single hard light", "fill": "none", "back": "none", "ambient": "dark"},
    "golden_hour": {"key": "low warm sun", "fill": "warm bounce", "rim": "backlit sun", "ambient": "golden"},
    "studio_high_key": {"key": "large softbox front", "fill": "white reflector", "back": "lit white backdrop",
                        "ambient": "bright"},
}

# How each light role reads in a prompt; the order is the order lights are named in.
_LIGHT_ROLE_PHRASES: dict[str, str] = {
    "key": "{} key light",
    "fill": "{} fill",
    "back": "{} back light",
    "rim": "{} rim light",
    "ambient": "{} ambient light",
}

# Composition rule -> prompt phrase (the guide's table plus "centered", used in its example).
COMPOSITION_RULES: dict[str, str] = {
    "rule_of_thirds": "rule of thirds composition, subject at a grid intersection",
    "golden_ratio": "golden ratio composition, natural spiral flow",
    "leading_lines": "leading lines drawing the eye to the subject",
    "symmetry": "symmetrical composition, mirror balance",
    "frame": "natural frame around the subject",
    "centered": "centered composition",
}

# Used when a subject gives no quality words of its own. The guide writes "8K, photorealistic" and
# "4K, professional"; resolution words are left out because the pixel size is set by the request.
DEFAULT_QUALITY_WORDS: list[str] = ["professional", "high detail", "photorealistic"]

# Used when a subject gives no negatives of its own. "watermark" and "text" because diffusion
# models like to invent both, and a marketing image carries only the brand's own logo.
DEFAULT_NEGATIVES: list[str] = ["blurry", "low quality", "distorted", "watermark", "text"]


def lighting_phrase(preset: str) -> str:
    """The prompt phrase for a lighting preset, e.g. "softbox left key light, reflector right fill,
    strip light back light, low ambient light". Raises KeyError for an unknown preset."""
    lights = LIGHTING_PRESETS[preset]
    parts = [template.format(lights[role]) for role, template in _LIGHT_ROLE_PHRASES.items()
             if lights.get(role, "none") != "none"]
    return ", ".join(parts)


def style_phrase(style: str) -> str:
    """The style's keywords as one comma-separated phrase. Raises KeyError for an unknown style."""
    return ", ".join(STYLE_KEYWORDS[style])


def composition_phrase(rule: str) -> str:
    """The phrase for a composition rule. Raises KeyError for an unknown rule."""
    return COMPOSITION_RULES[rule]
