"""HTTP plumbing shared by the provider clients: error mapping, NVCF 202 polling, inline image payloads.

Nothing here knows a particular model. Every message built here names the provider, the HTTP
status and the endpoint (without query string: presigned URLs carry signatures) and passes through
`redact()`, so an API key a server echoes back never reaches an exception or a log line.
"""

from __future__ import annotations

import atexit
import base64
import email.utils
import hashlib
import hmac
import io
import json
import logging
import os
import secrets as _secrets
import ssl
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from imagegen.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    TransientProviderError,
    is_transient_status,
)
from imagegen.providers.base import MAX_PROVIDER_BYTES
from imagegen.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

REDACTED = "***"
_MAX_DETAIL_CHARS = 300
# A presigned NVCF result zip is > 5 MiB by definition; cap what we are willing to download.
MAX_ZIP_BYTES = 4 * MAX_PROVIDER_BYTES


# --------------------------------------------------------------------------- secrets

def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every non-trivial secret replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


# --------------------------------------------------------------------------- shared HTTP clients
#
# Every provider task builds its generator anew (a block's get_generator()), and each used to build a
# new httpx.Client, whose default SSL context loads certifi's CA bundle: ~20 ms of CPU per client here
# (more on slower machines), and no TLS connection survived from one task to the next. Instead, one
# httpx.Client per configuration lives for the process and is shared by every task thread (httpx
# clients are thread-safe for requests; the connection pool locks itself).
#
# The configuration includes the credentials (NVIDIA puts the API key in the client's default
# headers; a client's cookie jar belongs to one account too), so the cache key is a keyed hash
# (HMAC with a per-process random key) of the whole configuration: no secret, and nothing a secret
# could be recovered from by guessing, sits in a dict key, a log line or a repr.

_MAX_SHARED_CLIENTS = 32  # configurations alive at once; a test session swaps emulators far more often
_FINGERPRINT_KEY = _secrets.token_bytes(32)
_ENVIRONMENT_INPUTS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                       "http_proxy", "https_proxy", "all_proxy", "no_proxy")
_shared_lock = threading.Lock()
_shared_clients: OrderedDict[str, httpx.Client] = OrderedDict()
_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR), built once
    per process and per value of those variables. An SSLContext may be shared by any number of clients
    and threads once configured."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _shared_lock:
        context = _ssl_contexts.get(key)
        if context is None:
            context = _ssl_contexts[key] = httpx.create_ssl_context()
        return context


def config_fingerprint(*parts: Any) -> str:
    """A keyed hash of `parts` (which may include secrets): equal for equal parts within this process,
    useless to anyone who reads it."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hmac.new(_FINGERPRINT_KEY, text.encode("utf-8"), hashlib.sha256).hexdigest()


def shared_client(*, scope: Iterable[str | None], headers: Mapping[str, str], timeout: httpx.Timeout,
                  follow_redirects: bool, account: str | None = None) -> httpx.Client:
    """The process's httpx.Client for this configuration, created on first use.

    `scope` names what the client talks to (provider name, base URLs); `account` is the credential
    the client acts for when it is not in `headers` (a neuroflash client secret). Both, the headers,
    the timeout and the proxy/CA environment variables all go into the key, so a test that points the
    environment at another emulator or key gets another client. Callers must not close the client.
    """
    environment = {name: os.environ.get(name) for name in _ENVIRONMENT_INPUTS}
    key = config_fingerprint(list(scope), dict(headers), timeout.as_dict(), follow_redirects, account, environment)
    with _shared_lock:
        client = _shared_clients.get(key)
        if client is not None:
            _shared_clients.move_to_end(key)
            return client
    # built outside the lock (a client takes milliseconds); if two threads race, one client wins
    built = httpx.Client(headers=dict(headers), timeout=timeout, follow_redirects=follow_redirects,
                         verify=shared_ssl_context())
    with _shared_lock:
        client = _shared_clients.setdefault(key, built)
        _shared_clients.move_to_end(key)
        while len(_shared_clients) > _MAX_SHARED_CLIENTS:
            # not closed: a generator built earlier may still be using it; its sockets close with it
            _shared_clients.popitem(last=False)
    if client is not built:
        built.close()
    return client


def shared_client_count() -> int:
    """How many shared clients are alive (for tests and diagnostics)."""
    with _shared_lock:
        return len(_shared_clients)


def _forget_after_fork() -> None:
    """A forked child must not use its parent's connections (two processes on one TLS stream), nor a
    lock some parent thread held at the fork: it starts with none. Nothing is closed: the sockets are
    still the parent's."""
    global _shared_lock
    _shared_lock = threading.Lock()
    _shared_clients.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def close_shared_clients() -> None:
    """Close every shared client (at exit; tests may call it to start from none)."""
    with _shared_lock:
        clients = list(_shared_clients.values())
        _shared_clients.clear()
    for client in clients:
        client.close()


