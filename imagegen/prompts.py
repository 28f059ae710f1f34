"""Prompt building and the guards that run before any provider quota is spent.

A prompt follows the guide's structure [Subject] + [Style] + [Lighting] + [Composition] + [Mood] +
[Brand palette] + [Quality], with the negatives sent natively, folded into the prompt or dropped,
as the provider allows. `build_prompt_specs` turns a validated brief into one `PromptSpec` per
subject and variation; a spec's `cache_key` identifies the pixels it asks for, so a rerun of the
same brief spends nothing.

The final text is checked again for personal data (imagegen.guards) before any spec goes out: the
brief checks each part, but a provider sees the whole.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from imagegen.brief import Brand, Brief, Subject
from imagegen.errors import BriefError
from imagegen.guards import MAX_SEED, find_personal_data, slugify
from imagegen.models import ProviderCapabilities
from imagegen.presets import (
    DEFAULT_NEGATIVES,
    DEFAULT_QUALITY_WORDS,
    composition_phrase,
    lighting_phrase,
    style_phrase,
)

NegativesHandling = Literal["native", "folded", "dropped"]

# Diffusion models honour a handful of colours at most; more names only cost prompt characters.
MAX_PALETTE_WORDS = 5

# --------------------------------------------------------------------------------------------
# Colour words
# --------------------------------------------------------------------------------------------

# Basic colour names a diffusion model understands. Hex codes mean nothing to it, so a brand
# palette is described by the nearest of these (by CIE76 distance in Lab).
COLOUR_NAMES: dict[str, str] = {
    "black": "#000000",
    "charcoal": "#333333",
    "grey": "#808080",
    "silver": "#c0c0c0",
    "white": "#ffffff",
    "cream": "#fff5d6",
    "beige": "#e8d5b0",
    "tan": "#d2b48c",
    "brown": "#8b5a2b",
    "red": "#d62828",
    "coral red": "#ff6b6b",
    "crimson": "#a4161a",
    "burgundy": "#800020",
    "pink": "#ffb6c1",
    "hot pink": "#ff4fa3",
    "magenta": "#d81b91",
    "purple": "#7b2cbf",
    "lavender": "#c8b6ff",
    "midnight blue": "#2c3e50",
    "navy blue": "#1b2a6b",
    "blue": "#1f5fd6",
    "sky blue": "#87ceeb",
    "turquoise": "#40e0d0",
    "teal": "#008080",
    "mint green": "#98e0b0",
    "green": "#2e9e44",
    "forest green": "#1f5f3a",
    "olive": "#808000",
    "lime green": "#a4d65e",
    "yellow": "#ffe14d",
    "gold": "#d4a017",
    "orange": "#ff8c1a",
    "peach": "#ffcba4",
}


def _hex_to_lab(hex_colour: str) -> tuple[float, float, float]:
    """sRGB hex to CIE Lab (D65), enough precision to pick a colour name."""
    rgb = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    r, g, b = linear
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


_COLOUR_LABS = {name: _hex_to_lab(hex_colour) for name, hex_colour in COLOUR_NAMES.items()}


def colour_name(hex_colour: str) -> str:
    """The nearest basic colour name for a '#rrggbb' colour, e.g. '#4ecdc4' -> 'turquoise'."""
    lab = _hex_to_lab(hex_colour)
    return min(_COLOUR_LABS, key=lambda name: sum((a - b) ** 2 for a, b in zip(lab, _COLOUR_LABS[name])))


def palette_phrase(palette: list[str]) -> str:
    """'color palette of coral red, turquoise and white' (no hex codes); '' for an empty palette."""
    names = list(dict.fromkeys(colour_name(c) for c in palette))[:MAX_PALETTE_WORDS]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    # American spelling: the text encoders behind most image models learnt from US-English captions.
    return f"color palette of {listed}"


# --------------------------------------------------------------------------------------------
# Prompt text
# --------------------------------------------------------------------------------------------


class BuiltPrompt(NamedTuple):
    prompt: str
    negative_prompt: str
    negatives_handling: NegativesHandling


def _clean_term(term: str) -> str:
    """One prompt term with single spaces, single ', ' separators and no dangling punctuation."""
    term = re.sub(r"\s+", " ", term)
    term = re.sub(r"\s*,[\s,]*", ", ", term)
    return term.strip(" ,;:.")


def _split_phrase(phrase: str) -> list[str]:
    return phrase.split(",")


def _join_terms(terms: list[str]) -> str:
    """Comma-join non-empty terms, dropping repeats (case-insensitive) so no word is paid twice."""
    seen: set[str] = set()
    kept: list[str] = []
    for term in map(_clean_term, terms):
        if term and term.lower() not in seen:
            seen.add(term.lower())
            kept.append(term)
    return ", ".join(kept)


def subject_negatives(subject: Subject) -> list[str]:
    return list(DEFAULT_NEGATIVES if subject.negatives is None else subject.negatives)


def subject_quality_words(subject: Subject) -> list[str]:
    return list(DEFAULT_QUALITY_WORDS if subject.quality is None else subject.quality)


def featuring_clause(subject: Subject) -> str:
    """The seed's multi-subject clause, "featuring: Max: a golden retriever, Lea: a girl in a red coat";
    empty without featured subjects. One term: its commas belong to it, and it stays next to the subject."""
    return ("featuring: " + ", ".join(f"{f.name}: {f.description}" for f in subject.featuring)
            if subject.featuring else "")


def build_prompt(subject: Subject, brand: Brand, caps: ProviderCapabilities) -> BuiltPrompt:
    """The prompt for one subject, in the guide's order, and its negatives as the provider takes them.

    native: negatives go in `negative_prompt`; fold: the prompt ends with "avoid: ..." and
    `negative_prompt` is empty (the provider has no such field); drop: negatives are not sent.
    """
    # Preset phrases go in word by word so a word that two parts share ("professional" in the
    # product style and the quality words) is sent once; the brief's own text stays whole.
    terms = [
        subject.subject,
        featuring_clause(subject),
        *_split_phrase(style_phrase(subject.style)),
        *_split_phrase(lighting_phrase(subject.lighting)),
        *_split_phrase(composition_phrase(subject.composition)),
        subject.mood,
        palette_phrase(brand.palette),
        *subject_quality_words(subject),
    ]
    prompt = _join_terms(terms)
    negatives = _join_terms(subject_negatives(subject))
    if caps.negative_prompt == "native":
        return BuiltPrompt(prompt, negatives, "native")
    if caps.negative_prompt == "fold":
        return BuiltPrompt(f"{prompt}, avoid: {negatives}" if negatives else prompt, "", "folded")
    return BuiltPrompt(prompt, "", "dropped")


# --------------------------------------------------------------------------------------------
# Prompt specs
# --------------------------------------------------------------------------------------------

# Fields whose change changes the pixels; the cache key covers exactly these. Bump the version when
# the meaning of a field changes (e.g. the local renderer reads the spec differently).
_CACHE_KEY_FIELDS = ("prompt", "negative_prompt", "negatives_handling", "palette", "style", "lighting",
                     "composition", "mood", "subject", "seed", "provider", "model", "width", "height")
_CACHE_KEY_VERSION = 1


class PromptSpec(BaseModel):
    """Everything one generation needs, small enough to pass between tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: str
    asset_id: str
    subject_index: int
    variation: int
    subject: str
    style: str
    lighting: str
    composition: str
    mood: str
    quality: list[str]
    palette: list[str]
    brand_name: str
    prompt: str
    negative_prompt: str
    negatives_handling: NegativesHandling
    seed: int
    provider: str
    model: str | None
    width: int
    height: int
    # An outpainted master: made from master `outpaint_from` extended to `outpaint_ratio`, not generated.
    outpaint_from: str | None = None
    outpaint_ratio: str | None = None
    # Inference steps when the plan asks for fewer than the model's default (thumbnail-only targets)
    steps: int | None = None

    def cache_key(self) -> str:
        """sha256 of what decides the pixels; the campaign and asset naming are not part of it."""
        payload = {name: getattr(self, name) for name in _CACHE_KEY_FIELDS}
        if self.steps is not None:  # only then: the keys of masters made at default steps stay as they were
            payload["steps"] = self.steps
        payload["key_version"] = _CACHE_KEY_VERSION
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def render_spec(self) -> dict:
        """The structured parts a renderer that draws from structure (the `local` provider) reads."""
        return {
            "subject": self.subject,
            "palette": list(self.palette),
            "style": self.style,
            "lighting": self.lighting,
            "composition": self.composition,
            "mood": self.mood,
        }


