"""neuroflash access tokens: OAuth2 client credentials exchanged for a bearer token, cached until shortly
before it expires. Thread-safe; the token endpoint is not an API call, so it is not rate limited.

The token lives in a TokenState that every client of the same API client in the process shares
(imagegen.providers.neuroflash_account.shared_token_state): one token per client id per process, however
many tasks build clients; concurrent callers wait for the one fetch in progress.

The client secret and the tokens are kept as SecretStr even in memory (vars()/pickle/debugger dumps
stay masked) and never appear in an exception text or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from imagegen.errors import ProviderAuthError, is_transient_status
from imagegen.providers.http import raise_for_provider_status, send_request, status_message
from imagegen.providers.neuroflash_account import TokenState
from imagegen.providers.neuroflash_api import PROVIDER
from imagegen.redaction import mask_url, url_secrets

log = logging.getLogger(__name__)

# Refresh the token this long before the server says it expires (clock skew, slow requests).
TOKEN_REFRESH_MARGIN_S = 60.0
# Used when a token answer carries no expires_in: short, so a wrong guess costs one token call.
FALLBACK_TOKEN_LIFETIME_S = 300.0


class AccessTokens:
    """The bearer tokens of one neuroflash API client (client_id + client_secret at `token_url`).

    `state` holds the token; pass the process's shared one (see the module docstring), or none for a
    token of this object's own.
    """

    def __init__(self, http: httpx.Client, token_url: str, client_id: str, client_secret: SecretStr,
                 clock: Callable[[], float] = time.monotonic, state: TokenState | None = None):
        self._http = http
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock
        self._state = state if state is not None else TokenState()

    @property
    def fetches(self) -> int:
        """How many tokens were fetched for this state (every client sharing it counts)."""
        return self._state.fetches

    def __repr__(self) -> str:
        return f"AccessTokens(client_id={self.client_id!r}, token_url={mask_url(self.token_url)!r})"

    def secrets(self) -> tuple[str | None, ...]:
        """The client secret, the current token and the token URL's credentials: what `redact()` must
        remove from wire text."""
        token = self._state.token
        return (self._secret.get_secret_value(), (token.get_secret_value() if token else None),
                *url_secrets(self.token_url))

    def get(self) -> str:
        """The cached token, fetched anew when missing or about to expire."""
        state = self._state
        with state.lock:
            if state.token is None or self._clock() >= state.valid_until:
                self._fetch()
            assert state.token is not None
            return state.token.get_secret_value()

    def forget(self, rejected: str) -> None:
        """Drop the token the API just refused (unless another thread already replaced it)."""
        state = self._state
        with state.lock:
            if state.token is not None and state.token.get_secret_value() == rejected:
                state.token = None

    def _fetch(self) -> None:
        """POST the client credentials (form-encoded); the caller holds the state's lock."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret.get_secret_value(), "scope": "openid"}
        secrets = self.secrets()
        response = send_request(self._http, self._http.build_request("POST", self.token_url, data=form), PROVIDER,
                                secrets=secrets)
        self._state.fetches += 1
        status = response.status_code
        if status != 200:
            if is_transient_status(status):  # 429 included; the token endpoint shares no limiter
                raise_for_provider_status(response, PROVIDER, secrets=secrets,
                                          messages={status: "token endpoint unavailable"})
            # an OAuth2 server refuses bad client credentials with 400 or 401; anything else
            # unexpected still means no token, so it is an auth failure too
            lead = (f"token endpoint rejected client_id {self.client_id!r}; check the API client's ID and secret"
                    if status in (400, 401, 403) else "token endpoint answered unexpectedly")
            raise ProviderAuthError(status_message(response, PROVIDER, lead, secrets), provider=PROVIDER,
                                    status=status)
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ProviderAuthError("neuroflash token answer carries no access_token", provider=PROVIDER) from None
        if not isinstance(token, str) or not token:
            raise ProviderAuthError("neuroflash token answer carries an empty access_token", provider=PROVIDER)
        try:
            lifetime = float(body.get("expires_in") or FALLBACK_TOKEN_LIFETIME_S)
        except (TypeError, ValueError):
            lifetime = FALLBACK_TOKEN_LIFETIME_S
        # Short-lived tokens (tests, odd servers) keep at least half their life.
        margin = min(TOKEN_REFRESH_MARGIN_S, lifetime / 2)
        self._state.token = SecretStr(token)
        self._state.valid_until = self._clock() + lifetime - margin
        log.debug("neuroflash token fetched for client_id %s, valid for %.0f s", self.client_id, lifetime)
