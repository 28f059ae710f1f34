"""The pending-requests journal, the lost-answer rules of the run budget, and the neuroflash history
match, without Prefect or HTTP (the provider behaviour is in tests/providers/test_lost_answers.py)."""

from __future__ import annotations

import os
import time

import pytest

from imagegen.budget import CallBudget, paid_call
from imagegen.errors import (
    BudgetExhausted,
    OutcomeUnknown,
    ProviderError,
    StillRunning,
    TransientProviderError,
    is_transient,
    outcome_unknown,
)
from imagegen.paid_sends import sending_paid_request
from imagegen.pending import (
    CLAIM_TTL_SECONDS,
    PENDING_FOLDER,
    PENDING_TTL_SECONDS,
    RECOVERED_KEY,
    FolderJournal,
    PendingRequest,
    new_entry,
    request_key,
)
from imagegen.providers.neuroflash_api import HistoryItem
from imagegen.providers.neuroflash_history import CLOCK_SKEW_SECONDS, adopt_lost_image, lost_image_candidates
from imagegen.summary import RunSummary


def entry(key: str, **fields) -> PendingRequest:
    return PendingRequest(key=key, provider="nvidia", endpoint="http://x/v1/genai/m", sent_at=time.time(), **fields)


# --------------------------------------------------------------------------- the journal

def test_an_entry_is_kept_under_the_masters_folder_until_removed(tmp_path):
    journal = FolderJournal.under(tmp_path)
    key = request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 1})
    assert journal.get(key) is None
    journal.record(entry(key, request_id="req-1"))
    path = tmp_path / PENDING_FOLDER / f"{key}.json"
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    assert FolderJournal.under(tmp_path).get(key).request_id == "req-1"  # another process sees it
    journal.record(entry(key, request_id="req-2", sends=2))  # replaced whole
    assert journal.get(key).request_id == "req-2" and journal.get(key).sends == 2
    journal.remove(key)
    journal.remove(key)  # removing twice is fine
    assert journal.get(key) is None and not path.exists()


def test_an_unreadable_entry_reads_as_none(tmp_path):
    journal = FolderJournal.under(tmp_path)
    key = request_key("http://x", {"a": 1})
    (tmp_path / PENDING_FOLDER).mkdir()
    (tmp_path / PENDING_FOLDER / f"{key}.json").write_text('{"key": "')
    assert journal.get(key) is None


def test_keys_are_hex_digests_only(tmp_path):
    with pytest.raises(ValueError, match="hex digest"):
        FolderJournal.under(tmp_path).get("../../etc/passwd")


def test_the_key_is_the_exact_request_and_never_holds_credentials():
    base = request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 1})
    assert base == request_key("http://x/v1/genai/m", {"seed": 1, "prompt": "a cat"})  # key order is not the request
    assert base != request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 2})
    assert base != request_key("http://x/v1/genai/other", {"prompt": "a cat", "seed": 1})
    assert base != request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 1}, 7)  # a discriminator
    # a password in the URL is masked before hashing: rotating it does not orphan pending requests
    assert request_key("http://u:one@x/api", {}) == request_key("http://u:two@x/api", {})
    entry_ = new_entry(base, "nvidia", "http://u:secret@x/api?token=abc")
    assert "secret" not in entry_.endpoint and "abc" not in entry_.endpoint


def test_new_entry_counts_the_sends_of_a_lost_request():
    first = new_entry("ab", "neuroflash", "http://x", prompt="p")
    assert first.sends == 1 and first.request_id is None and first.prompt == "p"
    assert new_entry("ab", "neuroflash", "http://x", first).sends == 2


def written_before(journal: FolderJournal, key: str, seconds: float, **fields) -> PendingRequest:
    """An entry whose last send was `seconds` ago, written as a run that long ago left it."""
    old = entry(key, **fields).model_copy(update={"sent_at": time.time() - seconds})
    journal.folder.mkdir(parents=True, exist_ok=True)
    (journal.folder / f"{key}.json").write_text(old.model_dump_json())
    return old


def test_an_expired_entry_is_removed_and_its_request_sent_as_new_saying_so(tmp_path, caplog):
    """A synchronous request lost twice and given up stays in the journal; a rerun after
    PENDING_TTL_SECONDS sends it as new (its first send again), with one line naming the file."""
    journal = FolderJournal.under(tmp_path)
    key = request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 1})
    written_before(journal, key, PENDING_TTL_SECONDS + 60, sends=2)
    path = tmp_path / PENDING_FOLDER / f"{key}.json"
    with caplog.at_level("WARNING", logger="imagegen.pending"):
        assert journal.get(key) is None
    assert not path.exists()
    (line,) = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
    assert str(path) in line and "2 send(s)" in line and "sent as new" in line and "\n" not in line
    assert new_entry(key, "nvidia", "http://x/v1/genai/m", journal.get(key)).sends == 1


