"""neuroflash image API client and ImageGenerator (Prefect-free, synchronous httpx).

Follows shared/docs/provider-contracts.md section 3 and the neuroflash image guide (seed 004):
OAuth2 client credentials -> workspace -> quota check -> model list -> generate -> download ->
usage read-back, plus history, image-to-image edit and delete.

Spending rules this module keeps:
- the quota is read and checked *before* any generation or edit request;
- no call that spends quota is ever repeated by this client, except once after a 401 (the API
  did not run it); quota answers (403/429 naming a limit) raise QuotaExhausted, never a retry;
- a failure after the API has charged (unreadable answer, broken download) raises a
  non-transient ProviderError naming the image id, so a task retry does not pay twice.

Secrets: the client secret and the access token never appear in exception texts, reprs, logs or
metadata; any text that came from the network is passed through `_redact` first.

UNCONFIRMED parts of the API and what this client does about them:
- history fields beyond `output_image_url`/`output_image_id` and history pagination: extra and
  missing fields are tolerated; only the first page answered by GET /history is searched.
- the /edit answer shape: accepted as the generate shape `{"images": [...]}`, a history-style item
  (`output_image_url`, `output_image_id`), a list of either, or either wrapped in `data`/`item`/`image`.
  Relative image paths are downloaded from the API origin with auth; absolute URLs from wherever they
  point (without auth unless they point into the API).
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

from imagegen.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    QuotaExhausted,
    TransientProviderError,
)
from imagegen.models import FORMAT_CONTENT_TYPES, GeneratedImage, GenerationRequest, ImageRef, ProviderCapabilities
from imagegen.providers.base import MAX_PROVIDER_BYTES, save_image_bytes
from imagegen.providers.http import shared_client
from imagegen.ratelimit import shared_limiter

log = logging.getLogger(__name__)

PROVIDER = "neuroflash"
DEFAULT_API_URL = "https://app.neuroflash.com/api"
DEFAULT_TOKEN_URL = "https://id.neuroflash.com/oauth/v2/token"
DEFAULT_MODEL = "nano-banana-2"
DEFAULT_RATE_PER_MINUTE = 30.0

# Refresh the token this long before the server says it expires (clock skew, slow requests).
TOKEN_REFRESH_MARGIN_S = 60.0
# Used when a token answer carries no expires_in: short, so a wrong guess costs one token call.
FALLBACK_TOKEN_LIFETIME_S = 300.0
# Nano Banana (Gemini image) takes long prompts; 2000 keeps the folded negative prompt readable.
MAX_PROMPT_CHARS = 2000
# A 429 without Retry-After still means every caller on this account should slow down.
DEFAULT_RATE_LIMIT_PAUSE_S = 5.0
MAX_RETRY_AFTER_S = 3600.0
# Downloads cost no quota, so a flaky CDN is retried here instead of re-generating.
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_S = 0.5
MAX_ERROR_DETAIL_CHARS = 300

_RATE_LIMIT_WORDS = re.compile(r"rate[\s_-]?limit(ed|ing)?|too many requests", re.IGNORECASE)
_QUOTA_WORDS = re.compile(r"quota|credit|limit|exhaust|fair[\s_-]?use|insufficient|usage", re.IGNORECASE)
_TRANSIENT_STATUSES = frozenset({408, 425, 500, 502, 503, 504})

# Magic bytes -> Pillow format name, to compare what a server says it sent with what it sent.
_CONTENT_TYPE_FORMATS: dict[str, str] = {ct: fmt for fmt, ct in FORMAT_CONTENT_TYPES.items()}
_CONTENT_TYPE_FORMATS["image/jpg"] = "JPEG"
_OUTPUT_FORMAT_BY_PILLOW: dict[str, str] = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "AVIF": "avif"}


# --------------------------------------------------------------------------------------------
# API data models: lenient parsers, since only part of each answer is documented.


class Quota(BaseModel):
    """One entry of GET /usage-service/v1/workspaces/{id}/quotas (`data[0]`)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str | None = None
    workspace_id: str | None = None
    usage_type_key: str | None = None
    bonus_amount: int | None = None
    spillover_amount: int | None = None
    used_amount: int | None = None
    used_amount_daily: int | None = None
    available_amount: int | None = None
    limit_amount: int | None = None
    limit_amount_daily: int | None = None
    fair_use_limit_reached: bool = False

    @field_validator("fair_use_limit_reached", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    def daily_left(self) -> int | None:
        """Images left today under the daily limit, or None when there is no daily limit."""
        if self.limit_amount_daily is None:
            return None
        return self.limit_amount_daily - (self.used_amount_daily or 0)

    def total_left(self) -> int | None:
        """Images left in total: availableAmount, else limitAmount - usedAmount, else unknown."""
        if self.available_amount is not None:
            return self.available_amount
        if self.limit_amount is not None:
            return self.limit_amount - (self.used_amount or 0)
        return None

    def remaining(self) -> int | None:
        """Images that can still be generated now (both the daily and the total limit must have room).

        None means the answer carried no figure at all; the caller then relies on the API refusing.
        """
        if self.fair_use_limit_reached:
            return 0
        figures = [n for n in (self.total_left(), self.daily_left()) if n is not None]
        return max(0, min(figures)) if figures else None

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a run summary."""
        return {
            "remaining": self.remaining(),
            "available": self.available_amount,
            "used": self.used_amount,
            "used_daily": self.used_amount_daily,
            "limit": self.limit_amount,
            "limit_daily": self.limit_amount_daily,
            "fair_use_limit_reached": self.fair_use_limit_reached,
        }


class ImageModel(BaseModel):
    """One entry of GET /ds-prototypes/image_generation/models."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str | None = None
    provider: str | None = None
    description: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    max_images: int = 1
    aspect_ratios: list[str] = Field(default_factory=list)
    output_formats: list[str] = Field(default_factory=list)
    allowed: bool = True
    order: int | None = None

    @field_validator("capabilities", "aspect_ratios", "output_formats", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("allowed", mode="before")
    @classmethod
    def _null_is_allowed(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("max_images", mode="before")
    @classmethod
    def _null_is_one(cls, value: Any) -> Any:
        return 1 if value is None else value


class NeuroflashImage(BaseModel):
    """One produced image as the API describes it (generate `images[]`, or a history-style item)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    url: str = Field(validation_alias=AliasChoices("url", "output_image_url", "image_url"))
    image_id: str | None = Field(None, validation_alias=AliasChoices("image_id", "output_image_id", "imageId"))
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    file_size: int | None = None


class GenerationResult(BaseModel):
    """The answer of POST /ds-prototypes/image_generation/ (or /edit, read leniently)."""

    model_config = ConfigDict(extra="ignore")

    images: list[NeuroflashImage]
    batch_id: str | None = None
    prompt: str | None = None
    detail: Any = None


class HistoryItem(BaseModel):
    """One entry of GET /ds-prototypes/history; fields beyond the two documented ones are kept."""

    model_config = ConfigDict(extra="allow")

    output_image_url: str | None = None
    output_image_id: str | None = None
    batch_id: str | None = None


class DownloadedImage(BaseModel):
    """Bytes fetched for a NeuroflashImage, with what the server claimed about them."""

    data: bytes
    declared_content_types: list[str]

    def __repr__(self) -> str:  # never dump image bytes into a log line
        return f"DownloadedImage({len(self.data)} bytes, declared={self.declared_content_types})"


# --------------------------------------------------------------------------------------------
# Pure helpers


def parse_aspect_ratio(text: str) -> float:
    """'16:9' -> 1.777...; ValueError for anything that is not two positive numbers."""
    left, sep, right = text.partition(":")
    if not sep:
        raise ValueError(f"aspect ratio {text!r} is not of the form W:H")
    width, height = float(left), float(right)
    if width <= 0 or height <= 0:
        raise ValueError(f"aspect ratio {text!r} must be positive")
    return width / height


def nearest_aspect_ratio(width: int, height: int, allowed: list[str]) -> str:
    """The allowed ratio closest to width:height, compared on a log scale (so 2:1 and 1:2 are
    equally far from 1:1). Ties go to the earlier entry; entries that do not parse are skipped."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    target = math.log(width / height)
    best: tuple[float, str] | None = None
    for candidate in allowed:
        try:
            distance = abs(math.log(parse_aspect_ratio(candidate)) - target)
        except ValueError:
            continue
        if best is None or distance < best[0] - 1e-12:
            best = (distance, candidate)
    if best is None:
        raise ValueError(f"no usable aspect ratio in {allowed!r}")
    return best[1]


def sniff_image_format(data: bytes) -> str | None:
    """Pillow format name from magic bytes, or None when the bytes are no image we accept."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    return None


def relative_image_path(url: str) -> str:
    """The relative path /edit accepts ('/api/ds-prototypes/...'): a relative path is kept, an
    absolute URL is cut down to its path starting at /api/; anything else is refused, because
    the API answers an absolute URL with a 500."""
    if url.startswith("/") and not url.startswith("//"):
        return url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.path.startswith("/api/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    raise ProviderRequestInvalid(
        f"neuroflash /edit needs the relative image path from /history (e.g. /api/ds-prototypes/"
        f"image_generation/<id>/view), got {_describe_url(url)}", provider=PROVIDER)


def _describe_url(url: str) -> str:
    """A URL without its query string: presigned download URLs carry signatures there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def _error_detail(response: httpx.Response) -> str:
    """The API's error text: {"error","code"}, {"errors":[{field,message}]}, or the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:MAX_ERROR_DETAIL_CHARS]
    parts: list[str] = []
    if isinstance(body, dict):
        for key in ("error", "message", "title", "detail", "error_description"):
            if isinstance(body.get(key), (str, int, float)) and str(body[key]):
                parts.append(str(body[key]))
        if body.get("code") is not None:
            parts.append(f"(code {body['code']})")
        for item in body.get("errors") or []:
            if isinstance(item, dict):
                field = item.get("field") or item.get("loc") or "?"
                parts.append(f"{field}: {item.get('message') or item.get('msg') or item}")
            else:
                parts.append(str(item))
    text = " ".join(parts) if parts else str(body)
    return text[:MAX_ERROR_DETAIL_CHARS]


def _mentions_quota(detail: str) -> bool:
    """True when an error text is about a usage limit rather than request pacing."""
    return bool(_QUOTA_WORDS.search(_RATE_LIMIT_WORDS.sub(" ", detail)))


def _quota_message(needed: int, quota: Quota) -> str:
    left = quota.remaining()
    why = " (fair-use limit reached)" if quota.fair_use_limit_reached else ""
    return (f"neuroflash: need {needed} images, {left} left today{why} "
            f"(daily limit resets at midnight UTC)")


class Limiter(Protocol):
    """What the client needs from imagegen.ratelimit.TokenBucket (tests pass their own)."""

    def acquire(self) -> float: ...

    def pause_for(self, seconds: float) -> None: ...


# --------------------------------------------------------------------------------------------
# The client


class NeuroflashClient:
    """One neuroflash API client (one OAuth client, one workspace). Thread-safe.

    `limiter` paces every API call (token calls excepted); by default the process-wide bucket
    `neuroflash:{client_id}` shared with every other client of the same account.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | SecretStr,
        api_url: str = DEFAULT_API_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        workspace_id: str | None = None,
        timeout: float | httpx.Timeout = 120.0,
        limiter: Limiter | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        download_timeout: float = 60.0,
        max_download_bytes: int = MAX_PROVIDER_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not client_id:
            raise ValueError("neuroflash client_id is empty")
        self.client_id = client_id
        self._secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        if not self._secret.get_secret_value():
            raise ValueError("neuroflash client_secret is empty")
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self._workspace_id: str | None = workspace_id
        self._limiter = limiter or shared_limiter(f"neuroflash:{client_id}", rate_per_minute)
        self._clock = clock
        self._sleep = sleep
        self.download_timeout = download_timeout
        self.max_download_bytes = max_download_bytes
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._owns_http = transport is not None
        if transport is None:
            # one client per API client and endpoints in the process (see shared_client); the secret
            # only enters the key's keyed hash, so two API clients never share a cookie jar
            self._http = shared_client(scope=(PROVIDER, self.api_url, self.token_url), account=f"{client_id}\n"
                                       f"{self._secret.get_secret_value()}", headers={"Accept": "application/json"},
                                       timeout=timeout, follow_redirects=True)
        else:
            self._http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True,
                                      headers={"Accept": "application/json"})
        # SecretStr even in memory: vars()/pickle/debugger dumps of the client stay masked.
        self._token: SecretStr | None = None
        self._token_valid_until = 0.0
        self._token_lock = threading.Lock()
        self._workspace_lock = threading.Lock()
        self._models: list[ImageModel] | None = None
        self._batch_ids: set[str] = set()
        self.token_fetches = 0
        self.quota_first: Quota | None = None
        self.quota_last: Quota | None = None

    def __repr__(self) -> str:
        return (f"NeuroflashClient(client_id={self.client_id!r}, api_url={self.api_url!r}, "
                f"workspace_id={self._workspace_id!r})")

    def close(self) -> None:
        """Close a client built around a caller's transport; the shared client stays open for others."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "NeuroflashClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- secrets ------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        """Remove the secret and the current token from text that may have come off the wire."""
        current = self._token.get_secret_value() if self._token else None
        for secret in (self._secret.get_secret_value(), current):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, cls: type[ProviderError], message: str, *, status: int | None = None,
               retry_after: float | None = None) -> ProviderError:
        return cls(self._redact(message), provider=PROVIDER, status=status, retry_after=retry_after)

    # ---- token ----------------------------------------------------------------------------

    def _access_token(self) -> str:
        """The cached token, fetched anew when missing or about to expire."""
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_valid_until:
                self._fetch_token()
            assert self._token is not None
            return self._token.get_secret_value()

    def _forget_token(self, rejected: str) -> None:
        """Drop the token the API just refused (unless another thread already replaced it)."""
        with self._token_lock:
            if self._token is not None and self._token.get_secret_value() == rejected:
                self._token = None

    def _fetch_token(self) -> None:
        """POST the client credentials (form-encoded). Not rate limited: it is not an API call."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret.get_secret_value(), "scope": "openid"}
        try:
            response = self._http.post(self.token_url, data=form)
        except httpx.TimeoutException:
            raise self._error(TransientProviderError, "neuroflash token request timed out") from None
        except httpx.TransportError as exc:
            raise self._error(TransientProviderError,
                              f"neuroflash token endpoint unreachable ({type(exc).__name__})") from None
        self.token_fetches += 1
        status = response.status_code
        if status in (400, 401, 403):
            raise self._error(
                ProviderAuthError,
                f"neuroflash token endpoint rejected client_id {self.client_id!r} ({status}): "
                f"{_error_detail(response)}; check the API client's ID and secret",
                status=status)
        if status == 429 or status in _TRANSIENT_STATUSES or status >= 500:
            raise self._error(TransientProviderError, f"neuroflash token endpoint answered {status}",
                              status=status, retry_after=_parse_retry_after(response.headers.get("retry-after")))
        if status != 200:
            raise self._error(ProviderAuthError, f"neuroflash token endpoint answered {status}: "
                                                 f"{_error_detail(response)}", status=status)
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise self._error(ProviderAuthError, "neuroflash token answer carries no access_token") from None
        if not isinstance(token, str) or not token:
            raise self._error(ProviderAuthError, "neuroflash token answer carries an empty access_token")
        try:
            lifetime = float(body.get("expires_in") or FALLBACK_TOKEN_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = FALLBACK_TOKEN_LIFETIME_S
        # Short-lived tokens (tests, odd servers) keep at least half their life.
        margin = min(TOKEN_REFRESH_MARGIN_S, lifetime / 2)
        self._token = SecretStr(token)
        self._token_valid_until = self._clock() + lifetime - margin
        log.debug("neuroflash token fetched for client_id %s, valid for %.0f s", self.client_id, lifetime)

    # ---- HTTP plumbing --------------------------------------------------------------------

    def _api_origin(self) -> str:
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc}"

    def _is_api_url(self, url: str) -> bool:
        return url.startswith(self.api_url + "/")

    def _resolve(self, path_or_url: str) -> str:
        """An absolute URL for an API path ('/ds-prototypes/...'), a history path ('/api/...')
        or an absolute URL."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        api_prefix = urlsplit(self.api_url).path.rstrip("/")
        if api_prefix and path_or_url.startswith(api_prefix + "/"):
            return self._api_origin() + path_or_url
        return self.api_url + path_or_url

    def _headers(self, token: str, with_workspace: bool) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if with_workspace:
            headers["x-workspace-id"] = self.workspace_id
        return headers

    def _request(self, method: str, path_or_url: str, *, json: Any = None, params: dict | None = None,
                 with_workspace: bool = True, stream: bool = False, timeout: float | None = None,
                 accept: str | None = None) -> httpx.Response:
        """One API call: limiter, bearer token, one re-auth after a 401, status mapped to our errors.

        A streamed response is returned open; the caller closes it.
        """
        url = self._resolve(path_or_url)
        where = f"{method} {urlsplit(url).path}"
        for attempt in (1, 2):
            token = self._access_token()
            headers = self._headers(token, with_workspace)
            if accept:
                headers["Accept"] = accept
            self._limiter.acquire()
            request = self._http.build_request(method, url, json=json, params=params, headers=headers,
                                               timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException:
                raise self._error(TransientProviderError, f"neuroflash {where} timed out") from None
            except httpx.TransportError as exc:
                raise self._error(TransientProviderError,
                                  f"neuroflash {where} failed in transport ({type(exc).__name__}: {exc})") from None
            if response.status_code != 401:
                self._raise_for_status(response, where)
                return response
            response.close()
            self._forget_token(token)
            if attempt == 1:
                log.info("neuroflash %s answered 401; fetching a new token once", where)
        raise self._error(ProviderAuthError,
                          f"neuroflash {where} answered 401 even with a freshly issued token; "
                          f"check the API client's access to workspace {self._workspace_id!r}", status=401)

    def _raise_for_status(self, response: httpx.Response, where: str) -> None:
        """Map a non-2xx answer onto the project's error classes (see module docstring)."""
        status = response.status_code
        if status < 400:
            return
        response.read()
        response.close()
        detail = _error_detail(response)
        said = f"neuroflash {where} answered {status}: {detail}"
        if status in (400, 422):
            raise self._error(ProviderRequestInvalid, said, status=status)
        if status == 404:
            raise self._error(ProviderRequestInvalid, said + " (unknown id or route)", status=status)
        if status == 403:
            if _mentions_quota(detail):
                raise self._error(QuotaExhausted, said + " (usage limit; not retried)", status=status)
            raise self._error(ProviderAuthError, said + " (the API client lacks permission)", status=status)
        if status == 429:
            if _mentions_quota(detail):
                raise self._error(QuotaExhausted, said + " (quota; not retried)", status=status)
            retry_after = _parse_retry_after(response.headers.get("retry-after"))
            # Everyone on this account waits, not only the caller that saw the 429.
            self._limiter.pause_for(retry_after if retry_after is not None else DEFAULT_RATE_LIMIT_PAUSE_S)
            raise self._error(TransientProviderError, said + " (rate limited)", status=status,
                              retry_after=retry_after)
        if status in _TRANSIENT_STATUSES or status >= 500:
            raise self._error(TransientProviderError, said, status=status,
                              retry_after=_parse_retry_after(response.headers.get("retry-after")))
        raise self._error(ProviderRequestInvalid, said, status=status)

    def _json(self, response: httpx.Response, where: str, *, spent: str | None = None) -> Any:
        """Decode a JSON body. When the call already spent quota the error says so and is not
        transient, so no retry pays twice."""
        try:
            return response.json()
        except ValueError:
            if spent:
                raise self._error(ProviderError, f"neuroflash {where} answered 200 with a body that is not "
                                                 f"JSON after {spent}; not retried (see /history)") from None
            raise self._error(TransientProviderError,
                              f"neuroflash {where} answered 200 with a body that is not JSON") from None

    # ---- workspace, quota, models ---------------------------------------------------------

    @property
    def workspace_id(self) -> str:
        """The configured workspace, else the first one the API client can see (fetched once)."""
        if self._workspace_id is None:
            with self._workspace_lock:
                if self._workspace_id is None:
                    self._workspace_id = self._first_workspace_id()
        return self._workspace_id

    def _first_workspace_id(self) -> str:
        where = "GET /workspace-service/v1/workspaces"
        body = self._json(self._request("GET", "/workspace-service/v1/workspaces", with_workspace=False), where)
        workspaces = (body.get("_embedded") or {}).get("workspaces") if isinstance(body, dict) else None
        for workspace in workspaces or []:
            if isinstance(workspace, dict) and workspace.get("id"):
                log.info("neuroflash: using workspace %s", workspace["id"])
                return str(workspace["id"])
        raise self._error(ProviderAuthError, f"neuroflash API client {self.client_id!r} sees no workspace; "
                                             f"grant it one or set workspace_id")

    def quota(self) -> Quota:
        """The workspace's image quota now (GET .../quotas?usageTypeKey=images, `data[0]`)."""
        workspace = self.workspace_id
        path = f"/usage-service/v1/workspaces/{quote(workspace, safe='')}/quotas"
        body = self._json(self._request("GET", path, params={"usageTypeKey": "images"}), f"GET {path}")
        entries = body.get("data") if isinstance(body, dict) else None
        entries = [e for e in entries or [] if isinstance(e, dict)]
        # Prefer the entry that says it is the images quota; the filter should make it the only one.
        entries.sort(key=lambda e: e.get("usageTypeKey") not in (None, "images"))
        if not entries:
            # No images quota at all: the workspace has nothing to spend.
            quota = Quota(available_amount=0, usage_type_key="images", workspace_id=workspace)
        else:
            quota = Quota.model_validate(entries[0])
        if self.quota_first is None:
            self.quota_first = quota
        self.quota_last = quota
        return quota

    def ensure_quota(self, needed: int) -> Quota:
        """Raise QuotaExhausted unless `needed` images fit in both the daily and the total quota."""
        quota = self.quota()
        left = quota.remaining()
        if left is None:
            log.warning("neuroflash quota answer has no usable figures; relying on the API to refuse")
        elif left < needed:
            raise self._error(QuotaExhausted, _quota_message(needed, quota))
        return quota

    def list_models(self, refresh: bool = False) -> list[ImageModel]:
        """GET /ds-prototypes/image_generation/models (cached: the list does not change mid-run)."""
        if self._models is None or refresh:
            where = "GET /ds-prototypes/image_generation/models"
            body = self._json(self._request("GET", "/ds-prototypes/image_generation/models"), where)
            if isinstance(body, dict):  # tolerate a wrapped list
                body = body.get("models") or body.get("data") or body.get("items") or []
            if not isinstance(body, list):
                raise self._error(ProviderError, f"neuroflash {where} did not answer a list")
            models = [ImageModel.model_validate(m) for m in body if isinstance(m, dict) and m.get("id")]
            self._models = sorted(models, key=lambda m: (m.order is None, m.order or 0))
        return list(self._models)

    def model(self, model_id: str) -> ImageModel:
        """The model entry, or ProviderRequestInvalid listing the usable ones."""
        models = self.list_models()
        for entry in models:
            if entry.id == model_id:
                return entry
        usable = [m.id for m in models if m.allowed]
        raise self._error(ProviderRequestInvalid, f"neuroflash model {model_id!r} unknown; allowed values: {usable}")

    def validate(self, model: str, aspect_ratio: str, output_format: str, num_images: int = 1) -> ImageModel:
        """Check a generate request against the model list before anything is spent."""
        entry = self.model(model)
        usable = [m.id for m in self.list_models() if m.allowed]
        if not entry.allowed:
            raise self._error(ProviderRequestInvalid,
                              f"neuroflash model {model!r} is not allowed for this workspace; allowed values: {usable}")
        if "text2image" not in entry.capabilities:
            raise self._error(ProviderRequestInvalid,
                              f"neuroflash model {model!r} lacks capability 'text2image' "
                              f"(has {entry.capabilities}); models with it: "
                              f"{[m.id for m in self.list_models() if m.allowed and 'text2image' in m.capabilities]}")
        if aspect_ratio not in entry.aspect_ratios:
            raise self._error(ProviderRequestInvalid, f"neuroflash aspect_ratio {aspect_ratio!r} not offered by "
                                                      f"{model!r}; allowed values: {entry.aspect_ratios}")
        if output_format not in entry.output_formats:
            raise self._error(ProviderRequestInvalid, f"neuroflash output_format {output_format!r} not offered by "
                                                      f"{model!r}; allowed values: {entry.output_formats}")
        if not 1 <= num_images <= entry.max_images:
            raise self._error(ProviderRequestInvalid, f"neuroflash num_images {num_images} out of range for "
                                                      f"{model!r}; allowed values: 1..{entry.max_images}")
        return entry

    # ---- generate, history, edit, delete --------------------------------------------------

    def generate(self, prompt: str, model: str, aspect_ratio: str, output_format: str,
                 num_images: int = 1) -> GenerationResult:
        """Validate, check the quota, then POST /ds-prototypes/image_generation/ (never repeated)."""
        self.validate(model, aspect_ratio, output_format, num_images)
        self.ensure_quota(num_images)
        where = "POST /ds-prototypes/image_generation/"
        payload = {"prompt": prompt, "model": model, "num_images": num_images,
                   "aspect_ratio": aspect_ratio, "output_format": output_format}
        response = self._request("POST", "/ds-prototypes/image_generation/", json=payload)
        body = self._json(response, where, spent=f"generating {num_images} image(s)")
        result = self._parse_images(body, where)
        if result.batch_id:
            self._batch_ids.add(result.batch_id)
        return result

    def _parse_images(self, body: Any, where: str) -> GenerationResult:
        """Read a generate-shaped or history-shaped answer into a GenerationResult (see docstring)."""
        candidates: list[Any] = [body]
        if isinstance(body, dict):
            candidates += [body.get(key) for key in ("data", "item", "result", "image") if body.get(key)]
        for candidate in candidates:
            if isinstance(candidate, dict) and isinstance(candidate.get("images"), list):
                images = [NeuroflashImage.model_validate(i) for i in candidate["images"] if _has_url(i)]
                if images:
                    return GenerationResult(images=images, batch_id=candidate.get("batch_id"),
                                            prompt=candidate.get("prompt"), detail=candidate.get("detail"))
            items = candidate.get("items") if isinstance(candidate, dict) else candidate
            if isinstance(items, list) and any(_has_url(i) for i in items):
                images = [NeuroflashImage.model_validate(i) for i in items if _has_url(i)]
                first = next(i for i in items if _has_url(i))
                return GenerationResult(images=images, batch_id=first.get("batch_id"), prompt=first.get("prompt"))
            if _has_url(candidate):
                return GenerationResult(images=[NeuroflashImage.model_validate(candidate)],
                                        batch_id=candidate.get("batch_id"), prompt=candidate.get("prompt"))
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        detail = body.get("detail") if isinstance(body, dict) else None
        said = f", detail: {str(detail)[:MAX_ERROR_DETAIL_CHARS]}" if detail else ""
        raise self._error(ProviderError, f"neuroflash {where} answered without any image (keys: {keys}{said}); "
                                         f"quota may be spent, not retried (see /history)")

    def history(self) -> list[HistoryItem]:
        """GET /ds-prototypes/history -> items (first page only; pagination is undocumented)."""
        where = "GET /ds-prototypes/history"
        body = self._json(self._request("GET", "/ds-prototypes/history"), where)
        items = body.get("items") if isinstance(body, dict) else body
        return [HistoryItem.model_validate(i) for i in items or [] if isinstance(i, dict)]

    def find_history_item(self, image_id: str) -> HistoryItem:
        """The history entry whose output_image_id is `image_id`."""
        for item in self.history():
            if item.output_image_id == image_id or (item.model_extra or {}).get("image_id") == image_id:
                return item
        raise self._error(ProviderRequestInvalid, f"neuroflash image_id {image_id!r} is not in the workspace "
                                                  f"history (deleted, or beyond its first page)")

    def edit(self, image_id: str, prompt: str) -> GenerationResult:
        """Image-to-image: find `image_id` in /history and POST /edit with its *relative* path."""
        item = self.find_history_item(image_id)
        source = item.output_image_url or f"/api/ds-prototypes/image_generation/{quote(image_id, safe='')}/view"
        return self.edit_path(relative_image_path(source), prompt)

    def edit_path(self, image_path: str, prompt: str) -> GenerationResult:
        """POST /ds-prototypes/edit {prompt, image_urls: [relative path]} after a quota check."""
        path = relative_image_path(image_path)  # an absolute URL would get a 500
        self.ensure_quota(1)
        where = "POST /ds-prototypes/edit"
        response = self._request("POST", "/ds-prototypes/edit", json={"prompt": prompt, "image_urls": [path]})
        body = self._json(response, where, spent="an edit")
        result = self._parse_images(body, where)
        if result.batch_id:
            self._batch_ids.add(result.batch_id)
        return result

    def delete_image(self, image_id: str) -> None:
        """DELETE /ds-prototypes/history/{output_image_id}: the image id, never a batch id."""
        if image_id in self._batch_ids:
            raise self._error(ProviderRequestInvalid, f"neuroflash delete needs an image id; {image_id!r} is a "
                                                      f"batch_id (use each image's image_id)")
        self._request("DELETE", f"/ds-prototypes/history/{quote(image_id, safe='')}").close()

    # ---- downloads ------------------------------------------------------------------------

    def download(self, image: NeuroflashImage) -> DownloadedImage:
        """Fetch an image's bytes, retrying transient failures (downloads spend no quota)."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                return self._download_once(image)
            except TransientProviderError:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise
                self._sleep(DOWNLOAD_BACKOFF_S * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _download_once(self, image: NeuroflashImage) -> DownloadedImage:
        url = self._resolve(image.url)
        shown = _describe_url(url)
        if self._is_api_url(url):
            # History paths live behind the API's auth (and count against its rate).
            response = self._request("GET", url, stream=True, timeout=self.download_timeout, accept="image/*")
        else:
            # A storage/CDN URL: never send our bearer token to another host.
            try:
                response = self._http.send(self._http.build_request("GET", url, timeout=self.download_timeout,
                                                                    headers={"Accept": "image/*"}), stream=True)
            except httpx.TimeoutException:
                raise self._error(TransientProviderError, f"neuroflash image download {shown} timed out") from None
            except httpx.TransportError as exc:
                raise self._error(TransientProviderError,
                                  f"neuroflash image download {shown} failed ({type(exc).__name__})") from None
            self._raise_for_status(response, f"image download {shown}")
        try:
            data = self._read_capped(response, shown)
        finally:
            response.close()
        declared = [ct for ct in (image.content_type, response.headers.get("content-type")) if ct]
        return DownloadedImage(data=data, declared_content_types=declared)

    def _read_capped(self, response: httpx.Response, shown: str) -> bytes:
        """Read a streamed body, stopping at max_download_bytes and at download_timeout overall."""
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_download_bytes:
            raise self._error(ProviderError, f"neuroflash image {shown} is {length} bytes, over the "
                                             f"{self.max_download_bytes} byte cap")
        deadline = time.monotonic() + self.download_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_download_bytes:
                    raise self._error(ProviderError, f"neuroflash image {shown} exceeds the "
                                                     f"{self.max_download_bytes} byte cap")
                if time.monotonic() > deadline:
                    raise self._error(TransientProviderError, f"neuroflash image download {shown} took longer "
                                                              f"than {self.download_timeout} s")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise self._error(TransientProviderError, f"neuroflash image download {shown} timed out") from None
        except httpx.TransportError as exc:
            raise self._error(TransientProviderError,
                              f"neuroflash image download {shown} broke off ({type(exc).__name__})") from None
        return b"".join(chunks)

    def save_downloaded(self, downloaded: DownloadedImage, dest_dir: Path, *, image_id: str | None) -> ImageRef:
        """Check the bytes are the image type the server declared, then store them verified."""
        actual = sniff_image_format(downloaded.data)
        label = f"image {image_id}" if image_id else "image"
        if actual is None:
            raise self._error(ProviderError, f"neuroflash {label}: downloaded bytes are not an image "
                                             f"(declared {downloaded.declared_content_types})")
        for declared in downloaded.declared_content_types:
            expected = _CONTENT_TYPE_FORMATS.get(declared.split(";")[0].strip().lower())
            if declared.lower().startswith("image/") and expected != actual:
                raise self._error(ProviderError, f"neuroflash {label}: declared content type {declared!r} "
                                                 f"but the bytes are {actual}")
        return save_image_bytes(downloaded.data, dest_dir, provider=PROVIDER)

    def usage_report(self) -> dict[str, Any]:
        """Quota at the first read of this client and now, for a run summary."""
        before = self.quota_first
        after = self.quota()
        spent = None
        if before is not None and before.used_amount is not None and after.used_amount is not None:
            spent = after.used_amount - before.used_amount
        return {"provider": PROVIDER, "workspace_id": self._workspace_id,
                "before": before.summary() if before else None, "after": after.summary(), "images_spent": spent}


def _has_url(item: Any) -> bool:
    return isinstance(item, dict) and any(isinstance(item.get(k), str) and item.get(k)
                                          for k in ("url", "output_image_url", "image_url"))


# --------------------------------------------------------------------------------------------
# ImageGenerator


class NeuroflashGenerator:
    """ImageGenerator over NeuroflashClient: one image per generate(), nearest offered aspect ratio.

    neuroflash takes no seed and no negative prompt: the request's seed is recorded but not
    honoured (`metadata["seed_honoured"] = False`) and negatives are folded into the prompt.
    """

    name = PROVIDER

    def __init__(self, client: NeuroflashClient, model: str = DEFAULT_MODEL, output_format: str | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.model = model
        self.output_format = output_format
        self._clock = clock
        self.images_generated = 0
        self.images_edited = 0

    def __repr__(self) -> str:
        return f"NeuroflashGenerator(model={self.model!r}, client={self.client!r})"

    def capabilities(self, model: str | None = None) -> ProviderCapabilities:
        entry = self.client.model(model or self.model)
        return ProviderCapabilities(max_prompt_chars=MAX_PROMPT_CHARS, negative_prompt="fold",
                                    aspect_ratios=list(entry.aspect_ratios), supports_edit=True,
                                    max_side=4096)

    def ensure_quota(self, needed: int) -> Quota:
        """Call before a run's generate stage with the number of images planned."""
        return self.client.ensure_quota(needed)

    def usage_report(self) -> dict[str, Any]:
        report = self.client.usage_report()
        report.update(images_generated=self.images_generated, images_edited=self.images_edited)
        return report

    def _prompt(self, request: GenerationRequest) -> str:
        """The prompt with any negatives folded in (the API has no negative prompt field)."""
        prompt = request.prompt.strip()
        if request.negative_prompt.strip():
            prompt = f"{prompt}\nAvoid: {request.negative_prompt.strip()}"
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ProviderRequestInvalid(f"neuroflash prompt is {len(prompt)} characters (negatives folded in); "
                                         f"allowed values: at most {MAX_PROMPT_CHARS}", provider=PROVIDER)
        return prompt

    def _output_format(self, request: GenerationRequest, entry: ImageModel) -> str:
        """The block's fixed format, else the request's; a format the model lacks falls back to
        png (lossless, re-encoded later) rather than failing the asset."""
        wanted = self.output_format or _OUTPUT_FORMAT_BY_PILLOW.get(request.output_format, "png")
        if wanted in entry.output_formats or not entry.output_formats:
            return wanted
        return "png" if "png" in entry.output_formats else entry.output_formats[0]

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        started = self._clock()
        model_id = request.model or self.model
        entry = self.client.model(model_id)
        try:
            aspect = nearest_aspect_ratio(request.width, request.height, entry.aspect_ratios)
        except ValueError as exc:
            raise ProviderRequestInvalid(f"neuroflash aspect_ratio: cannot plan {request.width}x{request.height} "
                                         f"for {model_id!r} ({exc})", provider=PROVIDER) from None
        output_format = self._output_format(request, entry)
        prompt = self._prompt(request)
        result = self.client.generate(prompt, model_id, aspect, output_format, num_images=1)
        self.images_generated += 1
        image = result.images[0]
        ref = self._fetch(image, dest_dir, spent="generated")
        metadata = {"seed_honoured": False, "image_id": image.image_id, "batch_id": result.batch_id,
                    "aspect_ratio": aspect, "output_format": output_format,
                    "output_format_requested": request.output_format,
                    "negative_prompt": "folded" if request.negative_prompt.strip() else "none"}
        return GeneratedImage(image=ref, provider=PROVIDER, model=model_id, seed=request.seed,
                              generation_ms=int((self._clock() - started) * 1000), metadata=metadata)

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest,
             dest_dir: Path) -> GeneratedImage:
        """Edit an image neuroflash made earlier: `request.spec["neuroflash_image_id"]` names it
        (the API has no upload, so a local file cannot be edited)."""
        source_id = request.spec.get("neuroflash_image_id")
        if not source_id:
            raise ProviderRequestInvalid(
                "neuroflash edit needs request.spec['neuroflash_image_id'] (the image_id in the generate "
                "metadata); neuroflash cannot edit an image it did not make", provider=PROVIDER)
        started = self._clock()
        result = self.client.edit(str(source_id), instruction)
        self.images_edited += 1
        image = result.images[0]
        ref = self._fetch(image, dest_dir, spent="edited")
        metadata = {"seed_honoured": False, "image_id": image.image_id, "batch_id": result.batch_id,
                    "edited_from_image_id": source_id, "source_sha256": source.sha256}
        return GeneratedImage(image=ref, provider=PROVIDER, model=request.model or self.model, seed=request.seed,
                              generation_ms=int((self._clock() - started) * 1000), metadata=metadata)

    def _fetch(self, image: NeuroflashImage, dest_dir: Path, *, spent: str) -> ImageRef:
        """Download and verify; a failure here is *not* transient: the image is already paid for."""
        try:
            return self.client.save_downloaded(self.client.download(image), dest_dir, image_id=image.image_id)
        except ProviderError as exc:
            raise ProviderError(f"neuroflash {spent} image {image.image_id} (quota spent) but could not fetch it: "
                                f"{exc}; not retried, the image stays in neuroflash history",
                                provider=PROVIDER, status=exc.status) from None


__all__ = [
    "DEFAULT_MODEL", "GenerationResult", "HistoryItem", "ImageModel", "NeuroflashClient", "NeuroflashGenerator",
    "NeuroflashImage", "Quota", "nearest_aspect_ratio", "relative_image_path", "sniff_image_format",
]
