"""VisionReviewer against the emulator's chat completions route, plus the parsing and alt-text helpers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegen.budget import CallBudget, paid_call
from imagegen.errors import ProviderAuthError, ProviderError, ProviderRequestInvalid, TransientProviderError
from imagegen.paid_sends import charges_when_sending
from imagegen.pending import FolderJournal
from imagegen.providers.nvidia import NvidiaClient
from imagegen.providers.vlm import (
    UNPARSEABLE,
    VisionReviewer,
    clean_alt_text,
    parse_review,
    template_alt_text,
)
from imagegen.ratelimit import TokenBucket
from imagegen_flows.blocks.nvidia import NvidiaCredentials, NvidiaVisionReviewer
from tests.emulators.nvidia import NvidiaEmulator, endpoints
from tests.emulators.serve import serve_asgi
from tests.providers.task_retries import retry_while_transient

SENTINEL = "nvapi-SENTINEL-vlm-93e1c0d7aa-never-print-me"
MODEL = "meta/llama-3.2-90b-vision-instruct"


@pytest.fixture(scope="module")
def served():
    emulator = NvidiaEmulator(api_key=SENTINEL)
    with serve_asgi(emulator.app) as url:
        emulator.url = url
        yield emulator


@pytest.fixture
def emu(served):
    served.reset()
    return served


def make_reviewer(emu, **overrides) -> VisionReviewer:
    options = dict(base_url=f"{emu.url}/v1", model=MODEL, status_url=endpoints(emu.url)["status_url"],
                   timeout=httpx.Timeout(5.0), poll_seconds=0, poll_interval=0.01, poll_deadline=5.0)
    options.update(overrides)
    return VisionReviewer(SENTINEL, **options)


@pytest.fixture
def reviewer(emu):
    with make_reviewer(emu) as r:
        yield r


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "img.png"
    Image.new("RGB", (640, 480), (200, 40, 40)).save(path)
    return path


@pytest.fixture
def noisy_image(tmp_path) -> Path:
    path = tmp_path / "noisy.png"
    Image.frombytes("RGB", (2000, 1500), os.urandom(2000 * 1500 * 3)).save(path)
    return path


# ----------------------------------------------------------------------------- review

def test_review_passes_and_sends_image_before_text(emu, reviewer, image):
    review = reviewer.review(image, {"campaign": "spring", "subject": "red poster"})
    assert (review.verdict, review.reasons, review.model) == ("pass", [], MODEL)
    assert review.alt_text == "Colorful overlapping circles on a flat background"
    sent = emu.requests[-1]
    assert sent["model"] == MODEL and '"campaign": "spring"' in sent["body"]["text"]
    assert '"verdict"' in sent["body"]["text"]


def test_large_image_is_shrunk_under_the_inline_limit(emu, reviewer, noisy_image):
    reviewer.review(noisy_image, "anything")
    assert emu.requests[-1]["body"]["image_chars"] <= 180_000


def test_unparseable_answer_is_a_failing_review(emu, reviewer, image, caplog):
    emu.faults.chat_reply = "Looks great to me! Ship it."
    review = reviewer.review(image, "brief")
    assert review.verdict == "fail" and review.reasons == [UNPARSEABLE]
    assert "unparseable review" in caplog.text


@pytest.mark.parametrize("text, verdict, reasons", [
    ('{"verdict": "pass", "reasons": [], "alt_text": "x"}', "pass", []),
    ('Sure:\n```json\n{"verdict": "FAIL", "reasons": ["garbled text"]}\n```', "fail", ["garbled text"]),
    ('<think>hmm {"verdict": "pass"}</think> Result: {"verdict": "fail", "reasons": "extra finger"}', "fail",
     ["extra finger"]),
    ('{"verdict": "maybe"}', "fail", [UNPARSEABLE]),
    ("[1, 2, 3]", "fail", [UNPARSEABLE]),
    ("", "fail", [UNPARSEABLE]),
])
def test_parse_review_is_lenient_in_form_strict_in_meaning(text, verdict, reasons):
    review = parse_review(text, MODEL)
    assert (review.verdict, review.reasons) == (verdict, reasons)


def test_review_alt_text_is_capped():
    review = parse_review('{"verdict": "pass", "alt_text": "' + "word " * 60 + '"}', MODEL)
    assert len(review.alt_text) <= 125 and review.alt_text.endswith("…")


def test_202_answer_is_polled(emu, reviewer, image):
    emu.faults.accept_202, emu.faults.polls_before_result = True, 2
    assert reviewer.review(image, "brief").verdict == "pass"
    assert emu.calls["status"] == 3 and emu.calls["chat"] == 1


# ----------------------------------------------------------------------------- alt text

def test_alt_text_from_the_model_is_cleaned(emu, reviewer, image):
    assert reviewer.alt_text(image, "red poster") == "Colorful overlapping circles on a flat background"
    emu.faults.chat_reply = "Alt text: " + "a very long description " * 10
    text = reviewer.alt_text(image, "red poster")
    assert len(text) <= 125 and not text.lower().startswith("alt text")


def test_empty_model_alt_text_falls_back_to_the_template(emu, reviewer, image):
    emu.faults.chat_reply = "   "
    assert reviewer.alt_text(image, "A cinematic photo of a red vintage bicycle, golden hour") == \
        "A red vintage bicycle"


@pytest.mark.parametrize("prompt, brand, expected", [
    ("A cinematic photo of a luxury watch on marble, studio lighting, 8k", "Acme", "Acme: A luxury watch on marble"),
    ("Professional product shot of Acme sneakers. White background", "Acme", "Acme sneakers"),
    ("", None, "Marketing image"),
    ("hero banner of mountain lake at dawn -- epic, panoramic", None, "Mountain lake at dawn"),
])
def test_template_alt_text_uses_the_prompt_subject(prompt, brand, expected):
    assert template_alt_text(prompt, brand) == expected


def test_template_alt_text_is_at_most_125_chars():
    text = template_alt_text("an endless " + "very " * 80 + "long subject", "Brand")
    assert len(text) <= 125 and text.startswith("Brand: An endless very")


def test_clean_alt_text_strips_quotes_and_labels():
    assert clean_alt_text('ALT TEXT: "A dog on a beach"') == "A dog on a beach"


# ----------------------------------------------------------------------------- errors, pacing, secrets

def test_expired_key_is_an_auth_error_without_the_key(emu, reviewer, image):
    emu.faults.expired_key = True
    with pytest.raises(ProviderAuthError) as info:
        reviewer.review(image, "brief")
    assert SENTINEL not in str(info.value) and "***" in str(info.value)


def test_unknown_model_is_request_invalid(emu, reviewer, image):
    emu.faults.model_not_enabled = {MODEL}
    with pytest.raises(ProviderRequestInvalid, match="not available for this account"):
        reviewer.review(image, "brief")


def test_429_retry_after_pauses_limiter_and_retries_succeed(emu, image):
    limiter = TokenBucket(6000)
    emu.faults.storm_429, emu.faults.retry_after = 1, 0.2
    with make_reviewer(emu, limiter=limiter) as r:
        with pytest.raises(TransientProviderError) as info:
            r.review(image, "brief")
        assert info.value.retry_after == pytest.approx(0.2)
        emu.faults.storm_429 = 1
        assert retry_while_transient(lambda: r.review(image, "brief"), attempts=3).verdict == "pass"
    assert emu.spent == 1


@pytest.mark.parametrize("fault, expected, message", [
    ("error_5xx", TransientProviderError, "HTTP 503"),
    ("malformed_json", TransientProviderError, "malformed JSON"),
])
def test_server_faults_are_transient(emu, reviewer, image, fault, expected, message):
    setattr(emu.faults, fault, 1)
    with pytest.raises(expected, match=message):
        reviewer.review(image, "brief")


def test_slow_answer_times_out(emu, image):
    emu.faults.slow = 1.0
    with make_reviewer(emu, timeout=httpx.Timeout(0.3)) as r:
        with pytest.raises(TransientProviderError, match="timed out"):
            r.review(image, "brief")


def test_reviewer_shares_the_account_bucket_with_image_generation():
    key = "nvapi-shared-bucket-test"
    with VisionReviewer.for_account(key, rate_per_minute=777) as r, \
            NvidiaClient.for_account(key, rate_per_minute=777) as c:
        assert r.limiter is c.limiter


def test_secrets_never_logged_or_raised(emu, reviewer, image, caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    for fault in ({"expired_key": True}, {"storm_429": 1}, {"error_5xx": 1}, {"malformed_json": 1}):
        emu.reset()
        for name, value in fault.items():
            setattr(emu.faults, name, value)
        with pytest.raises(ProviderError) as info:
            reviewer.review(image, "brief")
        seen += [str(info.value), repr(info.value)]
    emu.reset()
    seen += [reviewer.review(image, "brief").model_dump_json(), repr(reviewer), caplog.text]
    assert caplog.records and not [text for text in seen if SENTINEL in text]


def test_block_builds_a_reviewer_in_memory(emu, image):
    credentials = NvidiaCredentials(api_key=SENTINEL, **endpoints(emu.url))
    block = NvidiaVisionReviewer(credentials=credentials, base_url=f"{emu.url}/v1", model=MODEL,
                                 rate_per_minute=6000, timeout_seconds=5)
    with block.get_reviewer() as r:
        assert r.review(image, "brief").verdict == "pass"
    assert SENTINEL not in repr(block)


# ----------------------------------------------------------------------------- lost answers (a review is paid)

def lost_review_budget():
    from imagegen.budget import CallBudget

    return CallBudget(None)


def test_a_lost_review_answer_counts_as_spent_and_is_sent_again_at_most_once(emu, reviewer, image, tmp_path):
    from imagegen.budget import paid_call
    from imagegen.errors import OutcomeUnknown
    from imagegen.pending import FolderJournal

    journal, budget = FolderJournal(tmp_path / ".pending"), lost_review_budget()
    emu.faults.drop_after_accept = 2  # the first answer and the resend's are both lost
    for _ in range(2):
        with pytest.raises(OutcomeUnknown) as lost:
            paid_call(budget, "vlm", lambda: reviewer.review(image, "brief", journal=journal))
    assert lost.value.transient is False and "not sent again" in str(lost.value)  # the task retries no more
    assert emu.spent == 2 and budget.spent == 2 and budget.outcome_unknown == 2

    emu.faults.error_after_submit = 1  # a new run: a 502 after the work was done is a lost answer too
    budget = lost_review_budget()
    with pytest.raises(OutcomeUnknown):
        paid_call(budget, "vlm", lambda: reviewer.review(image, "other brief", journal=journal))
    assert paid_call(budget, "vlm", lambda: reviewer.review(image, "other brief", journal=journal)).verdict == "pass"
    # the answered request's entry is gone; the one lost twice stays written down (it may have been billed)
    assert emu.spent == 4 and budget.spent == 2 and len(list((tmp_path / ".pending").glob("*.json"))) == 1


def test_a_review_still_running_at_the_deadline_is_polled_again_not_paid_again(emu, image, tmp_path):
    from imagegen.pending import FolderJournal

    journal = FolderJournal(tmp_path / ".pending")
    emu.faults.accept_202, emu.faults.polls_before_result = True, 10_000
    with make_reviewer(emu, poll_deadline=0.3) as r:
        with pytest.raises(TransientProviderError, match="is kept"):
            r.review(image, "brief", journal=journal)
        emu.finish_jobs()
        assert r.review(image, "brief", journal=journal).verdict == "pass"
    assert emu.spent == 1 and list((tmp_path / ".pending").glob("*.json")) == []


# ----------------------------------------------------------------------------- a review resumed on a spent budget

def test_a_kept_review_request_is_polled_on_a_spent_budget_and_counts_nothing(emu, image, tmp_path):
    """The review's NVCF id is kept at the poll deadline (its call counted); the retry, on a budget that
    call used up, polls the id for free and gets the paid answer."""
    emu.faults.accept_202, emu.faults.polls_before_result = True, 10**6
    journal, budget = FolderJournal.under(tmp_path / "masters"), CallBudget(1)
    with make_reviewer(emu, poll_deadline=0.2) as vlm:
        def review():
            return paid_call(budget, "vlm", lambda: vlm.review(image, "brief", journal=journal), image=False,
                             charged_when_sent=charges_when_sending(vlm))

        with pytest.raises(TransientProviderError, match="is kept"):
            review()
        emu.finish_jobs()
        assert review().verdict == "pass"
    assert emu.calls["chat"] == 1 and budget.spent == 1 and dict(+budget.by_provider) == {"vlm": 1}
    assert journal.entries() == []
