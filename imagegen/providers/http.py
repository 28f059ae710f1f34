"""HTTP plumbing shared by the provider clients: shared httpx clients, sending, and one error mapping.

Nothing here knows a particular provider. `raise_for_provider_status` is the one place an HTTP
status becomes an imagegen error (and so decides what is transient); providers with rules of their
own (neuroflash's quota answers) check those first and hand everything else to it. Every message
built here names the provider, the HTTP status and the endpoint (without query string: presigned URLs
carry signatures; user info masked: a URL setting may carry a password) and passes through `redact()`,
so an API key a server echoes back, or a URL with credentials in it, never reaches an exception or a
log line.
"""

from __future__ import annotations

import atexit
import email.utils
import hashlib
import hmac
import json
import logging
import math
import os
import secrets as _secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from imagegen.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    TransientProviderError,
    is_transient_status,
)
from imagegen.ratelimit import RateLimiter
from imagegen.redaction import REDACTED, mask_urls_in, mask_urls_in_logs, url_location

logger = logging.getLogger(__name__)
# httpx logs every request's URL at INFO, user info and query included: a URL setting may carry both.
mask_urls_in_logs()

_MAX_DETAIL_CHARS = 300
# A Retry-After longer than this is a server's mistake or a ban; waiting longer helps no run.
MAX_RETRY_AFTER_S = 3600.0


# --------------------------------------------------------------------------- secrets

def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every non-trivial secret replaced by ***, and every URL in it masked (user info and
    secret-looking query parameters: see imagegen.redaction)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return mask_urls_in(text)


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
    """'POST http://host/path' without the query string (presigned URLs carry signatures) and with any
    password in the user info masked (`user:***@host`)."""
    return f"{request.method} {url_location(str(request.url))}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), at most MAX_RETRY_AFTER_S;
    None when absent or garbled."""
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
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def _detail_from_json(body: Any) -> str:
    """The human part of the error shapes our providers use (problem+json, FastAPI, {error, code},
    OAuth2 {error, error_description}, {errors: [{field, message}]})."""
    if not isinstance(body, dict):
        return json.dumps(body)[:_MAX_DETAIL_CHARS]
    parts: list[str] = []
    for key in ("title", "detail", "error", "error_description", "message", "msg"):
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
                message = item.get("message") or item.get("msg") or ""
                parts.append(f"{where}: {message}" if where else str(message))
            elif isinstance(item, str):
                parts.append(item)
    if not parts:
        return json.dumps(body)[:_MAX_DETAIL_CHARS]
    code = body.get("code")
    return "; ".join(parts) + (f" (code {code})" if code not in (None, "") else "")


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

def status_message(response: httpx.Response, provider: str, lead: str, secrets: Iterable[str | None] = ()) -> str:
    """'{provider}: {lead} (HTTP {status} from {endpoint}): {body detail}', redacted: how every error
    about an HTTP answer reads."""
    secrets = tuple(secrets)
    detail = problem_detail(response, secrets)
    message = f"{provider}: {lead} (HTTP {response.status_code} from {endpoint_label(response.request)})"
    if detail:
        message += f": {detail}"
    return redact(message, secrets)


def raise_for_provider_status(
    response: httpx.Response,
    provider: str,
    *,
    limiter: RateLimiter | None = None,
    secrets: Iterable[str | None] = (),
    messages: Mapping[int, str] | None = None,
    rate_limit_pause: float | None = None,
) -> None:
    """Raise the imagegen error a non-2xx answer means; return quietly for 2xx.

    401/403 -> ProviderAuthError; 400/404/413/422 and other 4xx -> ProviderRequestInvalid (with the
    body's detail); 408/425/429/5xx -> TransientProviderError with the answer's Retry-After as
    `retry_after`. A 429 also pauses `limiter`, so every caller sharing the account waits: for the
    Retry-After, or for `rate_limit_pause` seconds when the answer names none (None: no pause).
    `messages` replaces the lead text for a status (e.g. 404 -> "model not enabled ...").
    Providers whose quota answers look like 403/429 should check for those before calling this.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    secrets = tuple(secrets)
    lead = (messages or {}).get(status) or _default_lead(status)
    message = status_message(response, provider, lead, secrets)
    if is_transient_status(status):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            message += f"; retry after {retry_after:g}s"
        pause = retry_after if retry_after is not None else rate_limit_pause
        if status == 429 and limiter is not None and pause is not None:
            limiter.pause_for(pause)
        raise TransientProviderError(message, provider=provider, status=status, retry_after=retry_after)
    if status in (401, 403):
        raise ProviderAuthError(message, provider=provider, status=status)
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


# Failures after the request went out whole: the server may have run it. A connect error, a pool or
# connect timeout, or a failed write means it never got the whole request, so it cannot have run it.
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def send_request(http: httpx.Client, request: httpx.Request, provider: str, *,
                 secrets: Iterable[str | None] = (), stream: bool = False) -> httpx.Response:
    """Send `request`, turning httpx timeouts and transport failures into TransientProviderError
    (with `answer_lost` set when the request may have reached the server whole: see errors.outcome_unknown)."""
    try:
        response = http.send(request, stream=stream)
    except httpx.TimeoutException as exc:
        error = TransientProviderError(
            redact(f"{provider}: timed out ({type(exc).__name__}) on {endpoint_label(request)}", secrets),
            provider=provider)
        error.answer_lost = isinstance(exc, _ANSWER_LOST)
        raise error from None
    except httpx.TransportError as exc:
        error = TransientProviderError(
            redact(f"{provider}: transport error ({type(exc).__name__}: {exc}) on {endpoint_label(request)}",
                   secrets),
            provider=provider)
        error.answer_lost = isinstance(exc, _ANSWER_LOST)
        raise error from None
    logger.debug("%s: %s -> HTTP %s", provider, endpoint_label(request), response.status_code)
    return response


def parse_json_body(response: httpx.Response, provider: str, secrets: Iterable[str | None] = ()) -> Any:
    """The JSON body of a successful answer.

    A 2xx whose body is not JSON is a provider or gateway fault (typically a cut-off body), so it is
    raised as TransientProviderError with `answer_lost` set: the request ran, and a paid one is then
    sent again at most once (errors.OutcomeUnknown).
    """
    try:
        return response.json()
    except ValueError:
        error = TransientProviderError(
            redact(f"{provider}: malformed JSON in the HTTP {response.status_code} answer from "
                   f"{endpoint_label(response.request)} ({len(response.content)} bytes)", secrets),
            provider=provider, status=response.status_code)
        error.answer_lost = True  # the server answered 2xx: it ran the request
        raise error from None
