"""Paid POSTs that are never sent blindly twice: lost answers told from refusals, NVCF ids kept and resumed.

A paid request has three kinds of end. A final answer (an image, a refusal, a content filter) removes
its pending-journal entry (imagegen.pending). A refusal before any work (a connect error, 429, 503) may
be sent again as if new. An answer lost after the request went out (read timeout, dropped connection,
500/502/504, a cut-off body) leaves the entry and raises OutcomeUnknown: the provider may have billed it.

NVCF adds a fourth: a 202 names a request id, which is written to the entry before the first poll. When
polling stops short of an answer (the deadline, a dropped poll), the id stays and the next call with the
same request polls it again instead of paying; only an id that expired (404) or failed is paid again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import httpx

from imagegen.errors import OutcomeUnknown, ProviderError, StillRunning, TransientProviderError, outcome_unknown
from imagegen.paid_sends import sending_paid_request
from imagegen.pending import PendingJournal, PendingRequest, new_entry
from imagegen.providers.http import send_request
from imagegen.providers.nvcf import NvcfPolling, NvcfResult, poll_nvcf, resolve_nvcf

logger = logging.getLogger(__name__)


def lost_answer(exc: ProviderError, *, provider: str, request_key: str) -> OutcomeUnknown:
    """The OutcomeUnknown a paid POST raises for `exc` (when errors.outcome_unknown(exc) holds)."""
    return OutcomeUnknown(f"{exc}; outcome unknown: the request may have run and been billed, so it counts as "
                          f"spent and is sent again at most once", provider=provider, status=exc.status,
                          request_key=request_key)


def _id_kept(exc: ProviderError, request_id: str, *, paid_now: bool) -> TransientProviderError:
    """Polling stopped short of an answer: the id stays for the next call. `paid_now`: this call sent the
    request (else it only polled one paid earlier: StillRunning)."""
    kind = TransientProviderError if paid_now else StillRunning
    return kind(f"{exc}; request id {request_id} is kept: a retry or a rerun polls it again instead of paying "
                f"again", provider=exc.provider, status=exc.status, retry_after=exc.retry_after)


def _id_still_answers(exc: ProviderError) -> bool:
    """Polling stopped short, but the id may still answer: the deadline, or the status host unreachable.
    A 504 means no worker ever took the job, so that id is spent."""
    return exc.transient and exc.status != 504


def resume_nvcf_request(http: httpx.Client, journal: PendingJournal | None, key: str, *, provider: str,
                        polling: NvcfPolling, secrets: Iterable[str | None] = ()) -> NvcfResult | None:
    """The answer of the NVCF request id kept for `key`; None when none is kept, or when the id expired or
    failed (its entry then goes, and the caller pays again). Polling that stops short again raises, id kept."""
    entry = journal.get(key) if journal is not None else None
    if journal is None or entry is None or not entry.request_id:
        return None
    logger.info("%s: polling NVCF request %s again (sent earlier, answer not stored yet) instead of paying again",
                provider, entry.request_id)
    try:
        result = poll_nvcf(http, entry.request_id, provider=provider, polling=polling, secrets=secrets)
    except ProviderError as exc:
        if _id_still_answers(exc):
            raise _id_kept(exc, entry.request_id, paid_now=False) from None
        journal.remove(key)
        logger.warning("%s: NVCF request %s ended without an answer (%s); sending the request again",
                       provider, entry.request_id, exc)
        return None
    result.resumed = True
    return result


def send_paid_nvcf(http: httpx.Client, request: httpx.Request, *, journal: PendingJournal | None, key: str,
                   provider: str, polling: NvcfPolling, raise_for_status: Callable[[httpx.Response], None],
                   secrets: Iterable[str | None] = ()) -> NvcfResult:
    """Send a paid request to an NVCF-backed (or plain synchronous) endpoint and resolve it.

    The run's budget is charged first (imagegen.paid_sends: a spent one raises before anything is sent).
    The journal entry is written before the send and gets the request id of a 202 before the first poll;
    `raise_for_status` maps an answer other than 200/202. A final error removes the entry; a lost answer
    raises OutcomeUnknown and keeps it; polling that stops short keeps the id (see module docstring).
    """
    secrets = tuple(secrets)
    sending_paid_request()
    entry = new_entry(key, provider, str(request.url), journal.get(key) if journal is not None else None)
    if entry.sends > 1:
        logger.warning("%s: the answer to this request was lost before; sending it again (send %d)",
                       provider, entry.sends)
    _record(journal, entry)
    accepted: list[str] = []

    def keep_request_id(request_id: str) -> None:
        accepted.append(request_id)
        _record(journal, entry.model_copy(update={"request_id": request_id}))

    try:
        response = send_request(http, request, provider, secrets=secrets)
        if response.status_code not in (200, 202):
            raise_for_status(response)
        return resolve_nvcf(http, response, provider=provider, polling=polling, secrets=secrets,
                            on_accepted=keep_request_id)
    except ProviderError as exc:
        if accepted and _id_still_answers(exc):
            raise _id_kept(exc, accepted[0], paid_now=True) from None
        if not accepted and outcome_unknown(exc):
            raise lost_answer(exc, provider=provider, request_key=key) from None
        if journal is not None:
            journal.remove(key)
        raise


def _record(journal: PendingJournal | None, entry: PendingRequest) -> None:
    if journal is not None:
        journal.record(entry)
