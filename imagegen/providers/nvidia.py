"""NVIDIA image generation client and ImageGenerator: hosted API (ai.api.nvidia.com, NVCF) and NIM containers.

Contract: shared/docs/provider-contracts.md section 1. `POST {base_url}/{publisher}/{model}` (hosted)
or `POST {nim_url}/v1/infer` (NIM) with the model's JSON fields; the answer is
`{"artifacts": [{"base64", "finishReason", "seed"}]}`, or a 202 that is polled on NVCF's status
endpoint (imagegen.providers.nvcf). Requests are checked against the model rules
(imagegen.providers.nvidia_models) before any HTTP call, so a bad size or step count costs neither
quota nor a rate-limit token.

The client never retries by itself (Prefect task retries do); it raises imagegen.errors types whose
`transient` flag says whether a retry can help.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from imagegen.errors import ContentFiltered, ProviderError, ProviderRequestInvalid
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef, ProviderCapabilities
from imagegen.paid_sends import sending_paid_request
from imagegen.pending import RECOVERED_KEY, FolderJournal, PendingJournal, request_key
from imagegen.providers.base import save_image_bytes
from imagegen.providers.http import raise_for_provider_status, send_request, shared_client
from imagegen.providers.nvcf import NvcfPolling, strip_auth
from imagegen.providers.nvidia_models import (
    FLUX_DEV,
    FLUX_KONTEXT,
    KONTEXT_MAX_SIDE,
    PROVIDER,
    fold_negatives,
    generation_payload,
    invalid_field,
    kontext_payload,
    model_capabilities,
    rules_for,
    snap_kontext_size,
    validate_request,
)
from imagegen.providers.paid_requests import resume_nvcf_request, send_paid_nvcf
from imagegen.providers.payloads import INLINE_DATA_URL_LIMIT, encode_jpeg, encode_png, jpeg_data_url
from imagegen.ratelimit import RateLimiter, shared_limiter
from imagegen.redaction import mask_url, url_secrets

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ai.api.nvidia.com/v1/genai"
DEFAULT_STATUS_URL = "https://api.nvcf.nvidia.com/v2/nvcf/pexec/status"
DEFAULT_ASSETS_URL = "https://api.nvcf.nvidia.com/v2/nvcf/assets"

# Image generation takes 10-40 s; the server holds a request up to NVCF-POLL-SECONDS before it
# answers 202, so the read timeout must be longer than that.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=90.0, write=60.0, pool=10.0)
DEFAULT_POLL_SECONDS = 30
DEFAULT_RATE_PER_MINUTE = 40.0  # free tier, widely reported

NVCF_BODY_LIMIT = 5_000_000  # bytes; NVCF's request body limit
ASSET_DESCRIPTION = "imagegen-edit-source"


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
    """Rate-limit bucket name: one per API key (hashed, never the key) or per NIM server (its URL masked)."""
    if nim_url:
        return f"nim:{mask_url(nim_url.rstrip('/'))}"
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
    pending_key: str | None = None  # the journal entry to remove once the answer is stored
    resumed: bool = False  # the answer of a request id kept from an earlier call: no new payment


class NvidiaClient:
    """Synchronous client of NVIDIA's hosted genai API (NVCF) or a self-hosted NIM container.

    Each inference POST first takes a token from `limiter` (share one per account: see
    `NvidiaClient.for_account`). NVCF status polls, asset uploads and result downloads take none:
    they are separate NVCF endpoints, and polls are spaced by `poll_interval` instead.
    """

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, status_url: str = DEFAULT_STATUS_URL,
                 assets_url: str = DEFAULT_ASSETS_URL, nim_url: str | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, poll_seconds: int = DEFAULT_POLL_SECONDS,
                 poll_interval: float = 1.0, poll_deadline: float = 600.0, limiter: RateLimiter | None = None,
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
        # what a server may echo of the URLs' credentials (user info, Basic auth made of it, ?token=)
        self._url_secrets = tuple(secret for url in (self.base_url, self.status_url, self.assets_url, self.nim_url)
                                  for secret in url_secrets(url))
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
        return f"NvidiaClient(endpoint={self.endpoint!r}, url={mask_url(self.nim_url or self.base_url)!r})"

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
    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key, *self._url_secrets)

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
              extra_headers: Mapping[str, str] | None = None,
              journal: PendingJournal | None = None) -> InferenceResult:
        """Validate, pace, POST and resolve one inference call; returns the (unverified) image bytes.

        With a `journal`, the request is a paid one that is never sent blindly twice
        (imagegen.providers.paid_requests): a request id kept from an earlier call is polled again
        instead, and the caller removes the entry (`result.pending_key`) once the answer is stored.
        """
        body = self._checked_body(model, payload, allow_negative_prompt)
        key = request_key(self.infer_url(model), payload)
        return self._call(model, key, journal, lambda: (body, dict(extra_headers or {})))

    def _checked_body(self, model: str, payload: Mapping[str, Any], allow_negative_prompt: bool = False) -> bytes:
        validate_request(model, payload, allow_negative_prompt=allow_negative_prompt)
        body = json.dumps(payload).encode()
        if len(body) > NVCF_BODY_LIMIT:
            raise invalid_field("image", f"request body must be <= {NVCF_BODY_LIMIT} bytes (use an NVCF asset)",
                           f"{len(body)} bytes", rules_for(model).short_name)
        return body

    def _call(self, model: str, key: str, journal: PendingJournal | None,
              prepare: Callable[[], tuple[bytes, dict[str, str]]]) -> InferenceResult:
        """Resume the request kept for `key`, or prepare (e.g. upload the edit source) and send it."""
        started = time.monotonic()
        waited = 0.0
        outcome = resume_nvcf_request(self._http, journal, key, provider=PROVIDER, polling=self.polling,
                                      secrets=self._secrets)
        if outcome is None:
            sending_paid_request()  # before the asset upload: a spent budget stops that too
            body, headers = prepare()
            waited = self.limiter.acquire() if self.limiter is not None else 0.0
            started = time.monotonic()
            request = self._http.build_request("POST", self.infer_url(model), content=body,
                                               headers={"Content-Type": "application/json", **headers})
            outcome = send_paid_nvcf(self._http, request, journal=journal, key=key, provider=PROVIDER,
                                     polling=self.polling, secrets=self._secrets,
                                     raise_for_status=lambda response: self._raise_for_status(response, model))
        try:
            if outcome.artifact is not None:  # a result zip holding the image itself
                artifact = Artifact(image_bytes=outcome.artifact, seed=None, finish_reason="SUCCESS")
            else:
                artifact = parse_artifacts(outcome.payload)
        except ProviderError:
            if journal is not None:  # a final answer (filtered, failed): nothing left to resume
                journal.remove(key)
            raise
        elapsed_ms = int((time.monotonic() - started) * 1000)
        logger.debug("%s: %s answered in %d ms after %d NVCF polls", PROVIDER, model, elapsed_ms, outcome.polls)
        extra: dict[str, Any] = {"from_zip": True} if outcome.from_zip else {}
        return InferenceResult(image_bytes=artifact.image_bytes, seed=artifact.seed,
                               finish_reason=artifact.finish_reason, endpoint=self.endpoint, polls=outcome.polls,
                               request_id=outcome.request_id, elapsed_ms=elapsed_ms, waited_ms=int(waited * 1000),
                               extra=extra, pending_key=key if journal is not None else None,
                               resumed=outcome.resumed)

    def _raise_for_status(self, response: httpx.Response, model: str) -> None:
        raise_for_provider_status(response, PROVIDER, limiter=self.limiter, secrets=self._secrets, messages={
            404: f"model {model} not enabled for this account / licence not accepted"
                 if not self.nim_url else "no /v1/infer on this NIM server"})

    # ----------------------------------------------------------------- editing (FLUX.1 Kontext)

    def edit(self, image_path: str | Path, prompt: str, *, model: str = FLUX_KONTEXT, seed: int = 0,
             steps: int | None = None, cfg_scale: float | None = None,
             journal: PendingJournal | None = None) -> InferenceResult:
        """Edit `image_path` following `prompt` with FLUX.1 Kontext.

        The source is downscaled to <= 1568 px and sent inline as a JPEG data URL while that stays
        under `inline_image_limit` characters; larger sources go through an NVCF asset upload (made
        only when the request is really sent: a kept request id is polled without one).
        Output width/height are the Kontext size nearest the source's aspect ratio.
        """
        rules = rules_for(model)
        if rules.task != "edit":
            raise invalid_field("model", "must be an editing model such as " + FLUX_KONTEXT, model)
        jpeg, (width, height) = encode_jpeg(image_path, max_side=KONTEXT_MAX_SIDE, quality=90)
        out_width, out_height = snap_kontext_size(width, height)
        data_url = jpeg_data_url(jpeg)
        extra: dict[str, Any] = {"source_size": [width, height], "requested_size": [out_width, out_height]}

        def payload_with(image: str) -> dict[str, Any]:
            return kontext_payload(prompt, image, width=out_width, height=out_height, seed=seed, steps=steps,
                                   cfg_scale=cfg_scale)

        if len(data_url) <= self.inline_image_limit:
            result = self.infer(model, payload_with(data_url), journal=journal)
            extra["edit_input"] = "inline"
        else:
            png, _ = encode_png(image_path, max_side=KONTEXT_MAX_SIDE)
            # the asset id differs per upload, so the request is known by the bytes it carries
            identity = payload_with(f"data:image/png;sha256,{hashlib.sha256(png).hexdigest()}")
            self._checked_body(model, identity)

            def upload_and_build() -> tuple[bytes, dict[str, str]]:
                asset_id = self.upload_asset(png, content_type="image/png")
                extra["asset_id"] = asset_id
                body = self._checked_body(model, payload_with(f"data:image/png;asset_id,{asset_id}"))
                return body, {"NVCF-INPUT-ASSET-REFERENCES": asset_id}

            result = self._call(model, request_key(self.infer_url(model), identity), journal, upload_and_build)
            extra["edit_input"] = "asset"
        result.extra.update(extra)
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

    charges_budget_when_sending = True  # a kept request id is polled for free (imagegen.paid_sends)

    def __init__(self, client: NvidiaClient, *, model: str = FLUX_DEV, edit_model: str | None = FLUX_KONTEXT,
                 steps: int | None = None, cfg_scale: float | None = None, native_negative_prompt: bool = False,
                 name: str | None = None,
                 journal_for: Callable[[Path], PendingJournal] = FolderJournal.under) -> None:
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
        self.journal_for = journal_for  # the pending-requests journal of a masters folder (imagegen.pending)

    def __repr__(self) -> str:
        return f"NvidiaGenerator(name={self.name!r}, model={self.model!r}, client={self.client!r})"

    def capabilities(self, model: str | None = None) -> ProviderCapabilities:
        caps = model_capabilities(model or self.model, native_negative_prompt=self.native_negative_prompt)
        return caps.model_copy(update={"supports_edit": caps.supports_edit or self.edit_model is not None})

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        model = request.model or self.model
        rules = rules_for(model)
        if rules.task != "generate":
            raise invalid_field("model", "is an editing model; use edit()", model)
        native = self.native_negative_prompt and rules.negative_prompt == "unconfirmed"
        if native and request.negative_prompt.strip():
            prompt, negatives, negative_field = request.prompt, "native", request.negative_prompt.strip()
        else:
            prompt, negatives = fold_negatives(request.prompt, request.negative_prompt)
            negative_field = None
        payload = generation_payload(rules, prompt, width=request.width, height=request.height, seed=request.seed,
                                     steps=self.steps if self.steps is not None else request.steps,
                                     cfg_scale=self.cfg_scale, negative_prompt=negative_field)
        journal = self.journal_for(dest_dir)
        result = self.client.infer(model, payload, allow_negative_prompt=native, journal=journal)
        return self._store(result, journal, model, request, dest_dir,
                           {"negatives": negatives, "steps": payload["steps"], "cfg_scale": payload["cfg_scale"]})

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        if self.edit_model is None:
            raise ProviderRequestInvalid(f"{self.name}: no edit model configured", provider=self.name)
        journal = self.journal_for(dest_dir)
        result = self.client.edit(source.path, instruction, model=self.edit_model, seed=request.seed, journal=journal)
        return self._store(result, journal, self.edit_model, request, dest_dir,
                           {"negatives": "dropped" if request.negative_prompt.strip() else "none",
                            "source_sha256": source.sha256})

    def _store(self, result: InferenceResult, journal: PendingJournal, model: str, request: GenerationRequest,
               dest_dir: Path, metadata: dict[str, Any]) -> GeneratedImage:
        try:
            ref = save_image_bytes(result.image_bytes, dest_dir, provider=self.name)
        finally:  # stored, or bytes that never will be: either way the answer arrived, nothing to resume
            if result.pending_key:
                journal.remove(result.pending_key)
        metadata = {**metadata, **result.extra, "endpoint": result.endpoint, "nvcf_polls": result.polls,
                    "nvcf_request_id": result.request_id, "finish_reason": result.finish_reason,
                    "rate_limit_wait_ms": result.waited_ms}
        if result.resumed:
            metadata[RECOVERED_KEY] = "nvcf request id polled again"
        return GeneratedImage(image=ref, provider=self.name, model=model,
                              seed=result.seed if result.seed is not None else request.seed,
                              generation_ms=result.elapsed_ms, content_filtered=False,
                              metadata=metadata)
