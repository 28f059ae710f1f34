"""NVIDIA image generation: hosted API (ai.api.nvidia.com, NVCF) and self-hosted NIM containers.

Contract: shared/docs/provider-contracts.md section 1. `POST {base_url}/{publisher}/{model}` (hosted)
or `POST {nim_url}/v1/infer` (NIM) with the model's JSON fields; the answer is
`{"artifacts": [{"base64", "finishReason", "seed"}]}`, or a 202 that is polled on NVCF's status
endpoint. Requests are checked against the model rules below before any HTTP call, so a bad size or
step count costs neither quota nor a rate-limit token.

The client never retries by itself (Prefect task retries do); it raises imagegen.errors types
whose `transient` flag says whether a retry can help.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from imagegen.errors import ContentFiltered, ProviderError, ProviderRequestInvalid
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef, ProviderCapabilities
from imagegen.providers.base import save_image_bytes
from imagegen.providers.http import raise_for_provider_status, send_request, shared_client
from imagegen.providers.nvcf import NvcfPolling, resolve_nvcf, strip_auth
from imagegen.providers.payloads import INLINE_DATA_URL_LIMIT, encode_jpeg, encode_png, jpeg_data_url
from imagegen.ratelimit import TokenBucket, shared_limiter

logger = logging.getLogger(__name__)

PROVIDER = "nvidia"

FLUX_DEV = "black-forest-labs/flux.1-dev"
FLUX_SCHNELL = "black-forest-labs/flux.1-schnell"
FLUX_KONTEXT = "black-forest-labs/flux.1-kontext-dev"
SD35_LARGE = "stabilityai/stable-diffusion-3_5-large"

DEFAULT_BASE_URL = "https://ai.api.nvidia.com/v1/genai"
DEFAULT_STATUS_URL = "https://api.nvcf.nvidia.com/v2/nvcf/pexec/status"
DEFAULT_ASSETS_URL = "https://api.nvcf.nvidia.com/v2/nvcf/assets"

# Image generation takes 10-40 s; the server holds a request up to NVCF-POLL-SECONDS before it
# answers 202, so the read timeout must be longer than that.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=90.0, write=60.0, pool=10.0)
DEFAULT_POLL_SECONDS = 30
DEFAULT_RATE_PER_MINUTE = 40.0  # free tier, widely reported

NVCF_BODY_LIMIT = 5_000_000  # bytes; NVCF's request body limit
MAX_PROMPT_CHARS = 10_000  # documented hard limit
ADVERTISED_PROMPT_CHARS = 500  # seed 000 reports 400 answers above ~500 characters: keep prompts short
KONTEXT_MAX_SIDE = 1568
ASSET_DESCRIPTION = "imagegen-edit-source"

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

    @property
    def short_name(self) -> str:
        return self.model.split("/", 1)[-1]


_FLUX_FIELDS = frozenset({"prompt", "mode", "image", "width", "height", "cfg_scale", "samples", "seed", "steps"})

MODEL_RULES: dict[str, ModelRules] = {
    FLUX_DEV: ModelRules(
        model=FLUX_DEV, task="generate", fields=_FLUX_FIELDS, steps=(5, 100), default_steps=50,
        cfg_scale=(0.0, 9.0), default_cfg_scale=5.0, sizes=((1024, 1024),), modes=("base", "canny", "depth")),
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
        raise _invalid("model", f"must be one of {', '.join(sorted(MODEL_RULES))}", model) from None


def _invalid(field_name: str, rule: str, value: Any, model: str | None = None) -> ProviderRequestInvalid:
    where = f" for {model}" if model else ""
    shown = value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "..."
    exc = ProviderRequestInvalid(f"{PROVIDER}: {field_name}: {rule}{where} (got {shown!r})", provider=PROVIDER)
    exc.field = field_name  # type: ignore[attr-defined]  # lets callers point at the offending field
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
            raise _invalid(key, "not accepted (fold negatives into the prompt)", params[key], name)
        if key not in rules.fields:
            raise _invalid(key, "not a field this model accepts", params[key], name)

    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt", "required, a non-empty string", prompt, name)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid("prompt", f"must be <= {MAX_PROMPT_CHARS} characters", f"{len(prompt)} characters", name)

    mode = params.get("mode")
    if mode is not None and mode not in rules.modes:
        raise _invalid("mode", f"must be one of {', '.join(rules.modes)}", mode, name)
    image = params.get("image")
    if rules.task == "edit" and image is None:
        raise _invalid("image", "required (the image to edit)", image, name)
    if rules.task == "generate" and image is not None and mode not in ("canny", "depth"):
        raise _invalid("image", "only accepted with mode canny or depth", "<image>", name)
    if rules.task == "generate" and mode in ("canny", "depth") and image is None:
        raise _invalid("image", f"required with mode {mode}", image, name)
    if image is not None and (not isinstance(image, str) or not image.startswith("data:image/")):
        raise _invalid("image", "must be a data:image/... URL (base64 or asset_id)", "<image>", name)

    _validate_size(rules, params)
    _validate_range(rules, params, "cfg_scale", rules.cfg_scale, number=float)
    _validate_range(rules, params, "steps", rules.steps, number=int)
    if "seed" in params:
        seed = params["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise _invalid("seed", "must be an integer >= 0 (0 = random)", seed, name)
    if "samples" in params and params["samples"] != 1:
        raise _invalid("samples", "must be 1", params["samples"], name)
    if "aspect_ratio" in params and not isinstance(params["aspect_ratio"], str):
        raise _invalid("aspect_ratio", "must be a string such as match_input_image", params["aspect_ratio"], name)


def _validate_size(rules: ModelRules, params: Mapping[str, Any]) -> None:
    name = rules.short_name
    for side in ("width", "height"):
        if side not in params:
            continue
        value = params[side]
        if rules.sides is not None:
            if value not in rules.sides:
                raise _invalid(side, f"must be one of {', '.join(map(str, KONTEXT_SIDES))}", value, name)
        elif rules.sizes is not None and value not in {size[0 if side == "width" else 1] for size in rules.sizes}:
            allowed = " or ".join(f"{w}x{h}" for w, h in rules.sizes)
            values = sorted({size[0 if side == "width" else 1] for size in rules.sizes})
            raise _invalid(side, f"must be {' or '.join(map(str, values))} ({allowed} only)", value, name)


def _validate_range(rules: ModelRules, params: Mapping[str, Any], key: str, bounds: tuple[float, float],
                    *, number: type) -> None:
    if key not in params:
        return
    value = params[key]
    low, high = bounds
    if number is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise _invalid(key, "must be an integer", value, rules.short_name)
    if not _is_number(value):
        raise _invalid(key, "must be a number", value, rules.short_name)
    if low == high and value != low:
        raise _invalid(key, f"must be {low:g}", value, rules.short_name)
    if not low <= value <= high:
        unconfirmed = " (loose, unconfirmed range)" if not rules.confirmed else ""
        raise _invalid(key, f"must be between {low:g} and {high:g}{unconfirmed}", value, rules.short_name)


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
                                native_sizes=sizes, max_side=max(max(s) for s in sizes), supports_edit=False)


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


@dataclass(frozen=True)
class Artifact:
    image_bytes: bytes
    seed: int | None
    finish_reason: str


def parse_artifacts(payload: Any, *, provider: str = PROVIDER) -> Artifact:
    """The first artifact of an answer. CONTENT_FILTERED raises ContentFiltered and ERROR raises
    ProviderError: neither ever becomes an image."""
    artifacts = payload.get("artifacts") if isinstance(payload, dict) else None
    if not isinstance(artifacts, list) or not artifacts or not isinstance(artifacts[0], dict):
        raise ProviderError(f"{provider}: answer has no artifacts", provider=provider)
    first = artifacts[0]
    reason = str(first.get("finishReason") or "SUCCESS").upper()
    seed = first.get("seed") if isinstance(first.get("seed"), int) else None
    if reason == "CONTENT_FILTERED":
        raise ContentFiltered(f"{provider}: the safety filter withheld the image (finishReason CONTENT_FILTERED, "
                              f"seed {seed})", provider=provider)
    if reason != "SUCCESS":
        raise ProviderError(f"{provider}: generation failed (finishReason {reason})", provider=provider)
    encoded = first.get("base64")
    if not isinstance(encoded, str) or not encoded:
        raise ProviderError(f"{provider}: artifact has no base64 image", provider=provider)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(f"{provider}: artifact base64 is not valid base64 ({len(encoded)} chars)",
                            provider=provider) from None
    return Artifact(image_bytes=data, seed=seed, finish_reason=reason)


# --------------------------------------------------------------------------- client

def nvidia_account_key(api_key: str | None, nim_url: str | None = None) -> str:
    """Rate-limit bucket name: one per API key (hashed, never the key) or per NIM server."""
    if nim_url:
        return f"nim:{nim_url.rstrip('/')}"
    return f"nvidia:{hashlib.sha256((api_key or '').encode()).hexdigest()[:12]}"


@dataclass
class InferenceResult:
    """One finished inference call, before the bytes are verified and stored."""

    image_bytes: bytes
    seed: int | None
    finish_reason: str
    endpoint: str
    polls: int = 0
    request_id: str | None = None
    elapsed_ms: int = 0
    waited_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class NvidiaClient:
    """Synchronous client of NVIDIA's hosted genai API (NVCF) or a self-hosted NIM container.

    Each inference POST first takes a token from `limiter` (share one per account: see
    `NvidiaClient.for_account`). NVCF status polls, asset uploads and result downloads take none:
    they are separate NVCF endpoints, and polls are spaced by `poll_interval` instead.
    """

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, status_url: str = DEFAULT_STATUS_URL,
                 assets_url: str = DEFAULT_ASSETS_URL, nim_url: str | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, poll_seconds: int = DEFAULT_POLL_SECONDS,
                 poll_interval: float = 1.0, poll_deadline: float = 600.0, limiter: TokenBucket | None = None,
                 transport: httpx.BaseTransport | None = None,
                 inline_image_limit: int = INLINE_DATA_URL_LIMIT) -> None:
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        if timeout.read is not None and poll_seconds >= timeout.read:
            raise ValueError(f"poll_seconds ({poll_seconds}) must be shorter than the read timeout "
                             f"({timeout.read}s): the server holds requests that long")
        self._api_key = api_key or ""
        self.base_url = base_url.rstrip("/")
        self.status_url = status_url.rstrip("/")
        self.assets_url = assets_url.rstrip("/")
        self.nim_url = nim_url.rstrip("/") if nim_url else None
        self.poll_seconds = int(poll_seconds)
        self.limiter = limiter
        self.inline_image_limit = inline_image_limit
        self.polling = NvcfPolling(status_url=self.status_url, interval=poll_interval, deadline=poll_deadline)
        headers = {"Accept": "application/json", "NVCF-POLL-SECONDS": str(self.poll_seconds)}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # redirects are NVCF results (302 to a presigned zip): handled explicitly, never followed blindly
        self._owns_http = transport is not None
        if transport is None:  # one client per account and endpoints in the process (see shared_client)
            self._http = shared_client(scope=(PROVIDER, self.base_url, self.status_url, self.assets_url,
                                              self.nim_url), headers=headers, timeout=timeout, follow_redirects=False)
        else:
            self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport, follow_redirects=False)

    @classmethod
    def for_account(cls, api_key: str, *, rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
                    **kwargs: Any) -> NvidiaClient:
        """A client paced by the process-wide token bucket of this API key (or NIM server)."""
        limiter = shared_limiter(nvidia_account_key(api_key, kwargs.get("nim_url")), rate_per_minute)
        return cls(api_key, limiter=limiter, **kwargs)

    def __repr__(self) -> str:
        return f"NvidiaClient(endpoint={self.endpoint!r}, url={self.nim_url or self.base_url!r})"

    def __enter__(self) -> NvidiaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close a client built around a caller's transport; the shared client stays open for others."""
        if self._owns_http:
            self._http.close()

    @property
    def endpoint(self) -> Literal["hosted", "nim"]:
        return "nim" if self.nim_url else "hosted"

    @property
    def _secrets(self) -> tuple[str]:
        return (self._api_key,)

    def infer_url(self, model: str) -> str:
        return f"{self.nim_url}/v1/infer" if self.nim_url else f"{self.base_url}/{model}"

    def nim_ready(self) -> bool:
        """True when the NIM container answers 200 on /v1/health/ready (body not inspected)."""
        if not self.nim_url:
            raise ValueError("nim_ready() needs a nim_url")
        try:
            response = self._http.get(f"{self.nim_url}/v1/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # ----------------------------------------------------------------- inference

    def infer(self, model: str, payload: Mapping[str, Any], *, allow_negative_prompt: bool = False,
              extra_headers: Mapping[str, str] | None = None) -> InferenceResult:
        """Validate, pace, POST and resolve one inference call; returns the (unverified) image bytes."""
        validate_request(model, payload, allow_negative_prompt=allow_negative_prompt)
        body = json.dumps(payload).encode()
        if len(body) > NVCF_BODY_LIMIT:
            raise _invalid("image", f"request body must be <= {NVCF_BODY_LIMIT} bytes (use an NVCF asset)",
                           f"{len(body)} bytes", rules_for(model).short_name)
        waited = self.limiter.acquire() if self.limiter is not None else 0.0
        started = time.monotonic()
        request = self._http.build_request(
            "POST", self.infer_url(model), content=body,
            headers={"Content-Type": "application/json", **(extra_headers or {})})
        response = send_request(self._http, request, PROVIDER, secrets=self._secrets)
        if response.status_code not in (200, 202):
            raise_for_provider_status(response, PROVIDER, limiter=self.limiter, secrets=self._secrets, messages={
                404: f"model {model} not enabled for this account / licence not accepted"
                     if not self.nim_url else "no /v1/infer on this NIM server"})
        outcome = resolve_nvcf(self._http, response, provider=PROVIDER, polling=self.polling, secrets=self._secrets)
        if outcome.artifact is not None:  # a result zip holding the image itself
            artifact = Artifact(image_bytes=outcome.artifact, seed=None, finish_reason="SUCCESS")
        else:
            artifact = parse_artifacts(outcome.payload)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        logger.debug("%s: %s answered in %d ms after %d NVCF polls", PROVIDER, model, elapsed_ms, outcome.polls)
        return InferenceResult(image_bytes=artifact.image_bytes, seed=artifact.seed,
                               finish_reason=artifact.finish_reason, endpoint=self.endpoint, polls=outcome.polls,
                               request_id=outcome.request_id, elapsed_ms=elapsed_ms, waited_ms=int(waited * 1000),
                               extra={"from_zip": True} if outcome.from_zip else {})

    # ----------------------------------------------------------------- editing (FLUX.1 Kontext)

    def edit(self, image_path: str | Path, prompt: str, *, model: str = FLUX_KONTEXT, seed: int = 0,
             steps: int | None = None, cfg_scale: float | None = None) -> InferenceResult:
        """Edit `image_path` following `prompt` with FLUX.1 Kontext.

        The source is downscaled to <= 1568 px and sent inline as a JPEG data URL while that stays
        under `inline_image_limit` characters; larger sources go through an NVCF asset upload.
        Output width/height are the Kontext size nearest the source's aspect ratio.
        """
        rules = rules_for(model)
        if rules.task != "edit":
            raise _invalid("model", "must be an editing model such as " + FLUX_KONTEXT, model)
        jpeg, (width, height) = encode_jpeg(image_path, max_side=KONTEXT_MAX_SIDE, quality=90)
        out_width, out_height = snap_kontext_size(width, height)
        data_url = jpeg_data_url(jpeg)
        headers: dict[str, str] = {}
        if len(data_url) <= self.inline_image_limit:
            image, how, asset_id = data_url, "inline", None
        else:
            png, _ = encode_png(image_path, max_side=KONTEXT_MAX_SIDE)
            asset_id = self.upload_asset(png, content_type="image/png")
            image, how = f"data:image/png;asset_id,{asset_id}", "asset"
            headers["NVCF-INPUT-ASSET-REFERENCES"] = asset_id
        payload = kontext_payload(prompt, image, width=out_width, height=out_height, seed=seed, steps=steps,
                                  cfg_scale=cfg_scale)
        result = self.infer(model, payload, extra_headers=headers)
        result.extra.update(edit_input=how, source_size=[width, height], requested_size=[out_width, out_height])
        if asset_id:
            result.extra["asset_id"] = asset_id
        return result

    def upload_asset(self, data: bytes, *, content_type: str = "image/png",
                     description: str = ASSET_DESCRIPTION) -> str:
        """Create an NVCF asset, PUT `data` to its presigned upload URL, return the asset id."""
        created = send_request(self._http, self._http.build_request(
            "POST", self.assets_url, json={"contentType": content_type, "description": description}),
            PROVIDER, secrets=self._secrets)
        raise_for_provider_status(created, PROVIDER, secrets=self._secrets,
                                  messages={404: "NVCF asset API not found"})
        try:
            body = created.json()
            asset_id, upload_url = str(body["assetId"]), str(body["uploadUrl"])
        except (ValueError, KeyError, TypeError):
            raise ProviderError(f"{PROVIDER}: NVCF asset answer lacks assetId/uploadUrl", provider=PROVIDER) from None
        upload = strip_auth(self._http.build_request("PUT", upload_url, content=data, headers={
            "Content-Type": content_type, "x-amz-meta-nvcf-asset-description": description}))
        uploaded = send_request(self._http, upload, PROVIDER, secrets=self._secrets)
        if uploaded.status_code in (401, 403):
            # a storage host's refusal means an expired/mismatched presigned URL, not a bad API key
            raise ProviderError(f"{PROVIDER}: NVCF asset upload refused by the presigned URL "
                                f"(HTTP {uploaded.status_code})", provider=PROVIDER, status=uploaded.status_code)
        raise_for_provider_status(uploaded, PROVIDER, secrets=self._secrets)
        return asset_id


# --------------------------------------------------------------------------- ImageGenerator

class NvidiaGenerator:
    """imagegen ImageGenerator over an NvidiaClient: text-to-image with `model`, edits with `edit_model`."""

    def __init__(self, client: NvidiaClient, *, model: str = FLUX_DEV, edit_model: str | None = FLUX_KONTEXT,
                 steps: int | None = None, cfg_scale: float | None = None, native_negative_prompt: bool = False,
                 name: str | None = None) -> None:
        rules_for(model)
        if edit_model is not None:
            rules_for(edit_model)
        self.client = client
        self.model = model
        self.edit_model = edit_model
        self.steps = steps
        self.cfg_scale = cfg_scale
        # only for models whose negative_prompt support is unconfirmed (SD 3.5); FLUX always folds
        self.native_negative_prompt = native_negative_prompt
        self.name = name or ("nim" if client.endpoint == "nim" else "nvidia")

    def __repr__(self) -> str:
        return f"NvidiaGenerator(name={self.name!r}, model={self.model!r}, client={self.client!r})"

    def capabilities(self, model: str | None = None) -> ProviderCapabilities:
        caps = model_capabilities(model or self.model, native_negative_prompt=self.native_negative_prompt)
        return caps.model_copy(update={"supports_edit": caps.supports_edit or self.edit_model is not None})

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        model = request.model or self.model
        rules = rules_for(model)
        if rules.task != "generate":
            raise _invalid("model", "is an editing model; use edit()", model)
        native = self.native_negative_prompt and rules.negative_prompt == "unconfirmed"
        if native and request.negative_prompt.strip():
            prompt, negatives, negative_field = request.prompt, "native", request.negative_prompt.strip()
        else:
            prompt, negatives = fold_negatives(request.prompt, request.negative_prompt)
            negative_field = None
        payload = generation_payload(rules, prompt, width=request.width, height=request.height, seed=request.seed,
                                     steps=self.steps, cfg_scale=self.cfg_scale, negative_prompt=negative_field)
        result = self.client.infer(model, payload, allow_negative_prompt=native)
        return self._store(result, model, request, dest_dir,
                           {"negatives": negatives, "steps": payload["steps"], "cfg_scale": payload["cfg_scale"]})

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        if self.edit_model is None:
            raise ProviderRequestInvalid(f"{self.name}: no edit model configured", provider=self.name)
        result = self.client.edit(source.path, instruction, model=self.edit_model, seed=request.seed)
        return self._store(result, self.edit_model, request, dest_dir,
                           {"negatives": "dropped" if request.negative_prompt.strip() else "none",
                            "source_sha256": source.sha256})

    def _store(self, result: InferenceResult, model: str, request: GenerationRequest, dest_dir: Path,
               metadata: dict[str, Any]) -> GeneratedImage:
        ref = save_image_bytes(result.image_bytes, dest_dir, provider=self.name)
        metadata = {**metadata, **result.extra, "endpoint": result.endpoint, "nvcf_polls": result.polls,
                    "nvcf_request_id": result.request_id, "finish_reason": result.finish_reason,
                    "rate_limit_wait_ms": result.waited_ms}
        return GeneratedImage(image=ref, provider=self.name, model=model,
                              seed=result.seed if result.seed is not None else request.seed,
                              generation_ms=result.elapsed_ms, content_filtered=False,
                              metadata=metadata)