# --------------------------------------------------------------------------- response details

def endpoint_label(request: httpx.Request) -> str:
    """'POST http://host/path' without the query string (presigned URLs carry signatures)."""
    return f"{request.method} {request.url.copy_with(query=None, fragment=None)}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail_from_json(body: Any) -> str:
    """The human part of the error shapes our providers use (problem+json, FastAPI, {error}, {errors})."""
    if not isinstance(body, dict):
        return json.dumps(body)[:_MAX_DETAIL_CHARS]
    parts: list[str] = []
    for key in ("title", "detail", "error", "message", "msg"):
        value = body.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
        elif isinstance(value, list):  # FastAPI 422: {"detail": [{"loc": [...], "msg": ...}]}
            for item in value:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    msg = item.get("msg") or item.get("message") or ""
                    parts.append(f"{loc}: {msg}" if loc else str(msg))
    errors = body.get("errors")
    if isinstance(errors, list):  # {"errors": [{"field", "message"}]}
        for item in errors:
            if isinstance(item, dict):
                where = item.get("field") or item.get("loc") or ""
                parts.append(f"{where}: {item.get('message', '')}" if where else str(item.get("message", "")))
    return "; ".join(parts) if parts else json.dumps(body)[:_MAX_DETAIL_CHARS]


def problem_detail(response: httpx.Response, secrets: Iterable[str | None] = ()) -> str:
    """A short, redacted description of an error body (JSON shapes understood, text truncated)."""
    try:
        text = response.text
    except Exception:  # undecodable body: say nothing rather than fail while reporting a failure
        return ""
    try:
        detail = _detail_from_json(json.loads(text)) if text.strip() else ""
    except ValueError:
        detail = " ".join(text.split())
    return redact(detail[:_MAX_DETAIL_CHARS], secrets)


# --------------------------------------------------------------------------- status mapping

