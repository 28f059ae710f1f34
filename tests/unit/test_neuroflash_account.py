"""The process's shared neuroflash state: one token per API client (refreshed only near its expiry,
one fetch however many threads ask), the workspace and model list fetched once, the quota figure."""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qs

import httpx
from pydantic import SecretStr

from imagegen.providers.neuroflash_account import (
    QuotaFigure,
    SharedFact,
    forget_accounts,
    shared_account_state,
    shared_token_state,
)
from imagegen.providers.neuroflash_api import Quota
from imagegen.providers.neuroflash_auth import TOKEN_REFRESH_MARGIN_S, AccessTokens

TOKEN_URL = "https://id.example.test/oauth/v2/token"
SECRET = SecretStr("nf-unit-SENTINEL-secret")


class TokenServer:
    """A token endpoint behind httpx.MockTransport: counts requests, issues numbered tokens."""

    def __init__(self, expires_in: int = 600, hold: threading.Event | None = None):
        self.expires_in = expires_in
        self.hold = hold  # the answer waits for it (bounded): lets another thread arrive mid-fetch
        self.requests = 0
        self.forms: list[dict[str, list[str]]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        self.forms.append(parse_qs(request.content.decode()))
        if self.hold is not None:
            self.hold.wait(5)
        return httpx.Response(200, json={"access_token": f"nf-at-unit-{self.requests}", "token_type": "Bearer",
                                         "expires_in": self.expires_in})

    def http(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def tokens(server: TokenServer, clock=lambda: 0.0, state=None, secret: SecretStr = SECRET) -> AccessTokens:
    return AccessTokens(server.http(), TOKEN_URL, "nf-unit-client", secret, clock, state=state)


def test_a_token_is_reused_until_shortly_before_it_expires():
    server, now = TokenServer(expires_in=600), [1000.0]
    access = tokens(server, clock=lambda: now[0])
    first = access.get()
    now[0] += 600 - TOKEN_REFRESH_MARGIN_S - 1
    assert access.get() == first and server.requests == 1
    now[0] += 2  # inside the margin: fetched anew before the server would refuse it
    second = access.get()
    assert second != first and server.requests == 2 == access.fetches
    assert server.forms[0]["grant_type"] == ["client_credentials"] and server.forms[0]["scope"] == ["openid"]


class AnnouncingLock:
    """The token state's lock, saying when a second caller is at it (so the first fetch can wait for it)."""

    def __init__(self, second_waiting: threading.Event):
        self._lock = threading.Lock()
        self._arrivals = 0
        self.second_waiting = second_waiting

    def __enter__(self):
        self._arrivals += 1
        if self._arrivals == 2:
            self.second_waiting.set()
        self._lock.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self._lock.release()


def test_two_threads_asking_at_once_cause_one_token_request():
    second_waiting = threading.Event()
    server = TokenServer(hold=second_waiting)  # the first fetch answers once the second thread waits for it
    state = shared_token_state(TOKEN_URL, "nf-unit-client", SECRET)
    state.lock = AnnouncingLock(second_waiting)  # type: ignore[assignment]
    got: list[str] = []

    def ask() -> None:
        got.append(tokens(server, state=state).get())  # each thread its own client object, as each task has

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert second_waiting.is_set()  # the second caller did arrive while the first was fetching
    assert server.requests == 1
    assert got == ["nf-at-unit-1", "nf-at-unit-1"]


def test_clients_of_one_api_client_share_a_token_per_process_and_others_do_not():
    server = TokenServer()
    one = tokens(server, state=shared_token_state(TOKEN_URL, "nf-unit-client", SECRET))
    two = tokens(server, state=shared_token_state(TOKEN_URL, "nf-unit-client", SECRET))
    assert one.get() == two.get() and server.requests == 1
    other_secret = SecretStr("nf-unit-SENTINEL-rotated")
    three = tokens(server, state=shared_token_state(TOKEN_URL, "nf-unit-client", other_secret), secret=other_secret)
    assert three.get() != one.get() and server.requests == 2
    forget_accounts()
    four = tokens(server, state=shared_token_state(TOKEN_URL, "nf-unit-client", SECRET))
    four.get()
    assert server.requests == 3


def test_a_refused_token_is_dropped_for_every_client_sharing_it():
    server = TokenServer()
    state = shared_token_state(TOKEN_URL, "nf-unit-client", SECRET)
    one, two = tokens(server, state=state), tokens(server, state=state)
    refused = one.get()
    two.forget(refused)
    assert one.get() != refused and server.requests == 2
    two.forget(refused)  # an old refusal does not drop the new token
    assert two.get() == one.get() and server.requests == 2


def test_the_token_and_the_secret_are_never_logged_or_shown(caplog):
    caplog.set_level(logging.DEBUG)
    server = TokenServer()
    state = shared_token_state(TOKEN_URL, "nf-unit-client", SECRET)
    access = tokens(server, state=state)
    token = access.get()
    shown = [r.getMessage() + repr(r.args) for r in caplog.records] + [repr(access), repr(state), str(state)]
    assert not [text for text in shown if token in text or SECRET.get_secret_value() in text]


def test_a_shared_fact_is_fetched_once_by_concurrent_callers_and_again_when_old():
    fact: SharedFact[list[str]] = SharedFact(max_age=60)
    started, release, fetches = threading.Event(), threading.Event(), []

    def fetch() -> list[str]:
        fetches.append(1)
        started.set()
        release.wait(5)
        return ["nano-banana-2"]

    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(fact.get(fetch, 0.0))) for _ in range(3)]
    threads[0].start()
    started.wait(5)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(fetches) == 1 and results == [["nano-banana-2"]] * 3
    assert fact.get(fetch, 59.0) == ["nano-banana-2"] and len(fetches) == 1
    fact.get(fetch, 60.0)
    assert len(fetches) == 2


def test_a_failed_fetch_is_not_remembered():
    fact: SharedFact[str] = SharedFact()
    answers = iter([RuntimeError("down"), "ws-1"])

    def fetch() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    try:
        fact.get(fetch, 0.0)
    except RuntimeError:
        pass
    assert fact.get(fetch, 0.0) == "ws-1"


def test_accounts_are_told_apart_by_api_url_client_secret_and_workspace():
    base = ("https://app.example.test/api", "nf-unit-client", SECRET, None)
    assert shared_account_state(*base) is shared_account_state(*base)
    assert shared_account_state(*base) is not shared_account_state(*base[:3], "ws-2")
    assert shared_account_state(*base) is not shared_account_state("https://other.test/api", *base[1:])
    assert shared_account_state(*base) is not shared_account_state(base[0], base[1], SecretStr("x-SENTINEL"), None)


def test_the_quota_figure_counts_spends_and_asks_for_a_read_when_old_or_short():
    figure = QuotaFigure(max_age=600)
    assert not figure.has_room(1, 0.0)  # nothing read yet
    figure.remember(Quota.model_validate({"availableAmount": 3, "limitAmountDaily": None}), 0.0)
    assert figure.has_room(3, 10.0)
    figure.count_spent(2)
    assert figure.has_room(1, 10.0) and not figure.has_room(2, 10.0)
    assert not figure.has_room(1, 600.0)  # old: read again
    figure.remember(Quota.model_validate({}), 700.0)  # an answer without figures: read before each spend
    assert not figure.has_room(1, 700.0)