def test_an_entry_within_its_age_is_read_and_counts_its_sends(tmp_path):
    journal = FolderJournal.under(tmp_path)
    key = request_key("http://x/v1/genai/m", {"prompt": "a cat", "seed": 1})
    written_before(journal, key, PENDING_TTL_SECONDS - 60, sends=2)
    kept = journal.get(key)
    assert kept is not None and new_entry(key, "nvidia", "http://x", kept).sends == 3


def test_expired_entries_nobody_asks_for_again_are_swept_once_per_folder(tmp_path):
    journal = FolderJournal.under(tmp_path)
    stale = written_before(journal, "aa", PENDING_TTL_SECONDS + 1, request_id="gone")
    fresh = written_before(journal, "bb", 10, request_id="r2")
    def files() -> list[str]:
        return sorted(path.stem for path in journal.folder.glob("*.json"))

    assert journal.get("cc") is None  # the first look at the folder sweeps it
    assert files() == [fresh.key] and stale.key != fresh.key
    written_before(journal, "dd", PENDING_TTL_SECONDS + 1)
    journal.get("cc")
    assert files() == ["bb", "dd"], "swept once per folder and process, not on every read"
    assert journal.forget_expired() == 1 and files() == ["bb"]
    written_before(journal, "ee", PENDING_TTL_SECONDS + 1)
    assert journal.entries() == [fresh] and files() == ["bb"], "what is still pending: never an expired entry"


def test_only_unexpired_entries_with_a_free_answer_are_resumable(tmp_path):
    journal = FolderJournal.under(tmp_path)
    journal.record(entry("a1", request_id="r1"))  # an NVCF id to poll
    journal.record(entry("a2", prompt="a cat").model_copy(update={"provider": "neuroflash"}))
    journal.record(entry("a3"))  # synchronous: only paying again answers it
    written_before(journal, "a4", PENDING_TTL_SECONDS + 1, request_id="r4")
    assert journal.resumable("nvidia") == 1 and journal.resumable("neuroflash") == 1


def test_an_entry_expires_before_the_claims_its_history_lookup_relies_on():
    assert PENDING_TTL_SECONDS + CLOCK_SKEW_SECONDS < CLAIM_TTL_SECONDS


def test_an_image_is_claimed_once(tmp_path):
    journal = FolderJournal.under(tmp_path)
    assert journal.claim("neuroflash", "img-1") is True
    assert journal.claim("neuroflash", "img-1") is False
    assert FolderJournal.under(tmp_path).claim("neuroflash", "img-1") is False
    assert journal.claim("other", "img-1") is True


def test_old_claims_are_forgotten(tmp_path):
    journal = FolderJournal.under(tmp_path)
    journal.claim("neuroflash", "old")
    journal.claim("neuroflash", "new")
    long_ago = time.time() - 8 * 24 * 3600
    os.utime(journal.claim_path("neuroflash", "old"), (long_ago, long_ago))
    assert journal.forget_old_claims() == 1
    assert journal.claim("neuroflash", "old") is True and journal.claim("neuroflash", "new") is False


# --------------------------------------------------------------------------- what a lost answer is

@pytest.mark.parametrize("status, lost", [(500, True), (502, True), (504, True), (503, False), (429, False)])
def test_a_5xx_after_submission_leaves_the_outcome_unknown(status, lost):
    assert outcome_unknown(TransientProviderError("x", status=status)) is lost


def test_a_dropped_answer_leaves_the_outcome_unknown_a_refusal_does_not():
    dropped = TransientProviderError("read timeout")
    dropped.answer_lost = True
    assert outcome_unknown(dropped)
    assert not outcome_unknown(TransientProviderError("connect error"))
    assert not outcome_unknown(ProviderError("422", status=422))


# --------------------------------------------------------------------------- the run budget

class Made:
    def __init__(self, **metadata):
        self.metadata = metadata


def lose(key: str):
    def call():
        raise OutcomeUnknown("nvidia: timed out; outcome unknown", provider="nvidia", request_key=key)
    return call


def test_a_lost_answer_counts_as_spent_and_is_sent_again_at_most_once():
    budget = CallBudget(None)
    with pytest.raises(OutcomeUnknown) as first:
        paid_call(budget, "nvidia", lose("k1"))
    assert is_transient(first.value)  # the task's retry sends it once more
    with pytest.raises(OutcomeUnknown) as second:
        paid_call(budget, "nvidia", lose("k1"))
    assert not is_transient(second.value) and "not sent again" in str(second.value)
    assert budget.spent == 2 and budget.outcome_unknown == 2
    with pytest.raises(OutcomeUnknown) as other:  # another request has its own allowance
        paid_call(budget, "nvidia", lose("k2"))
    assert is_transient(other.value)


