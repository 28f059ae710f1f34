"""What one process knows about a neuroflash account, shared by every client of it: the access token,
the workspace, the model list and the last quota figure.

Every Prefect task builds its own NeuroflashClient (a block's `get_generator()`), and each used to
fetch its own token, look its workspace up and list the models again: 5 requests of overhead per
image. Instead, each of these lives once per process, keyed by the account:

- the token by (token URL, client id, client secret): one token per API client per process, used by
  every thread until shortly before it expires (imagegen.providers.neuroflash_auth refreshes it);
- the workspace and the model list by (API URL, client id, client secret, configured workspace), kept
  for ACCOUNT_FACTS_MAX_AGE_S. Per process rather than per run, because the CLI's pre-flight and the
  flow it then runs share one process and would otherwise list the models twice; the age bound keeps a
  long-lived `imagegen serve` process from holding a list that changed days ago;
- the quota figure last read (by the run's pre-flight check) minus what this process has spent since:
  a generation checks that instead of reading the quota again, and reads it only when the figure is
  older than QUOTA_FIGURE_MAX_AGE_S or says there is no room (the daily limit may have reset). The API's
  own refusal (403/429 naming the limit) stays the last word.

Keys are keyed hashes (imagegen.providers.http.config_fingerprint): no secret sits in a dict key. A
forked child starts with none of it, as with the shared HTTP clients.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import SecretStr

from imagegen.providers.http import config_fingerprint
from imagegen.providers.neuroflash_api import ImageModel, Quota

# The workspace and the model list are re-read after this long (a served process lives for days).
ACCOUNT_FACTS_MAX_AGE_S = 3600.0
# A quota figure older than this is read again before the next spend.
QUOTA_FIGURE_MAX_AGE_S = 600.0
_MAX_ACCOUNTS = 64  # accounts alive at once in a process; a test session swaps emulators more often

T = TypeVar("T")


class TokenState:
    """The current access token of one API client and when to stop using it (see AccessTokens)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: SecretStr | None = None
        self.valid_until = 0.0
        self.fetches = 0

    def __repr__(self) -> str:  # never the token
        return f"TokenState(fetches={self.fetches}, has_token={self.token is not None})"


class SharedFact(Generic[T]):
    """One value fetched once and shared until it is `max_age` old; concurrent callers wait for the one
    fetch in progress instead of starting their own."""

    def __init__(self, max_age: float = ACCOUNT_FACTS_MAX_AGE_S):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._value: T | None = None
        self._fetched_at = 0.0

    def get(self, fetch: Callable[[], T], now: float, *, refresh: bool = False) -> T:
        with self._lock:
            if refresh or self._value is None or now - self._fetched_at >= self.max_age:
                self._value = fetch()
                self._fetched_at = now
            return self._value


class QuotaFigure:
    """The last quota read for a workspace and the images spent in this process since."""

    def __init__(self, max_age: float = QUOTA_FIGURE_MAX_AGE_S):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._quota: Quota | None = None
        self._read_at = 0.0
        self._spent_since = 0

    def remember(self, quota: Quota, now: float) -> None:
        with self._lock:
            self._quota, self._read_at, self._spent_since = quota, now, 0

    def count_spent(self, images: int) -> None:
        with self._lock:
            self._spent_since += images

    def has_room(self, needed: int, now: float) -> bool:
        """True only when a figure younger than max_age leaves room for `needed` more images; False means
        "read the quota again" (no figure, an old one, one without numbers, or one that says no room)."""
        with self._lock:
            if self._quota is None or now - self._read_at >= self.max_age:
                return False
            left = self._quota.remaining()
            return left is not None and left - self._spent_since >= needed


class AccountState:
    """The workspace, model list and quota figure of one account (one API client in one workspace)."""

    def __init__(self) -> None:
        self.workspace: SharedFact[str] = SharedFact()
        self.models: SharedFact[list[ImageModel]] = SharedFact()
        self.quota = QuotaFigure()


_lock = threading.Lock()
_tokens: OrderedDict[str, TokenState] = OrderedDict()
_accounts: OrderedDict[str, AccountState] = OrderedDict()


def _shared(registry: OrderedDict, key: str, make: Callable[[], T]) -> T:
    with _lock:
        found = registry.get(key)
        if found is None:
            found = registry[key] = make()
        registry.move_to_end(key)
        while len(registry) > _MAX_ACCOUNTS:
            registry.popitem(last=False)  # clients holding it keep using it; new ones start afresh
        return found


def shared_token_state(token_url: str, client_id: str, client_secret: SecretStr) -> TokenState:
    """The process's token state for this API client."""
    key = config_fingerprint("neuroflash-token", token_url, client_id, client_secret.get_secret_value())
    return _shared(_tokens, key, TokenState)


def shared_account_state(api_url: str, client_id: str, client_secret: SecretStr,
                         workspace_id: str | None) -> AccountState:
    """The process's workspace, model list and quota figure for this API client and workspace setting."""
    key = config_fingerprint("neuroflash-account", api_url, client_id, client_secret.get_secret_value(),
                             workspace_id)
    return _shared(_accounts, key, AccountState)


def forget_accounts() -> None:
    """Start from no shared token, workspace, model list or quota figure (tests call it between emulators)."""
    with _lock:
        _tokens.clear()
        _accounts.clear()


def _forget_after_fork() -> None:
    """A forked child must not wait on a lock some parent thread held at the fork: it starts with none."""
    global _lock
    _lock = threading.Lock()
    _tokens.clear()
    _accounts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
