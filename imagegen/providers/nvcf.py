"""NVIDIA Cloud Functions (NVCF) asynchronous answers: 202 status polling and presigned result zips.

An NVCF-backed endpoint either answers 200 with the result, or 202 with a request id to poll on a
separate status endpoint; a finished poll answers 200 (JSON) or 302 to a presigned zip holding the
artifact. The zip host gets no credentials, and what it sends is capped (zip bombs).
"""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from imagegen.errors import ProviderError, TransientProviderError, is_transient_status
from imagegen.providers.base import MAX_PROVIDER_BYTES
from imagegen.providers.http import (
    endpoint_label,
    parse_json_body,
    parse_retry_after,
    raise_for_provider_status,
    send_request,
)

logger = logging.getLogger(__name__)

# A presigned NVCF result zip is > 5 MiB by definition; cap what we are willing to download.
MAX_ZIP_BYTES = 4 * MAX_PROVIDER_BYTES


def strip_auth(request: httpx.Request) -> httpx.Request:
    """Drop credentials from a request bound for a presigned URL (S3 rejects a second auth scheme,
    and the API key must never travel to a storage host)."""
    for name in ("Authorization", "NVCF-POLL-SECONDS"):
        if name in request.headers:
            del request.headers[name]
    return request


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
    resumed: bool = False  # the answer of a request id kept from an earlier call (imagegen.pending)


def resolve_nvcf(http: httpx.Client, response: httpx.Response, *, provider: str, polling: NvcfPolling,
                 secrets: Iterable[str | None] = (),
                 on_accepted: Callable[[str], None] | None = None) -> NvcfResult:
    """Turn a 200 or 202 answer of an NVCF-backed endpoint into its final result.

    200 -> the JSON body. 202 + NVCF-REQID -> `on_accepted(reqId)` (to keep the id before the first
    poll), then poll_nvcf.
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
    if on_accepted is not None:
        on_accepted(request_id)
    return poll_nvcf(http, request_id, provider=provider, polling=polling, secrets=secrets)


def poll_nvcf(http: httpx.Client, request_id: str, *, provider: str, polling: NvcfPolling,
              secrets: Iterable[str | None] = ()) -> NvcfResult:
    """Poll `{status_url}/{request_id}` until 200 (JSON), 302 (download the presigned zip at Location,
    take its first JSON or image artifact), 404 (unknown or expired id: not transient, the paid result
    is gone), 504 (no worker took the job: transient, and the id is spent).

    429/5xx/timeouts on a poll do not abort: the job is already paid for, so polling goes on until
    the deadline (TransientProviderError; the id still answers later). Any other status is mapped by
    raise_for_provider_status. Also used to resume a request id kept from an earlier call.
    """
    secrets = tuple(secrets)
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

