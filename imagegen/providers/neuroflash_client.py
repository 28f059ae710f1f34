"""neuroflash API client: workspace, quota, models, generate, history, edit, delete and image downloads.

Follows shared/docs/provider-contracts.md section 3 and the neuroflash image guide (seed 004):
OAuth2 client credentials (imagegen.providers.neuroflash_auth) -> workspace -> quota check -> model
list -> generate -> download -> usage read-back, plus history, image-to-image edit and delete.
HTTP answers go through the shared error mapping (imagegen.providers.http); neuroflash's own rules
are a thin layer on top of it.

Spending rules this module keeps:
- the quota is checked *before* any generation or edit request: against the account's last figure in
  this process (the run's pre-flight read, minus what was spent since) while it is fresh and has room,
  else by reading it again (imagegen.providers.neuroflash_account);
- no call that spends quota is ever repeated by this client, except once after a 401 (the API
  did not run it); quota answers (403/429 naming a limit) raise QuotaExhausted, never a retry;
- an answer that cannot be read after the API has charged raises a non-transient ProviderError,
  so a task retry does not pay twice (the generator does the same for a failed download).

Overhead: the token, the workspace and the model list are shared by every client of the account in the
process (neuroflash_account), so a run pays for each once, not once per task; /edit names its source by
the relative path built from the image id (seed 004), without reading the history.

Secrets: the client secret and the access token never appear in exception texts, reprs, logs or
metadata; any text that came from the network is passed through `redact()` first. Image paths are
downloaded from the API origin with auth, other absolute URLs without (the token stays on the API).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from imagegen.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestInvalid,
    QuotaExhausted,
    TransientProviderError,
)
from imagegen.models import ImageRef
from imagegen.providers.base import MAX_PROVIDER_BYTES, save_image_bytes
from imagegen.providers.http import (
    parse_json_body,
    problem_detail,
    raise_for_provider_status,
    redact,
    send_request,
    shared_client,
    status_message,
)
from imagegen.providers.neuroflash_account import AccountState, shared_account_state, shared_token_state
from imagegen.providers.neuroflash_api import (
    PROVIDER,
    DownloadedImage,
    GenerationResult,
    HistoryItem,
    ImageModel,
    NeuroflashImage,
    Quota,
    check_generate_request,
    check_image_type,
    find_model,
    mentions_quota,
    parse_generation_answer,
    quota_message,
    relative_image_path,
    view_path,
)
from imagegen.providers.neuroflash_auth import AccessTokens
from imagegen.ratelimit import RateLimiter, shared_limiter
from imagegen.redaction import mask_url, url_location, url_secrets

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://app.neuroflash.com/api"
DEFAULT_TOKEN_URL = "https://id.neuroflash.com/oauth/v2/token"
DEFAULT_RATE_PER_MINUTE = 30.0
# A 429 without Retry-After still means every caller on this account should slow down.
DEFAULT_RATE_LIMIT_PAUSE_S = 5.0
# Downloads cost no quota, so a flaky CDN is retried here instead of re-generating.
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_S = 0.5
# Lead texts of the shared error mapping where neuroflash's answers mean something more specific.
_STATUS_LEADS = {403: "the API client lacks permission", 404: "unknown id or route"}


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
        limiter: RateLimiter | None = None,
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
        secret = client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        if not secret.get_secret_value():
            raise ValueError("neuroflash client_secret is empty")
        self.api_url = api_url.rstrip("/")
        self.token_url = token_url
        self._workspace_id: str | None = workspace_id
        self._limiter: RateLimiter = limiter or shared_limiter(f"neuroflash:{client_id}", rate_per_minute)
        self._sleep = sleep
        self.download_timeout = download_timeout
        self.max_download_bytes = max_download_bytes
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._owns_http = transport is not None
        if transport is None:
            # one client per API client and endpoints in the process (see shared_client); the secret
            # only enters the key's keyed hash, so two API clients never share a cookie jar
            self._http = shared_client(scope=(PROVIDER, self.api_url, self.token_url), account=f"{client_id}\n"
                                       f"{secret.get_secret_value()}", headers={"Accept": "application/json"},
                                       timeout=timeout, follow_redirects=True)
        else:
            self._http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=True,
                                      headers={"Accept": "application/json"})
        # a client on the shared HTTP client shares the account's token, workspace, models and quota
        # figure with every other one in the process; one on a caller's transport keeps its own
        self._clock = clock
        shared = transport is None
        self._tokens = AccessTokens(self._http, token_url, client_id, secret, clock,
                                    state=shared_token_state(token_url, client_id, secret) if shared else None)
        self._account = (shared_account_state(self.api_url, client_id, secret, workspace_id) if shared
                         else AccountState())
        self._batch_ids: set[str] = set()
        self.quota_first: Quota | None = None
        self.quota_last: Quota | None = None

    def __repr__(self) -> str:
        return (f"NeuroflashClient(client_id={self.client_id!r}, api_url={mask_url(self.api_url)!r}, "
                f"workspace_id={self._workspace_id!r})")

    def close(self) -> None:
        """Close a client built around a caller's transport; the shared client stays open for others."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> NeuroflashClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def token_fetches(self) -> int:
        """How many tokens were fetched for this client's token (shared clients count together)."""
        return self._tokens.fetches

    # ---- secrets ------------------------------------------------------------------------

    def _secrets(self) -> tuple[str | None, ...]:
        """The secret, the current token and the URLs' credentials: removed from any wire text."""
        return (*self._tokens.secrets(), *url_secrets(self.api_url))

    def _error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return cls(redact(message, self._secrets()), provider=PROVIDER)

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
        for attempt in (1, 2):
            token = self._tokens.get()
            secrets = (*self._secrets(), token)  # the token stays redacted after it is forgotten
            headers = self._headers(token, with_workspace)
            if accept:
                headers["Accept"] = accept
            self._limiter.acquire()
            request = self._http.build_request(method, url, json=json, params=params, headers=headers,
                                               timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            response = send_request(self._http, request, PROVIDER, secrets=secrets, stream=stream)
            if response.status_code != 401:
                self._raise_for_status(response, secrets)
                return response
            response.read()
            response.close()
            self._tokens.forget(token)
            if attempt == 1:
                log.info("neuroflash %s %s answered 401; fetching a new token once", method, urlsplit(url).path)
        raise ProviderAuthError(status_message(
            response, PROVIDER, f"access token refused even when freshly issued; check the API client's access to "
                                f"workspace {self._workspace_id!r}", secrets), provider=PROVIDER, status=401)

    def _raise_for_status(self, response: httpx.Response, secrets: tuple[str | None, ...]) -> None:
        """The shared error mapping with neuroflash's rules on top: a 403/429 naming a usage limit is
        QuotaExhausted (never retried, pausing no one); a 429 without Retry-After still pauses every
        caller on the account for DEFAULT_RATE_LIMIT_PAUSE_S."""
        status = response.status_code
        if status < 400:
            return
        response.read()
        response.close()
        if status in (403, 429) and mentions_quota(problem_detail(response, secrets)):
            raise QuotaExhausted(status_message(response, PROVIDER, "usage limit reached; not retried", secrets),
                                 provider=PROVIDER, status=status)
        raise_for_provider_status(response, PROVIDER, limiter=self._limiter, secrets=secrets, messages=_STATUS_LEADS,
                                  rate_limit_pause=DEFAULT_RATE_LIMIT_PAUSE_S)

    def _json(self, response: httpx.Response, *, spent: str | None = None) -> Any:
        """Decode a JSON body. When the call already spent quota the error says so and is not
        transient, so no retry pays twice."""
        try:
            return parse_json_body(response, PROVIDER, self._secrets())
        except TransientProviderError as exc:
            if not spent:
                raise
            raise ProviderError(f"{exc}, after {spent}: the body is not JSON but the quota is spent, so it is "
                                f"not retried (see /history)", provider=PROVIDER, status=exc.status) from None

    # ---- workspace, quota, models ---------------------------------------------------------

    @property
    def workspace_id(self) -> str:
        """The configured workspace, else the first one the API client can see (fetched once per account
        in the process)."""
        if self._workspace_id is None:
            self._workspace_id = self._account.workspace.get(self._first_workspace_id, self._clock())
        return self._workspace_id

    def _first_workspace_id(self) -> str:
        body = self._json(self._request("GET", "/workspace-service/v1/workspaces", with_workspace=False))
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
        body = self._json(self._request("GET", path, params={"usageTypeKey": "images"}))
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
        self._account.quota.remember(quota, self._clock())
        return quota

    def ensure_quota(self, needed: int) -> Quota:
        """Raise QuotaExhausted unless `needed` images fit in both the daily and the total quota."""
        quota = self.quota()
        left = quota.remaining()
        if left is None:
            log.warning("neuroflash quota answer has no usable figures; relying on the API to refuse")
        elif left < needed:
            raise self._error(QuotaExhausted, quota_message(needed, quota))
        return quota

    def _ensure_room(self, needed: int) -> None:
        """Before a spend: the account's fresh quota figure when it has room, else a new read (which
        raises QuotaExhausted when there is none)."""
        if not self._account.quota.has_room(needed, self._clock()):
            self.ensure_quota(needed)

    def list_models(self, refresh: bool = False) -> list[ImageModel]:
        """GET /ds-prototypes/image_generation/models, once per account in the process (see
        neuroflash_account: the list does not change mid-run)."""
        return list(self._account.models.get(self._fetch_models, self._clock(), refresh=refresh))

    def _fetch_models(self) -> list[ImageModel]:
        where = "GET /ds-prototypes/image_generation/models"
        body = self._json(self._request("GET", "/ds-prototypes/image_generation/models"))
        if isinstance(body, dict):  # tolerate a wrapped list
            body = body.get("models") or body.get("data") or body.get("items") or []
        if not isinstance(body, list):
            raise self._error(ProviderError, f"neuroflash {where} did not answer a list")
        models = [ImageModel.model_validate(m) for m in body if isinstance(m, dict) and m.get("id")]
        return sorted(models, key=lambda m: (m.order is None, m.order or 0))

    def model(self, model_id: str) -> ImageModel:
        """The model entry, or ProviderRequestInvalid listing the usable ones."""
        return find_model(self.list_models(), model_id, self._secrets())

    def validate(self, model: str, aspect_ratio: str, output_format: str, num_images: int = 1) -> ImageModel:
        """Check a generate request against the model list before anything is spent."""
        return check_generate_request(self.list_models(), model, aspect_ratio, output_format, num_images,
                                      self._secrets())

    # ---- generate, history, edit, delete --------------------------------------------------

    def generate(self, prompt: str, model: str, aspect_ratio: str, output_format: str,
                 num_images: int = 1) -> GenerationResult:
        """Validate, check the quota, then POST /ds-prototypes/image_generation/ (never repeated)."""
        self.validate(model, aspect_ratio, output_format, num_images)
        self._ensure_room(num_images)
        where = "POST /ds-prototypes/image_generation/"
        payload = {"prompt": prompt, "model": model, "num_images": num_images,
                   "aspect_ratio": aspect_ratio, "output_format": output_format}
        response = self._request("POST", "/ds-prototypes/image_generation/", json=payload)
        self._account.quota.count_spent(num_images)
        body = self._json(response, spent=f"generating {num_images} image(s)")
        result = parse_generation_answer(body, where, self._secrets())
        if result.batch_id:
            self._batch_ids.add(result.batch_id)
        return result

    def history(self) -> list[HistoryItem]:
        """GET /ds-prototypes/history -> items (first page only; pagination is undocumented)."""
        body = self._json(self._request("GET", "/ds-prototypes/history"))
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
        """Image-to-image: POST /edit with the relative path of `image_id` (the path history would give,
        built from the id: no history page is read; an unknown id is the API's 404, nothing spent)."""
        return self.edit_path(view_path(image_id), prompt)

    def edit_path(self, image_path: str, prompt: str) -> GenerationResult:
        """POST /ds-prototypes/edit {prompt, image_urls: [relative path]} after a quota check."""
        path = relative_image_path(image_path)  # an absolute URL would get a 500
        self._ensure_room(1)
        where = "POST /ds-prototypes/edit"
        response = self._request("POST", "/ds-prototypes/edit", json={"prompt": prompt, "image_urls": [path]})
        self._account.quota.count_spent(1)
        body = self._json(response, spent="an edit")
        result = parse_generation_answer(body, where, self._secrets())
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
        if self._is_api_url(url):
            # History paths live behind the API's auth (and count against its rate).
            response = self._request("GET", url, stream=True, timeout=self.download_timeout, accept="image/*")
        else:
            # A storage/CDN URL: never send our bearer token to another host.
            secrets = self._secrets()
            request = self._http.build_request("GET", url, timeout=self.download_timeout, headers={"Accept": "image/*"})
            response = send_request(self._http, request, PROVIDER, secrets=secrets, stream=True)
            self._raise_for_status(response, secrets)
        try:
            data = self._read_capped(response, url_location(url))
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
        check_image_type(downloaded, image_id, self._secrets())
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
