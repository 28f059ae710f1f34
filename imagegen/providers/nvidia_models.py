"""NVIDIA image model rules: what each model accepts, request validation, and request payloads.

Contract: shared/docs/provider-contracts.md section 1. Requests are checked against these rules
before any HTTP call, so a bad size or step count costs neither quota nor a rate-limit token; a
broken rule raises InvalidField naming the field and the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from imagegen.errors import ProviderRequestInvalid
from imagegen.models import ProviderCapabilities

PROVIDER = "nvidia"

FLUX_DEV = "black-forest-labs/flux.1-dev"
FLUX_SCHNELL = "black-forest-labs/flux.1-schnell"
FLUX_KONTEXT = "black-forest-labs/flux.1-kontext-dev"
SD35_LARGE = "stabilityai/stable-diffusion-3_5-large"

MAX_PROMPT_CHARS = 10_000  # documented hard limit
ADVERTISED_PROMPT_CHARS = 500  # seed 000 reports 400 answers above ~500 characters: keep prompts short
KONTEXT_MAX_SIDE = 1568

# Kontext's allowed sides; paired smallest-with-largest they are its ~1 MP preferred resolutions.
KONTEXT_SIDES: tuple[int, ...] = (672, 688, 720, 752, 800, 832, 880, 944, 1024, 1104, 1184, 1248, 1328,
                                  1392, 1456, 1504, 1568)
KONTEXT_SIZES: tuple[tuple[int, int], ...] = tuple(zip(KONTEXT_SIDES, reversed(KONTEXT_SIDES)))


# --------------------------------------------------------------------------- model rules

@dataclass(frozen=True)
class ModelRules:
    """What one NVIDIA model accepts (contract section 1). Ranges are inclusive."""

    model: str
    task: Literal["generate", "edit"]
    fields: frozenset[str]
    steps: tuple[int, int]
    default_steps: int
    cfg_scale: tuple[float, float]
    default_cfg_scale: float
    # exact sizes for generation models; None when the model takes no width/height
    sizes: tuple[tuple[int, int], ...] | None
    # per-side allowed values (Kontext), checked instead of `sizes`
    sides: frozenset[int] | None = None
    modes: tuple[str, ...] = ()
    # "unconfirmed": nobody knows whether the model takes negative_prompt; sent only when asked to
    negative_prompt: Literal["never", "unconfirmed"] = "never"
    confirmed: bool = True
    # fewer steps for masters that only feed thumbnails (seed 000 "COST OPTIMIZATION": 20 instead of 50)
    fast_steps: int | None = None

    @property
    def short_name(self) -> str:
        return self.model.split("/", 1)[-1]


_FLUX_FIELDS = frozenset({"prompt", "mode", "image", "width", "height", "cfg_scale", "samples", "seed", "steps"})

MODEL_RULES: dict[str, ModelRules] = {
    FLUX_DEV: ModelRules(
        model=FLUX_DEV, task="generate", fields=_FLUX_FIELDS, steps=(5, 100), default_steps=50,
        cfg_scale=(0.0, 9.0), default_cfg_scale=5.0, sizes=((1024, 1024),), modes=("base", "canny", "depth"),
        fast_steps=20),
    FLUX_SCHNELL: ModelRules(
        model=FLUX_SCHNELL, task="generate", fields=_FLUX_FIELDS, steps=(1, 4), default_steps=4,
        cfg_scale=(0.0, 0.0), default_cfg_scale=0.0, sizes=((1024, 1024),), modes=("base", "canny", "depth")),
    FLUX_KONTEXT: ModelRules(
        model=FLUX_KONTEXT, task="edit",
        fields=frozenset({"prompt", "image", "width", "height", "cfg_scale", "aspect_ratio", "samples", "seed",
                          "steps"}),
        steps=(20, 50), default_steps=30, cfg_scale=(0.0, 9.0), default_cfg_scale=3.5, sizes=KONTEXT_SIZES,
        sides=frozenset(KONTEXT_SIDES)),
    # UNCONFIRMED: community code sends prompt, mode "base", cfg_scale ~4.5, steps 30-40, seed. We send
    # exactly that; ranges are deliberately loose; no width/height/aspect_ratio (unknown fields risk 422).
    SD35_LARGE: ModelRules(
        model=SD35_LARGE, task="generate",
        fields=frozenset({"prompt", "mode", "cfg_scale", "seed", "steps", "negative_prompt"}),
        steps=(1, 100), default_steps=35, cfg_scale=(0.0, 20.0), default_cfg_scale=4.5, sizes=None,
        modes=("base",), negative_prompt="unconfirmed", confirmed=False),
}


def rules_for(model: str) -> ModelRules:
    try:
        return MODEL_RULES[model]
    except KeyError:
        raise invalid_field("model", f"must be one of {', '.join(sorted(MODEL_RULES))}", model) from None


class InvalidField(ProviderRequestInvalid):
    """A request that breaks one of a model's rules; `field` names the offending field."""

    field: str | None = None  # a class default keeps the exception picklable with its one-argument init