def raise_for_provider_status(
    response: httpx.Response,
    provider: str,
    *,
    limiter: TokenBucket | None = None,
    secrets: Iterable[str | None] = (),
    messages: Mapping[int, str] | None = None,
) -> None:
    """Raise the imagegen error a non-2xx answer means; return quietly for 2xx.

    401/403 -> ProviderAuthError; 400/404/413/422 and other 4xx -> ProviderRequestInvalid (with the
    body's detail); 429 -> TransientProviderError with `retry_after`, which also pauses `limiter` so
    every caller sharing the account waits; 408/425/5xx -> TransientProviderError.
    `messages` replaces the lead text for a status (e.g. 404 -> "model not enabled ...").
    Providers whose quota answers look like 403/429 should check for those before calling this.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    secrets = tuple(secrets)
    detail = problem_detail(response, secrets)
    lead = (messages or {}).get(status) or _default_lead(status)
    message = f"{provider}: {lead} (HTTP {status} from {endpoint_label(response.request)})"
    if detail:
        message += f": {detail}"
    message = redact(message, secrets)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            message += f"; retry after {retry_after:g}s"
            if limiter is not None:
                limiter.pause_for(retry_after)
        raise TransientProviderError(message, provider=provider, status=status, retry_after=retry_after)
    if status in (401, 403):
        raise ProviderAuthError(message, provider=provider, status=status)
    if is_transient_status(status):
        raise TransientProviderError(message, provider=provider, status=status)
    if 400 <= status < 500:
        raise ProviderRequestInvalid(message, provider=provider, status=status)
    raise ProviderError(message, provider=provider, status=status)


def _default_lead(status: int) -> str:
    if status == 429:
        return "rate limited"
    if status in (401, 403):
        return "credentials rejected (check the API key)"
    if status == 404:
        return "not found"
    if status == 413:
        return "request too large"
    if status in (400, 422):
        return "request rejected"
    if is_transient_status(status):
        return "temporarily unavailable"
    return "unexpected answer"


def send_request(http: httpx.Client, request: httpx.Request, provider: str, *,
                 secrets: Iterable[str | None] = (), stream: bool = False) -> httpx.Response:
    """Send `request`, turning httpx timeouts and transport failures into TransientProviderError."""
    try:
        response = http.send(request, stream=stream)
    except httpx.TimeoutException as exc:
        raise TransientProviderError(
            redact(f"{provider}: timed out ({type(exc).__name__}) on {endpoint_label(request)}", secrets),
            provider=provider) from None
    except httpx.TransportError as exc:
        raise TransientProviderError(
            redact(f"{provider}: transport error ({type(exc).__name__}: {exc}) on {endpoint_label(request)}",
                   secrets),
            provider=provider) from None
    logger.debug("%s: %s -> HTTP %s", provider, endpoint_label(request), response.status_code)
    return response


def parse_json_body(response: httpx.Response, provider: str, secrets: Iterable[str | None] = ()) -> Any:
    """The JSON body of a successful answer.

    A 2xx whose body is not JSON is a provider or gateway fault (typically a cut-off body), so it is
    raised as TransientProviderError: one Prefect retry may get a whole answer. Retries are bounded
    by the task's retry count, so this can cost at most that many extra generations.
    """
    try:
        return response.json()
    except ValueError:
        raise TransientProviderError(
            redact(f"{provider}: malformed JSON in the HTTP {response.status_code} answer from "
                   f"{endpoint_label(response.request)} ({len(response.content)} bytes)", secrets),
            provider=provider, status=response.status_code) from None


def strip_auth(request: httpx.Request) -> httpx.Request:
    """Drop credentials from a request bound for a presigned URL (S3 rejects a second auth scheme,
    and the API key must never travel to a storage host)."""
    for name in ("Authorization", "NVCF-POLL-SECONDS"):
        if name in request.headers:
            del request.headers[name]
    return request


# --------------------------------------------------------------------------- NVCF asynchronous pattern

@dataclass(frozen=True)
class NvcfPolling:
    """How to wait for an NVCF request that answered 202.

    Status polls go to a separate NVCF endpoint, not the inference endpoint, so they take no
    rate-limit token; instead each poll starts at least `interval` seconds after the previous one
    started (with NVCF-POLL-SECONDS the server holds a poll open itself, so usually no extra sleep).
    """

    status_url: str
    interval: float = 1.0
    deadline: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass
class NvcfResult:
    """The final answer of an NVCF call: a JSON payload, or a raw artifact from a result zip."""

    payload: Any = None
    artifact: bytes | None = None
    artifact_name: str | None = None
    polls: int = 0
    request_id: str | None = None
    from_zip: bool = False


def resolve_nvcf(http: httpx.Client, response: httpx.Response, *, provider: str, polling: NvcfPolling,
                 secrets: Iterable[str | None] = ()) -> NvcfResult:
    """Turn a 200 or 202 answer of an NVCF-backed endpoint into its final result.

    200 -> the JSON body. 202 + NVCF-REQID -> poll `{status_url}/{reqId}` until 200 (JSON), 302
    (download the presigned zip at Location, take its first JSON or image artifact), 404 (unknown or
    expired id: not transient, the paid result is gone), 504 (no worker took the job: transient).
    429/5xx/timeouts on a poll do not abort: the job is already paid for, so polling goes on until
    the deadline. Any other status is mapped by raise_for_provider_status.
    """
    secrets = tuple(secrets)
    if response.status_code == 200:
        return NvcfResult(payload=parse_json_body(response, provider, secrets))
    if response.status_code != 202:
        raise_for_provider_status(response, provider, secrets=secrets)
        raise ProviderError(f"{provider}: unexpected HTTP {response.status_code} from "
                            f"{endpoint_label(response.request)}", provider=provider,
                            status=response.status_code)
    request_id = response.headers.get("NVCF-REQID")
    if not request_id:
        raise ProviderError(f"{provider}: HTTP 202 without an NVCF-REQID header from "
                            f"{endpoint_label(response.request)}", provider=provider, status=202)
    return _poll_status(http, request_id, provider=provider, polling=polling, secrets=secrets)


def _poll_status(http: httpx.Client, request_id: str, *, provider: str, polling: NvcfPolling,
                 secrets: tuple[str | None, ...]) -> NvcfResult:
    started = polling.clock()
    polls = 0
    while True:
        elapsed = polling.clock() - started
        if elapsed > polling.deadline:
            raise TransientProviderError(
                f"{provider}: NVCF request {request_id} still running after {elapsed:.1f}s "
                f"({polls} status polls; deadline {polling.deadline:g}s)", provider=provider)
        poll_started = polling.clock()
        request = http.build_request("GET", f"{polling.status_url.rstrip('/')}/{request_id}")
        polls += 1
        wait = polling.interval
        try:
            response = send_request(http, request, provider, secrets=secrets)
        except TransientProviderError as exc:
            logger.info("%s: NVCF status poll %d for %s failed, polling on: %s", provider, polls, request_id, exc)
            response = None
        if response is not None:
            status = response.status_code
            if status == 200:
                return NvcfResult(payload=parse_json_body(response, provider, secrets), polls=polls,
                                  request_id=request_id)
            if status == 302:
                result = _download_result_zip(http, response, provider=provider, secrets=secrets)
                result.polls, result.request_id = polls, request_id
                return result
            if status == 404:
                raise ProviderError(f"{provider}: NVCF request {request_id} unknown or expired (HTTP 404 from "
                                    f"{endpoint_label(response.request)})", provider=provider, status=404)
            if status == 504:
                raise TransientProviderError(
                    f"{provider}: NVCF request {request_id}: no worker took the job within the poll window "
                    f"(HTTP 504)", provider=provider, status=504)
            if is_transient_status(status):  # 429, 5xx other than 504, 408, 425
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = max(wait, retry_after or 0.0)
                logger.info("%s: NVCF status poll for %s answered HTTP %d, polling on", provider, request_id, status)
            elif status != 202:
                raise_for_provider_status(response, provider, secrets=secrets)
                raise ProviderError(f"{provider}: unexpected HTTP {status} polling NVCF request {request_id}",
                                    provider=provider, status=status)
        # space polls by the interval measured from the start of this one (long-polls need no extra sleep)
        remaining = wait - (polling.clock() - poll_started)
        if remaining > 0:
            polling.sleep(remaining)


def _download_result_zip(http: httpx.Client, response: httpx.Response, *, provider: str,
                         secrets: tuple[str | None, ...]) -> NvcfResult:
    location = response.headers.get("Location")
    if not location:
        raise ProviderError(f"{provider}: NVCF answered 302 without a Location header", provider=provider,
                            status=302)
    request = strip_auth(http.build_request("GET", response.url.join(location)))
    zipped = send_request(http, request, provider, secrets=secrets, stream=True)
    try:
        if zipped.status_code in (401, 403):
            # the storage host refused its own signature (expired URL); the API key was never sent
            raise ProviderError(f"{provider}: presigned NVCF result URL refused (HTTP {zipped.status_code}; "
                                f"expired?)", provider=provider, status=zipped.status_code)
        if zipped.status_code >= 300:
            zipped.read()
            raise_for_provider_status(zipped, provider, secrets=secrets)
        data = _read_capped(zipped, MAX_ZIP_BYTES, provider)
    finally:
        zipped.close()
    name, artifact = extract_zip_artifact(data, provider)
    if _looks_like_json(artifact):
        try:
            return NvcfResult(payload=json.loads(artifact), artifact_name=name, from_zip=True)
        except ValueError:
            raise ProviderError(f"{provider}: result zip entry {name!r} is not valid JSON",
                                provider=provider) from None
    return NvcfResult(artifact=artifact, artifact_name=name, from_zip=True)


def _read_capped(response: httpx.Response, cap: int, provider: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > cap:
                raise ProviderError(f"{provider}: result download exceeds {cap} bytes", provider=provider)
            chunks.append(chunk)
    except httpx.TransportError as exc:
        raise TransientProviderError(f"{provider}: result download failed ({type(exc).__name__})",
                                     provider=provider) from None
    return b"".join(chunks)


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8")


def _looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] in (b"{", b"[")


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def extract_zip_artifact(data: bytes, provider: str) -> tuple[str, bytes]:
    """(name, bytes) of the first JSON or image entry of an NVCF result zip, refusing zip bombs."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ProviderError(f"{provider}: NVCF result is not a zip archive ({len(data)} bytes)",
                            provider=provider) from None
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_PROVIDER_BYTES:
                raise ProviderError(f"{provider}: result zip entry {info.filename!r} is {info.file_size} bytes, "
                                    f"over the {MAX_PROVIDER_BYTES} byte cap", provider=provider)
            with archive.open(info) as fh:
                content = fh.read(MAX_PROVIDER_BYTES + 1)
            if _looks_like_json(content) or _looks_like_image(content):
                return info.filename, content
    raise ProviderError(f"{provider}: NVCF result zip holds no JSON or image artifact", provider=provider)