class PromptRejected(BriefError):
    """A brief is valid field by field, but a prompt built from it must not be sent."""


def derived_seed(campaign: str, subject_index: int) -> int:
    """A stable seed in 1..2**31-1 for a subject that sets none, so reruns repeat the same image."""
    digest = hashlib.sha256(f"{campaign}\x00{subject_index}".encode()).hexdigest()
    return int(digest[:16], 16) % MAX_SEED + 1


def variation_seed(base_seed: int, variation: int) -> int:
    """base + variation, wrapped to stay inside 1..2**31-1."""
    return (base_seed - 1 + variation) % MAX_SEED + 1


MAX_ASSET_SLUG = 40


def asset_slug(subject_text: str, subject_index: int) -> str:
    """The subject as a slug of at most 40 characters, cut at a word boundary where there is one."""
    slug = slugify(subject_text)
    if len(slug) > MAX_ASSET_SLUG:
        cut = slug[:MAX_ASSET_SLUG]
        if slug[MAX_ASSET_SLUG] != "-" and "-" in cut:
            cut = cut.rsplit("-", 1)[0]
        slug = cut
    return slug.strip("-") or f"subject-{subject_index + 1}"


def asset_id_for(subject_text: str, subject_index: int, variation: int, cache_key: str) -> str:
    """'<subject slug>-v<NN>-<first 8 hex of the cache key>': readable, unique, stable across reruns."""
    return f"{asset_slug(subject_text, subject_index)}-v{variation + 1:02d}-{cache_key[:8]}"


