"""Image review and alt text with a vision-language model over an OpenAI-compatible chat API.

Contract: shared/docs/provider-contracts.md section 2. `POST {base_url}/chat/completions` with the image
first (a JPEG data URL kept under ~180 KB) and the instruction second. The model is asked for strict
JSON; answers are parsed leniently (code fences, prose around the object) and anything unreadable
becomes a failing review rather than a pass. Error mapping, 202 polling and pacing are the same as
the image client's (imagegen.providers.http and .nvcf).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from imagegen.errors import ProviderError
from imagegen.pending import PendingJournal, request_key
from imagegen.providers.http import raise_for_provider_status, shared_client
from imagegen.providers.nvcf import NvcfPolling
from imagegen.providers.nvidia import DEFAULT_RATE_PER_MINUTE, DEFAULT_STATUS_URL, nvidia_account_key
from imagegen.providers.paid_requests import resume_nvcf_request, send_paid_nvcf
from imagegen.providers.payloads import INLINE_DATA_URL_LIMIT, fitted_jpeg_data_url
from imagegen.ratelimit import RateLimiter, shared_limiter
from imagegen.redaction import mask_url, url_secrets

logger = logging.getLogger(__name__)

PROVIDER = "nvidia-vlm"
DEFAULT_VLM_BASE_URL = "https://integrate.api.nvidia.com/v1"
# UNCONFIRMED which vision models a given account may call; override per deployment (IMAGEGEN_VLM_MODEL).
DEFAULT_VLM_MODEL = "meta/llama-3.2-90b-vision-instruct"
DEFAULT_VLM_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=10.0)
ALT_TEXT_MAX_CHARS = 125  # what screen readers comfortably read in one go

UNPARSEABLE = "unparseable review"

# Reviews are recorded in the ledger under this version (tasks.providers.review_master): bump it when the
# review instruction or its parsing changes, so no review made under the old wording is reused.
REVIEW_PROMPT_VERSION = 1

_REVIEW_INSTRUCTION = """You review one AI-generated marketing image against its brief.
Brief: {context}
Fail the image for any of: garbled or misspelled visible text, deformed hands, faces or anatomy,
watermarks or signatures, a subject or setting that does not match the brief, brand-unsafe content,
obvious artifacts. Otherwise pass it.
Answer with JSON only, no prose, exactly this shape:
{{"verdict": "pass" or "fail", "reasons": ["short reason", ...],
 "alt_text": "at most 125 characters describing the image for a screen reader"}}"""

_ALT_TEXT_INSTRUCTION = """Write alt text for this image for a screen reader: one sentence, at most 125 characters,
describing what is visible. Do not start with "Image of" or "Picture of".
The image was generated from this prompt: {prompt}
Reply with the alt text only."""


class Review(BaseModel):
    """A reviewer's verdict on one image."""

    verdict: Literal["pass", "fail"]
    reasons: list[str] = Field(default_factory=list)
    alt_text: str = ""
    model: str = ""


# --------------------------------------------------------------------------- text helpers