# --------------------------------------------------------------------------- inline image payloads

# NVIDIA's inline (data URL) image inputs work up to about 180-200 KB; stay under the low end.
INLINE_DATA_URL_LIMIT = 180_000


def encode_jpeg(path: str | Path, *, max_side: int, quality: int = 90) -> tuple[bytes, tuple[int, int]]:
    """`path` flattened to RGB, downscaled so its longest side <= max_side, as JPEG bytes and size."""
    with Image.open(path) as im:
        im.load()
        image = _flatten_rgb(im)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue(), image.size


def encode_png(path: str | Path, *, max_side: int) -> tuple[bytes, tuple[int, int]]:
    """Like encode_jpeg, lossless (for asset uploads, where size does not matter as much)."""
    with Image.open(path) as im:
        im.load()
        image = _flatten_rgb(im)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), image.size


def _flatten_rgb(im: Image.Image) -> Image.Image:
    # transparency would turn black in JPEG; put it on white like a web page would
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def jpeg_data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def fitted_jpeg_data_url(path: str | Path, *, limit: int = INLINE_DATA_URL_LIMIT,
                         sides: tuple[int, ...] = (1024, 768, 512, 384),
                         qualities: tuple[int, ...] = (85, 70, 55)) -> str:
    """The largest/best JPEG data URL of `path` under `limit` characters (for inline image inputs
    that have no upload alternative, such as chat completions)."""
    url = ""
    for side in sides:
        for quality in qualities:
            jpeg, _ = encode_jpeg(path, max_side=side, quality=quality)
            url = jpeg_data_url(jpeg)
            if len(url) <= limit:
                return url
    return url  # the smallest we can make; the server will say if it is still too big
