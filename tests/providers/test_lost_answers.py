"""Answers lost in transit, against the NVIDIA and neuroflash emulators over HTTP (no Prefect).

A paid request is never sent blindly twice: a kept NVCF request id is polled again, a neuroflash
image is adopted from the history, and a synchronous request is sent again only through
imagegen.budget.paid_call (at most once per run). Task retries are stood in for by
tests.providers.task_retries.retry_while_transient, as in the other provider suites.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegen.budget import CallBudget, paid_call
from imagegen.daily_images import DailyImages, DailyImagesExhausted, SqliteCounts
from imagegen.errors import BudgetExhausted, OutcomeUnknown, StillRunning, TransientProviderError, is_transient
from imagegen.models import GenerationRequest, ImageRef
from imagegen.paid_sends import charges_when_sending
from imagegen.pending import RECOVERED_KEY, FolderJournal
from imagegen.providers.neuroflash import NeuroflashGenerator
from imagegen.providers.neuroflash_client import NeuroflashClient
from imagegen.providers.nvidia import NvidiaClient, NvidiaGenerator
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.nvidia import NvidiaEmulator, endpoints
from tests.emulators.serve import serve_asgi
from tests.providers.task_retries import retry_while_transient

NVIDIA_KEY = "nvapi-lost-answers-key"
NF_ID, NF_SECRET = "nf-lost-client", "nf-lost-secret"


class _Switch:
    target = None

    async def __call__(self, scope, receive, send):
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def loopback():
    switch = _Switch()
    with serve_asgi(switch) as url:
        yield switch, url


@pytest.fixture
def nvidia(loopback) -> NvidiaEmulator:
    switch, url = loopback
    switch.target = emulator = NvidiaEmulator(api_key=NVIDIA_KEY)
    emulator.url = url
    return emulator


def nvidia_client(emu: NvidiaEmulator, **overrides) -> NvidiaClient:
    options = dict(endpoints(emu.url), timeout=httpx.Timeout(5.0), poll_seconds=0, poll_interval=0.01,
                   poll_deadline=5.0)
    options.update(overrides)
    return NvidiaClient(NVIDIA_KEY, **options)


@pytest.fixture
def neuroflash(loopback) -> NeuroflashEmulator:
    switch, url = loopback
    switch.target = emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET)
    emulator.base_url = url
    return emulator


def neuroflash_generator(emu: NeuroflashEmulator) -> NeuroflashGenerator:
    client = NeuroflashClient(NF_ID, NF_SECRET, api_url=f"{emu.base_url}/api", token_url=f"{emu.base_url}/oauth/v2/token",
                              timeout=5.0, rate_per_minute=60_000, sleep=lambda s: None)
    return NeuroflashGenerator(client)


def request(seed: int = 42, **fields) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a ceramic mug on a wooden table", "width": 1024, "height": 1024,
                                "seed": seed, **fields})


def pending(dest: Path) -> list:
    return FolderJournal.under(dest).entries()


def images(dest: Path) -> list[Path]:
    return sorted(p for p in dest.glob("*") if p.is_file())


# --------------------------------------------------------------------------- NVCF: request ids kept

def test_a_dropped_poll_answer_is_polled_again_not_paid_again(nvidia, tmp_path):
    nvidia.faults.accept_202, nvidia.faults.polls_before_result, nvidia.faults.drop_poll_answer = True, 1, 1
    with nvidia_client(nvidia) as client:
        made = NvidiaGenerator(client).generate(request(), tmp_path)
    assert nvidia.dropped == 1 and nvidia.paid_generations == 1 and nvidia.calls["genai"] == 1
    assert made.metadata["nvcf_request_id"] and RECOVERED_KEY not in made.metadata
    assert pending(tmp_path) == [] and len(images(tmp_path)) == 1


def test_the_poll_deadline_keeps_the_request_id_and_the_next_call_resumes_it(nvidia, tmp_path):
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6  # it finishes much later
    with nvidia_client(nvidia, poll_deadline=0.2) as client:
        with pytest.raises(TransientProviderError, match="is kept") as info:
            NvidiaGenerator(client).generate(request(), tmp_path)
        # the id is known: nothing was lost, and this call did pay (so it is not a free StillRunning)
        assert not isinstance(info.value, (OutcomeUnknown, StillRunning))
        (kept,) = pending(tmp_path)
        assert kept.request_id in nvidia.jobs and kept.sends == 1
        with pytest.raises(StillRunning, match="is kept"):  # a retry polls again and pays nothing
            NvidiaGenerator(client).generate(request(), tmp_path)
        nvidia.finish_jobs()
        made = NvidiaGenerator(client).generate(request(), tmp_path)
    assert nvidia.paid_generations == 1 and nvidia.calls["genai"] == 1
    assert made.metadata["nvcf_request_id"] == kept.request_id and made.metadata[RECOVERED_KEY]
    assert pending(tmp_path) == [] and len(images(tmp_path)) == 1


def test_an_expired_request_id_is_paid_again(nvidia, tmp_path):
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6
    with nvidia_client(nvidia, poll_deadline=0.2) as client:
        with pytest.raises(TransientProviderError):
            NvidiaGenerator(client).generate(request(), tmp_path)
        (kept,) = pending(tmp_path)
        nvidia.jobs.clear()  # NVCF forgot it: polls now answer 404
        nvidia.faults.polls_before_result = 0
        made = NvidiaGenerator(client).generate(request(), tmp_path)
    assert nvidia.paid_generations == 2 and made.metadata["nvcf_request_id"] != kept.request_id
    assert RECOVERED_KEY not in made.metadata and pending(tmp_path) == []


def test_an_edit_through_an_asset_is_resumed_without_uploading_again(nvidia, tmp_path):
    source = tmp_path / "source.png"
    Image.effect_noise((1200, 900), 60).convert("RGB").save(source)  # noise: too big to send inline
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6
    dest = tmp_path / "masters"
    with nvidia_client(nvidia, poll_deadline=0.2, inline_image_limit=1000) as client:
        generator = NvidiaGenerator(client)
        with pytest.raises(TransientProviderError, match="is kept"):
            generator.edit(ImageRef.from_file(source), "make it blue", request(), dest)
        nvidia.finish_jobs()
        made = generator.edit(ImageRef.from_file(source), "make it blue", request(), dest)
    assert nvidia.calls["assets_create"] == 1 and nvidia.paid_generations == 1
    assert made.metadata[RECOVERED_KEY] and pending(dest) == []


# --------------------------------------------------------------------------- synchronous answers lost

@pytest.mark.parametrize("fault", ["drop_after_accept", "error_after_submit"])
@pytest.mark.parametrize("accept_202", [False, True], ids=["sync-200", "nvcf-202-before-its-id"])
def test_a_lost_synchronous_answer_is_outcome_unknown_and_kept(nvidia, tmp_path, fault, accept_202):
    setattr(nvidia.faults, fault, 1)
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = accept_202, 0
    with nvidia_client(nvidia) as client:
        generator = NvidiaGenerator(client)
        with pytest.raises(OutcomeUnknown, match="outcome unknown") as info:
            generator.generate(request(), tmp_path)
        assert is_transient(info.value) and info.value.request_key
        (lost,) = pending(tmp_path)
        assert lost.key == info.value.request_key and lost.request_id is None
        generator.generate(request(), tmp_path)  # what the task's one retry does
    assert nvidia.paid_generations == 2 and pending(tmp_path) == []


def test_a_refusal_before_any_work_is_not_a_lost_answer(nvidia, tmp_path):
    nvidia.faults.error_5xx = 1  # 503: the request never ran
    with nvidia_client(nvidia) as client:
        with pytest.raises(TransientProviderError) as info:
            NvidiaGenerator(client).generate(request(), tmp_path)
    assert not isinstance(info.value, OutcomeUnknown) and pending(tmp_path) == []
    assert nvidia.paid_generations == 0


def test_a_read_timeout_after_the_body_was_sent_is_outcome_unknown(nvidia, tmp_path):
    nvidia.faults.slow = 1.0  # the server works on, and charges, after the client gave up
    with nvidia_client(nvidia, timeout=httpx.Timeout(0.3)) as client:
        with pytest.raises(OutcomeUnknown, match="timed out"):
            NvidiaGenerator(client).generate(request(), tmp_path)
    assert len(pending(tmp_path)) == 1


@pytest.mark.parametrize("drops, paid, made", [(1, 2, True), (2, 2, False)])
def test_a_run_sends_a_lost_request_again_at_most_once(nvidia, tmp_path, drops, paid, made):
    """paid_call as the tasks use it, with task retries: one more send after a lost answer, never two."""
    nvidia.faults.drop_after_accept = drops
    budget = CallBudget(None)
    with nvidia_client(nvidia) as client:
        generator = NvidiaGenerator(client)

        def attempt():
            return paid_call(budget, "nvidia", lambda: generator.generate(request(), tmp_path))

        if made:
            assert retry_while_transient(attempt, attempts=4).image
        else:
            with pytest.raises(OutcomeUnknown, match="not sent again") as info:
                retry_while_transient(attempt, attempts=4)
            assert not is_transient(info.value)
    assert nvidia.paid_generations == paid and budget.spent == paid and budget.outcome_unknown == drops


# --------------------------------------------------------------------------- neuroflash: adopted from history

@pytest.mark.parametrize("fault", ["drop_after_accept", "error_after_submit"])
def test_a_lost_neuroflash_answer_is_adopted_from_the_history(neuroflash, tmp_path, fault):
    neuroflash.set_fault(fault)
    generator = neuroflash_generator(neuroflash)
    with pytest.raises(OutcomeUnknown):
        generator.generate(request(), tmp_path)
    assert neuroflash.paid_generations == 1 and len(pending(tmp_path)) == 1
    made = generator.generate(request(), tmp_path)  # the task's retry
    (charged,) = neuroflash.images
    assert made.metadata["image_id"] == charged and made.metadata[RECOVERED_KEY]
    assert hashlib.sha256(neuroflash.images[charged]["bytes"]).hexdigest() == made.image.sha256
    assert neuroflash.paid_generations == 1 and neuroflash.calls["generate"] == 1
    assert pending(tmp_path) == [] and generator.images_generated == 0


def test_an_image_another_variation_made_is_never_adopted(neuroflash, tmp_path):
    """neuroflash takes no seed: two variations send the same prompt. Variation 2 is made first; the
    answer to variation 1 is lost; its retry must adopt its own image, not variation 2's."""
    generator = neuroflash_generator(neuroflash)
    second = generator.generate(request(seed=2), tmp_path)
    # made a few seconds before the lost request was sent: within the clock-skew margin, so a candidate,
    # and the oldest one
    neuroflash.history[0]["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    neuroflash.set_fault("drop_after_accept")
    with pytest.raises(OutcomeUnknown):
        generator.generate(request(seed=1), tmp_path)
    first = generator.generate(request(seed=1), tmp_path)
    assert first.metadata["image_id"] != second.metadata["image_id"]
    assert first.metadata["image_id"] == neuroflash.history[0]["output_image_id"]  # the newest: the lost one
    assert neuroflash.paid_generations == 2 and first.image.sha256 != second.image.sha256


def test_a_lost_neuroflash_image_missing_from_the_history_is_paid_again(neuroflash, tmp_path):
    neuroflash.set_fault("drop_after_accept")
    generator = neuroflash_generator(neuroflash)
    with pytest.raises(OutcomeUnknown):
        generator.generate(request(), tmp_path)
    neuroflash.history.clear()  # deleted meanwhile (or beyond the history's first page)
    made = generator.generate(request(), tmp_path)
    assert neuroflash.paid_generations == 2 and RECOVERED_KEY not in made.metadata and pending(tmp_path) == []


def test_a_lost_neuroflash_edit_is_adopted_from_the_history(neuroflash, tmp_path):
    generator = neuroflash_generator(neuroflash)
    master = generator.generate(request(), tmp_path)
    edit_request = request().model_copy(update={"spec": {"neuroflash_image_id": master.metadata["image_id"]}})
    neuroflash.set_fault("drop_after_accept", route="edit")
    with pytest.raises(OutcomeUnknown):
        generator.edit(master.image, "warmer light", edit_request, tmp_path)
    edited = generator.edit(master.image, "warmer light", edit_request, tmp_path)
    assert edited.metadata[RECOVERED_KEY] and neuroflash.calls["edit"] == 1
    assert neuroflash.paid_generations == 2 and pending(tmp_path) == []


def test_a_neuroflash_refusal_looks_nothing_up(neuroflash, tmp_path):
    neuroflash.set_fault("error_5xx")  # 503: nothing was made
    generator = neuroflash_generator(neuroflash)
    with pytest.raises(TransientProviderError) as info:
        generator.generate(request(), tmp_path)
    assert not isinstance(info.value, OutcomeUnknown) and pending(tmp_path) == []
    generator.generate(request(), tmp_path)
    assert neuroflash.calls["history"] == 0 and neuroflash.paid_generations == 1


# --------------------------------------------------------------------------- a spent budget and a free resume

def paid(budget: CallBudget, generator, make):
    """paid_call as the tasks make it: a journalling generator is charged when it sends."""
    return paid_call(budget, generator.name, make, charged_when_sent=charges_when_sending(generator))


def test_a_kept_request_id_is_polled_on_a_spent_budget_and_counts_nothing(nvidia, tmp_path):
    """The run's last call paid and kept its NVCF id at the poll deadline; the task's retry finds the
    budget spent, yet polls the id (free) and gets the image that was paid for."""
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6
    budget = CallBudget(1)
    with nvidia_client(nvidia, poll_deadline=0.2) as client:
        generator = NvidiaGenerator(client)
        with pytest.raises(TransientProviderError, match="is kept"):
            paid(budget, generator, lambda: generator.generate(request(), tmp_path))
        assert budget.spent == 1  # that call sent the request: counted, and the budget is now spent
        with pytest.raises(StillRunning):
            paid(budget, generator, lambda: generator.generate(request(), tmp_path))
        nvidia.finish_jobs()
        made = paid(budget, generator, lambda: generator.generate(request(), tmp_path))
    assert made.metadata[RECOVERED_KEY] and nvidia.paid_generations == 1
    assert budget.spent == 1 and budget.recovered == 1 and dict(+budget.by_provider) == {"nvidia": 1}
    assert pending(tmp_path) == []


def test_an_expired_request_id_on_a_spent_budget_is_not_paid_again(nvidia, tmp_path):
    """The free poll finds the id expired: paying again is a new call, which the spent budget stops
    before anything (the asset upload included) is sent."""
    source = tmp_path / "source.png"
    Image.effect_noise((1200, 900), 60).convert("RGB").save(source)  # too big to send inline: an asset
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6
    budget = CallBudget(1)
    with nvidia_client(nvidia, poll_deadline=0.2) as client:
        generator = NvidiaGenerator(client)

        def edit():
            return generator.edit(ImageRef.from_file(source), "warmer light", request(), tmp_path / "masters")

        with pytest.raises(TransientProviderError, match="is kept"):
            paid(budget, generator, edit)
        uploads = nvidia.calls["assets_create"]
        nvidia.jobs.clear()  # NVCF forgot it: polls now answer 404
        with pytest.raises(BudgetExhausted):
            paid(budget, generator, edit)
    assert nvidia.paid_generations == 1 and nvidia.calls["assets_create"] == uploads
    assert budget.spent == 1 and budget.recovered == 0 and dict(+budget.by_provider) == {"nvidia": 1}


def test_a_lost_neuroflash_answer_is_adopted_on_a_spent_budget_and_counts_nothing(neuroflash, tmp_path):
    neuroflash.set_fault("drop_after_accept")
    generator = neuroflash_generator(neuroflash)
    budget = CallBudget(1)
    with pytest.raises(OutcomeUnknown):
        paid(budget, generator, lambda: generator.generate(request(), tmp_path))
    assert budget.spent == 1 and budget.outcome_unknown == 1
    made = paid(budget, generator, lambda: generator.generate(request(), tmp_path))  # the task's retry
    assert made.metadata[RECOVERED_KEY] and neuroflash.paid_generations == 1
    assert budget.spent == 1 and budget.recovered == 1 and dict(+budget.by_provider) == {"neuroflash": 1}
    with pytest.raises(BudgetExhausted):  # a request never sent is stopped by the spent budget, before sending
        paid(budget, generator, lambda: generator.generate(request(seed=2), tmp_path))
    assert neuroflash.paid_generations == 1 and pending(tmp_path) == []


def test_a_free_resume_needs_no_daily_image_and_a_new_send_does(nvidia, tmp_path):
    """The daily image budget (IMAGEGEN_NVIDIA_IMAGES_PER_DAY) is counted when a request is sent, so a
    resumed request id costs no image of the day, and a new request past the limit is stopped."""
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6
    day = DailyImages(SqliteCounts(tmp_path / "catalog.db"), {"nvidia": 1}, holder="run-1")
    budget = CallBudget(None, daily=day)
    with nvidia_client(nvidia, poll_deadline=0.2) as client:
        generator = NvidiaGenerator(client)
        with pytest.raises(TransientProviderError, match="is kept"):
            paid(budget, generator, lambda: generator.generate(request(), tmp_path))
        assert day.sent_today("nvidia") == 1  # the day's only image is spent on it
        nvidia.finish_jobs()
        made = paid(budget, generator, lambda: generator.generate(request(), tmp_path))
        assert made.metadata[RECOVERED_KEY] and day.sent_today("nvidia") == 1
        nvidia.faults.accept_202 = False
        with pytest.raises(DailyImagesExhausted):
            paid(budget, generator, lambda: generator.generate(request(seed=7), tmp_path))
    assert nvidia.paid_generations == 1 and budget.spent == 1 and budget.recovered == 1
    assert day.sent_today("nvidia") == 1 and pending(tmp_path) == []