def prompt_problems(index: int, built: BuiltPrompt, caps: ProviderCapabilities) -> list[tuple[str, str]]:
    """Why the prompt built for subjects[index] must not be sent; empty when it may."""
    where = f"subjects[{index}]"
    problems: list[tuple[str, str]] = []
    length = len(built.prompt)
    if length > caps.max_prompt_chars:
        problems.append((where, f"prompt is {length} characters; the provider accepts at most "
                                f"{caps.max_prompt_chars} (shorten subject/featuring/mood/quality)"))
    kinds = find_personal_data(f"{built.prompt}\n{built.negative_prompt}")
    if kinds:
        problems.append((where, f"prompt contains personal data ({', '.join(kinds)})"))
    return problems


def build_prompt_specs(brief: Brief, caps: ProviderCapabilities, provider: str, model: str | None,
                       width: int, height: int) -> list[PromptSpec]:
    """One spec per subject and variation, or PromptRejected listing every prompt that must not go out.

    All subjects are checked before anything is returned, so one run reports all problems at once.
    """
    problems: list[tuple[str, str]] = []
    specs: list[PromptSpec] = []
    for index, subject in enumerate(brief.subjects):
        built = build_prompt(subject, brief.brand, caps)
        subject_problems = prompt_problems(index, built, caps)
        problems.extend(subject_problems)
        if subject_problems:
            continue
        base_seed = subject.seed if subject.seed is not None else derived_seed(brief.campaign, index)
        for variation in range(subject.variations):
            specs.append(_spec(brief, index, variation, built, variation_seed(base_seed, variation),
                               provider, model, width, height))
    if problems:
        raise PromptRejected(problems)
    return specs


def _spec(brief: Brief, index: int, variation: int, built: BuiltPrompt, seed: int, provider: str,
          model: str | None, width: int, height: int) -> PromptSpec:
    subject = brief.subjects[index]
    spec = PromptSpec(
        campaign=brief.campaign,
        asset_id="",  # filled in below: it embeds the cache key, which does not depend on it
        subject_index=index,
        variation=variation,
        subject=subject.subject,
        style=subject.style,
        lighting=subject.lighting,
        composition=subject.composition,
        mood=subject.mood,
        quality=subject_quality_words(subject),
        palette=list(brief.brand.palette),
        brand_name=brief.brand.name,
        prompt=built.prompt,
        negative_prompt=built.negative_prompt,
        negatives_handling=built.negatives_handling,
        seed=seed,
        provider=provider,
        model=model,
        width=width,
        height=height,
    )
    return spec.model_copy(update={"asset_id": asset_id_for(subject.subject, index, variation, spec.cache_key())})