def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters (with an ellipsis)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.-")
    return cut + "…"


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def _json_candidates(text: str) -> list[str]:
    text = _THINK.sub("", text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    candidates.append(text)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    return candidates


def parse_review(text: str, model: str) -> Review:
    """A Review from a model's answer; a failing review with reason "unparseable review" when the
    answer holds no JSON object with a pass/fail verdict (an unreadable review must never pass)."""
    for candidate in _json_candidates(text):
        try:
            data = json.loads(candidate.strip())
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        verdict = str(data.get("verdict", "")).strip().lower()
        if verdict not in ("pass", "fail"):
            continue
        reasons = data.get("reasons", [])
        if isinstance(reasons, str):
            reasons = [reasons]
        if not isinstance(reasons, list):
            reasons = [str(reasons)]
        alt = data.get("alt_text")
        return Review(verdict=verdict, reasons=[str(r) for r in reasons if str(r).strip()],
                      alt_text=shorten(alt, ALT_TEXT_MAX_CHARS) if isinstance(alt, str) else "", model=model)
    return Review(verdict="fail", reasons=[UNPARSEABLE], alt_text="", model=model)


def clean_alt_text(text: str) -> str:
    """A model's alt text answer without think blocks, labels, quotes or excess length."""
    text = _THINK.sub("", text).strip()
    text = re.sub(r"^(?:alt[ -]?text)\s*:\s*", "", text, flags=re.I)
    text = text.strip().strip("\"'“”").strip()
    return shorten(text, ALT_TEXT_MAX_CHARS)


# Leading words that describe the medium, not the subject ("A cinematic photo of ...").
_MEDIUM_LEAD = re.compile(
    r"^(?:(?:a|an|the)\s+)?(?:(?:high[- ]quality|professional|cinematic|photorealistic|realistic|studio|product|"
    r"hero|marketing|close[- ]up|wide|4k|8k)\s+)*(?:photo(?:graph)?|image|picture|shot|render(?:ing)?|"
    r"illustration|banner|close[- ]up|portrait)\s+of\s+", re.I)
_CLAUSE_SPLIT = re.compile(r"[,.;:\n|]|\s[-–—]{1,2}\s")


def template_alt_text(prompt: str, brand: str | None = None, *, max_chars: int = ALT_TEXT_MAX_CHARS) -> str:
    """Alt text without a reviewer: the prompt's subject (its first clause, minus medium words such as
    "a cinematic photo of"), prefixed with the brand, at most `max_chars` characters."""
    subject = _CLAUSE_SPLIT.split(prompt.strip(), maxsplit=1)[0].strip()
    subject = _MEDIUM_LEAD.sub("", subject).strip()
    if not subject:
        subject = "marketing image"
    subject = subject[0].upper() + subject[1:]
    if brand and brand.strip() and brand.strip().lower() not in subject.lower():
        subject = f"{brand.strip()}: {subject}"
    return shorten(subject, max_chars)


# --------------------------------------------------------------------------- client

def chat_content(payload: Any, provider: str = PROVIDER) -> str:
    """choices[0].message.content of a chat.completion as text (string or list-of-parts content)."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ProviderError(f"{provider}: chat answer has no choices[0].message.content", provider=provider) from None
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


class VisionReviewer:
    """Reviews images and writes alt text with a VLM behind an OpenAI-compatible chat endpoint."""

    charges_budget_when_sending = True  # a kept request id is polled for free (imagegen.paid_sends)

    def __init__(self, api_key: str, base_url: str = DEFAULT_VLM_BASE_URL, model: str = DEFAULT_VLM_MODEL, *,
                 status_url: str = DEFAULT_STATUS_URL, timeout: httpx.Timeout | float = DEFAULT_VLM_TIMEOUT,
                 poll_seconds: int = 30, poll_interval: float = 1.0, poll_deadline: float = 300.0,
                 limiter: RateLimiter | None = None, transport: httpx.BaseTransport | None = None,
                 max_tokens: int = 512, inline_image_limit: int = INLINE_DATA_URL_LIMIT) -> None:
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        if timeout.read is not None and poll_seconds >= timeout.read:
            raise ValueError(f"poll_seconds ({poll_seconds}) must be shorter than the read timeout ({timeout.read}s)")
        self._api_key = api_key or ""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.limiter = limiter
        self.max_tokens = max_tokens
        self.inline_image_limit = inline_image_limit
        self.polling = NvcfPolling(status_url=status_url.rstrip("/"), interval=poll_interval, deadline=poll_deadline)
        # what a server may echo of the URLs' credentials (user info, Basic auth made of it, ?token=)
        self._url_secrets = (*url_secrets(self.base_url), *url_secrets(self.polling.status_url))
        headers = {"Accept": "application/json", "NVCF-POLL-SECONDS": str(int(poll_seconds))}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self._owns_http = transport is not None
        if transport is None:  # one client per account and endpoints in the process (see shared_client)
            self._http = shared_client(scope=(PROVIDER, self.base_url, self.polling.status_url), headers=headers,
                                       timeout=timeout, follow_redirects=False)
        else:
            self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport, follow_redirects=False)

    @classmethod
    def for_account(cls, api_key: str, *, rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
                    **kwargs: Any) -> VisionReviewer:
        """A reviewer sharing the account's token bucket with image generation (one per-account limit)."""
        return cls(api_key, limiter=shared_limiter(nvidia_account_key(api_key), rate_per_minute), **kwargs)

    def __repr__(self) -> str:
        return f"VisionReviewer(model={self.model!r}, url={mask_url(self.base_url)!r})"

    def __enter__(self) -> VisionReviewer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close a client built around a caller's transport; the shared client stays open for others."""
        if self._owns_http:
            self._http.close()

    def ask(self, image_path: str | Path, instruction: str, *, max_tokens: int | None = None,
            journal: PendingJournal | None = None) -> str:
        """One chat completion about one image; returns the answer text.

        With a `journal`, the call is a paid one never sent blindly twice (imagegen.providers.paid_requests):
        a lost answer raises OutcomeUnknown (counted as spent by the task, sent again at most once), and an
        NVCF request id kept from an earlier call is polled again instead of paying."""
        image_url = fitted_jpeg_data_url(image_path, limit=self.inline_image_limit)
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": instruction},
            ]}],
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": 0.2,
            "stream": False,
        }
        secrets = (self._api_key, *self._url_secrets)
        endpoint = f"{self.base_url}/chat/completions"
        key = request_key(endpoint, body)
        outcome = resume_nvcf_request(self._http, journal, key, provider=PROVIDER, polling=self.polling,
                                      secrets=secrets)
        if outcome is None:
            if self.limiter is not None:
                self.limiter.acquire()
            request = self._http.build_request("POST", endpoint, json=body)
            outcome = send_paid_nvcf(self._http, request, journal=journal, key=key, provider=PROVIDER,
                                     polling=self.polling, secrets=secrets, raise_for_status=lambda response:
                                     raise_for_provider_status(response, PROVIDER, limiter=self.limiter,
                                                               secrets=secrets, messages={
                                         404: f"model {self.model} not available for this account"}))
        if journal is not None:  # an answer, readable or not, is final: nothing is left to resume
            journal.remove(key)
        if outcome.payload is None:
            raise ProviderError(f"{PROVIDER}: result zip held no JSON answer", provider=PROVIDER)
        return chat_content(outcome.payload)

    def review(self, image_path: str | Path, brief_context: str | Mapping[str, Any],
               journal: PendingJournal | None = None) -> Review:
        """pass/fail with reasons and alt text; an unreadable answer is a failing review."""
        context = brief_context if isinstance(brief_context, str) else json.dumps(brief_context, sort_keys=True)
        answer = self.ask(image_path, _REVIEW_INSTRUCTION.format(context=context), journal=journal)
        review = parse_review(answer, self.model)
        if review.reasons == [UNPARSEABLE]:
            logger.warning("%s: %s gave an unparseable review (%d chars)", PROVIDER, self.model, len(answer))
        return review

    def alt_text(self, image_path: str | Path, prompt: str) -> str:
        """Alt text (<= 125 characters) for the image; the prompt template when the model says nothing."""
        answer = clean_alt_text(self.ask(image_path, _ALT_TEXT_INSTRUCTION.format(prompt=prompt), max_tokens=120))
        return answer or template_alt_text(prompt)
