"""Helpers shared by the remote asset stores (Supabase Storage, GitLab): error mapping, secret
scrubbing, content hashing and the HEAD check that `verify` sends.

Every remote store raises only `StoreError` (permanent) or `TransientStoreError` (worth retrying), with
messages that name the store, the container (bucket/project) and the key, and never a credential.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import httpx

from imagegen.errors import StoreError, TransientStoreError, is_transient_status
from imagegen.redaction import REDACTED, mask_urls_in, mask_urls_in_logs

# httpx (Supabase) and urllib3 (python-gitlab) log request URLs; SUPABASE_URL and GITLAB_URL may carry credentials.
mask_urls_in_logs()

HEAD_TIMEOUT_SECONDS = 10.0
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MAX_SERVER_MESSAGE = 300


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-empty secret replaced by '***' (servers sometimes echo what they got) and
    every URL in it masked (imagegen.redaction)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return mask_urls_in(text)


def short_server_message(text: object, secrets: Iterable[str | None] = ()) -> str:
    """A server's error text, scrubbed and cut to a length that fits in one log line."""
    message = scrub(" ".join(str(text).split()), secrets)
    return message if len(message) <= _MAX_SERVER_MESSAGE else message[:_MAX_SERVER_MESSAGE] + "..."


def error_for_status(status: int | None, message: str) -> StoreError:
    """TransientStoreError for no status (transport failure), 408/425/429 and 5xx; StoreError otherwise."""
    if status is None or is_transient_status(status):
        return TransientStoreError(message)
    return StoreError(message)


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA256_HEX.match(value))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def head_ok(url: str, *, what: str, timeout: float = HEAD_TIMEOUT_SECONDS) -> bool:
    """True when an anonymous HEAD of `url` answers 200, as a consumer of the published URL would see it.

    Redirects are followed (object storage behind GitLab redirects downloads), but a final answer in
    HTML is False: that is a sign-in or error page (private GitLab projects redirect there), not an
    asset. 4xx answers are False; timeouts, transport errors and 5xx raise TransientStoreError, because
    the file may well be there and a later check can pass.
    """
    try:
        response = httpx.head(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise TransientStoreError(f"{what}: HEAD of the published URL failed ({type(exc).__name__})") from exc
    if is_transient_status(response.status_code):
        raise TransientStoreError(f"{what}: HEAD of the published URL answered HTTP {response.status_code}")
    return response.status_code == 200 and not response.headers.get("content-type", "").startswith("text/html")