def invalid_field(field_name: str, rule: str, value: Any, model: str | None = None) -> InvalidField:
    where = f" for {model}" if model else ""
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
    exc = InvalidField(f"{PROVIDER}: {field_name}: {rule}{where} (got {shown!r})", provider=PROVIDER)
    exc.field = field_name  # lets callers point at the offending field
    return exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_request(model: str, params: Mapping[str, Any], *, allow_negative_prompt: bool = False) -> None:
    """Raise ProviderRequestInvalid naming the field and the rule when `params` breaks `model`'s rules.

    `allow_negative_prompt` opts in to sending negative_prompt to a model whose support for it is
    unconfirmed (SD 3.5); FLUX models never take one.
    """
    rules = rules_for(model)
    name = rules.short_name
    for key in params:
        if key == "negative_prompt" and not (rules.negative_prompt == "unconfirmed" and allow_negative_prompt):
            raise invalid_field(key, "not accepted (fold negatives into the prompt)", params[key], name)
        if key not in rules.fields:
            raise invalid_field(key, "not a field this model accepts", params[key], name)

    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_field("prompt", "required, a non-empty string", prompt, name)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise invalid_field("prompt", f"must be <= {MAX_PROMPT_CHARS} characters", f"{len(prompt)} characters", name)

    mode = params.get("mode")
    if mode is not None and mode not in rules.modes:
        raise invalid_field("mode", f"must be one of {', '.join(rules.modes)}", mode, name)
    image = params.get("image")
    if rules.task == "edit" and image is None:
        raise invalid_field("image", "required (the image to edit)", image, name)
    if rules.task == "generate" and image is not None and mode not in ("canny", "depth"):
        raise invalid_field("image", "only accepted with mode canny or depth", "<image>", name)
    if rules.task == "generate" and mode in ("canny", "depth") and image is None:
        raise invalid_field("image", f"required with mode {mode}", image, name)
    if image is not None and (not isinstance(image, str) or not image.startswith("data:image/")):
        raise invalid_field("image", "must be a data:image/... URL (base64 or asset_id)", "<image>", name)

    _validate_size(rules, params)
    _validate_range(rules, params, "cfg_scale", rules.cfg_scale, number=float)
    _validate_range(rules, params, "steps", rules.steps, number=int)
    if "seed" in params:
        seed = params["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise invalid_field("seed", "must be an integer >= 0 (0 = random)", seed, name)
    if "samples" in params and params["samples"] != 1:
        raise invalid_field("samples", "must be 1", params["samples"], name)
    if "aspect_ratio" in params and not isinstance(params["aspect_ratio"], str):
        raise invalid_field("aspect_ratio", "must be a string such as match_input_image", params["aspect_ratio"], name)


def _validate_size(rules: ModelRules, params: Mapping[str, Any]) -> None:
    name = rules.short_name
    for side in ("width", "height"):
        if side not in params:
            continue
        value = params[side]
        if rules.sides is not None:
            if value not in rules.sides:
                raise invalid_field(side, f"must be one of {', '.join(map(str, KONTEXT_SIDES))}", value, name)
        elif rules.sizes is not None and value not in {size[0 if side == "width" else 1] for size in rules.sizes}:
            allowed = " or ".join(f"{w}x{h}" for w, h in rules.sizes)
            values = sorted({size[0 if side == "width" else 1] for size in rules.sizes})
            raise invalid_field(side, f"must be {' or '.join(map(str, values))} ({allowed} only)", value, name)


def _validate_range(rules: ModelRules, params: Mapping[str, Any], key: str, bounds: tuple[float, float],
                    *, number: type) -> None:
    if key not in params:
        return
    value = params[key]
    low, high = bounds
    if number is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise invalid_field(key, "must be an integer", value, rules.short_name)
    if not _is_number(value):
        raise invalid_field(key, "must be a number", value, rules.short_name)
    if low == high and value != low:
        raise invalid_field(key, f"must be {low:g}", value, rules.short_name)
    if not low <= value <= high:
        unconfirmed = " (loose, unconfirmed range)" if not rules.confirmed else ""
        raise invalid_field(key, f"must be between {low:g} and {high:g}{unconfirmed}", value, rules.short_name)


def model_capabilities(model: str, *, native_negative_prompt: bool = False) -> ProviderCapabilities:
    """What the prompt builder and aspect planner may ask of `model`."""
    rules = rules_for(model)
    negative = "native" if (native_negative_prompt and rules.negative_prompt == "unconfirmed") else "fold"
    if rules.task == "edit":
        return ProviderCapabilities(max_prompt_chars=ADVERTISED_PROMPT_CHARS, negative_prompt=negative,
                                    native_sizes=list(KONTEXT_SIZES), max_side=KONTEXT_MAX_SIDE,
                                    supports_edit=True)
    # SD 3.5 takes no size field: we assume its 1024x1024 default (UNCONFIRMED)
    sizes = list(rules.sizes) if rules.sizes else [(1024, 1024)]
    return ProviderCapabilities(max_prompt_chars=ADVERTISED_PROMPT_CHARS, negative_prompt=negative,
                                native_sizes=sizes, max_side=max(max(s) for s in sizes), supports_edit=False,
                                fast_steps=rules.fast_steps)


# --------------------------------------------------------------------------- payloads

def fold_negatives(prompt: str, negative: str, *, max_chars: int = ADVERTISED_PROMPT_CHARS) -> tuple[str, str]:
    """(prompt text, what happened to the negatives): "none", "folded", or "dropped" when folding
    would push the prompt over `max_chars`."""
    negative = negative.strip()
    if not negative:
        return prompt, "none"
    folded = f"{prompt.rstrip().rstrip('.')}. Avoid: {negative}."
    if len(folded) <= max_chars:
        return folded, "folded"
    return prompt, "dropped"


def generation_payload(rules: ModelRules, prompt: str, *, width: int, height: int, seed: int,
                       steps: int | None = None, cfg_scale: float | None = None,
                       negative_prompt: str | None = None) -> dict[str, Any]:
    """The request JSON for a text-to-image call of `rules.model`."""
    payload: dict[str, Any] = {"prompt": prompt, "mode": "base"}
    if rules.sizes is not None:
        payload.update(width=width, height=height)
    payload["cfg_scale"] = rules.default_cfg_scale if cfg_scale is None else cfg_scale
    if rules.confirmed:
        payload["samples"] = 1
    payload["seed"] = seed
    payload["steps"] = rules.default_steps if steps is None else steps
    if negative_prompt:
        payload["negative_prompt"] = negative_prompt
    return payload


def snap_kontext_size(width: int, height: int) -> tuple[int, int]:
    """The Kontext size whose aspect ratio is nearest to width:height."""
    aspect = math.log(width / height)
    return min(KONTEXT_SIZES, key=lambda size: abs(math.log(size[0] / size[1]) - aspect))


def kontext_payload(prompt: str, image: str, *, width: int, height: int, seed: int, steps: int | None = None,
                    cfg_scale: float | None = None) -> dict[str, Any]:
    rules = MODEL_RULES[FLUX_KONTEXT]
    return {
        "prompt": prompt,
        "image": image,
        "width": width,
        "height": height,
        "cfg_scale": rules.default_cfg_scale if cfg_scale is None else cfg_scale,
        # width/height are snapped to the source aspect, so both readings of aspect_ratio agree
        "aspect_ratio": "match_input_image",
        "samples": 1,
        "seed": seed,
        "steps": rules.default_steps if steps is None else steps,
    }