def test_a_call_that_only_polled_a_request_paid_earlier_gives_its_call_back():
    budget = CallBudget(None)
    assert paid_call(budget, "nvidia", lambda: Made()).metadata == {}

    def still_running():
        raise StillRunning("nvidia: NVCF request r1 still running; request id r1 is kept", provider="nvidia")

    with pytest.raises(StillRunning):
        paid_call(budget, "nvidia", still_running)
    assert budget.spent == 1 and budget.recovered == 0
    paid_call(budget, "nvidia", lambda: Made(**{RECOVERED_KEY: "nvcf request id polled again"}))
    assert budget.spent == 1 and budget.recovered == 1 and budget.outcome_unknown == 0



def test_calls_are_split_by_provider_and_a_call_given_back_leaves_its_provider():
    budget = CallBudget(None)
    paid_call(budget, "nvidia", lambda: Made())
    paid_call(budget, "vlm", lambda: Made())
    with pytest.raises(OutcomeUnknown):
        paid_call(budget, "nvidia", lose("k1"))  # a lost answer stays counted, with its provider
    paid_call(budget, "neuroflash", lambda: Made(**{RECOVERED_KEY: "found in the image history"}))
    assert budget.spent == 3 and dict(+budget.by_provider) == {"nvidia": 2, "vlm": 1}


def test_a_call_charged_when_it_sends_resumes_on_a_spent_budget_and_counts_only_a_send():
    """A journalling generator (charged_when_sent) counts nothing for a free resume, however spent the
    budget is; a new send is counted, and stopped by a spent budget before it goes out."""
    budget = CallBudget(1)
    sent: list[str] = []

    def send(name: str):
        def call():
            sending_paid_request()
            sent.append(name)
            return Made()
        return call

    paid_call(budget, "nvidia", send("first"), charged_when_sent=True)
    assert budget.spent == 1 and sent == ["first"]

    def still_running():
        raise StillRunning("nvidia: NVCF request r1 still running; request id r1 is kept", provider="nvidia")

    with pytest.raises(StillRunning):  # gives back nothing: it took nothing (the first call's count stays)
        paid_call(budget, "nvidia", still_running, charged_when_sent=True)
    recovered = paid_call(budget, "nvidia", lambda: Made(**{RECOVERED_KEY: "nvcf request id polled again"}),
                          charged_when_sent=True)
    assert recovered.metadata[RECOVERED_KEY]
    assert budget.spent == 1 and budget.recovered == 1 and dict(+budget.by_provider) == {"nvidia": 1}
    with pytest.raises(BudgetExhausted):
        paid_call(budget, "nvidia", send("second"), charged_when_sent=True)
    assert sent == ["first"], "a spent budget stops the send itself"
    with pytest.raises(BudgetExhausted):  # a generator that does not say when it sends is charged up front
        paid_call(budget, "local", lambda: Made(**{RECOVERED_KEY: "never reached"}))
    assert budget.spent == 1 and budget.recovered == 1


def test_the_summary_reports_lost_answers_only_when_there_were_any():
    quiet = RunSummary(campaign="c", out_dir="/o")
    assert not [line for line in quiet.lines() if "outcome unknown" in line]
    lossy = RunSummary(campaign="c", out_dir="/o", provider_calls=3, outcome_unknown=1, answers_recovered=0)
    assert "lost answers: outcome unknown: 1, recovered without paying again: 0" in lossy.lines()


# --------------------------------------------------------------------------- neuroflash history match

def item(image_id: str, prompt: str | None, created: str | float | None) -> HistoryItem:
    fields = {"output_image_id": image_id, "output_image_url": f"/api/ds-prototypes/image_generation/{image_id}/view"}
    if prompt is not None:
        fields["prompt"] = prompt
    if created is not None:
        fields["created_at"] = created
    return HistoryItem.model_validate(fields)


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_only_images_with_the_prompt_made_since_the_send_are_candidates():
    sent = time.time()
    lost = PendingRequest(key="ab", provider="neuroflash", endpoint="x", sent_at=sent, prompt="a mug")
    items = [item("later", "a mug", iso(sent + 5)), item("other-prompt", "a cup", iso(sent + 1)),
             item("before", "a mug", iso(sent - CLOCK_SKEW_SECONDS - 5)), item("undated", "a mug", None),
             item("no-prompt", None, iso(sent + 1)), item("within-skew", "a mug", sent - 10),
             item("milliseconds", "a mug", (sent + 2) * 1000)]
    assert [i.output_image_id for i in lost_image_candidates(items, lost)] == ["within-skew", "milliseconds", "later"]


def test_an_image_another_master_claimed_is_not_adopted(tmp_path):
    journal = FolderJournal.under(tmp_path)
    sent = time.time()
    lost = PendingRequest(key="ab", provider="neuroflash", endpoint="x", sent_at=sent, prompt="a mug")
    items = [item("theirs", "a mug", iso(sent)), item("mine", "a mug", iso(sent + 3))]
    journal.claim("neuroflash", "theirs")
    image, found = adopt_lost_image(items, lost, journal)
    assert image.image_id == "mine" and found.output_image_id == "mine"
    assert image.url == "/api/ds-prototypes/image_generation/mine/view"
    assert adopt_lost_image(items, lost, journal) is None  # both are taken now
