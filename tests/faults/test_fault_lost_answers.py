"""Answers lost in transit are never a reason to pay twice: whatever the faults, the providers charge
one generation per master, except the one documented retry of a synchronous request whose answer was
lost, which the run counts as spent and reports as "outcome unknown".

- NVCF: a 202's request id is kept; a poll past the client's deadline or a dropped poll answer is polled
  again by the task's retry, and by a rerun of the same brief once the run gave up.
- neuroflash: a generation whose answer was dropped (or answered 502) is adopted from the image history.
- a synchronous answer (200) dropped or answered 502: sent again once, counted in the budget and the
  summary; lost twice, the master fails without a third payment.

Provider-level behaviour (the journal, expired ids, edits, claims) is in tests/providers/test_lost_answers.py.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from imagegen.pending import PENDING_FOLDER, PENDING_TTL_SECONDS, PendingRequest
from imagegen_flows.deployments.cli import main as cli_main
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.serve import serve_asgi
from tests.faults.conftest import _Switch, catalog_rows, consistency_problems, master_files, write_brief

pytestmark = pytest.mark.prefect

NF_ID, NF_SECRET = "nf-lost-answers", "nf-lost-answers-secret"


def run(capsys, brief, out, *flags: str) -> tuple[int, dict | None, str]:
    code = cli_main(["run", str(brief), "--out", str(out), "--json", *flags])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def summary_artifact(campaign: str) -> str:
    """The markdown of the run's summary artifact on the Prefect API (its latest version)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{campaign}-summary"])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, f"no summary artifact for {campaign}"
    return str(found[0].data)


def request_ids(out) -> set[str]:
    return {json.loads(row["metadata"]).get("nvcf_request_id") for row in catalog_rows(out) if row["variant"] == "master"}


@pytest.fixture(scope="module")
def neuroflash_loopback():
    switch = _Switch()
    with serve_asgi(switch) as url:
        yield switch, url


@pytest.fixture
def neuroflash(neuroflash_loopback, monkeypatch) -> NeuroflashEmulator:
    switch, url = neuroflash_loopback
    switch.target = emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=256)
    for name, value in emulator.run_environment(url).items():
        monkeypatch.setenv(name, value)
    return emulator


# --------------------------------------------------------------------------- NVCF 202: the request id is kept

def test_nvcf_polls_past_the_deadline_and_a_dropped_poll_answer_are_resumed_by_the_retry(
        prefect_harness, nvidia, fast_retries, tmp_path, capsys, monkeypatch):
    """Each call polls for 0.5 s (one poll, a second apart); the jobs answer on their second poll and
    the first final answer is dropped: the task's retries poll the same request ids until they answer."""
    monkeypatch.setenv("IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS", "0.5")
    nvidia.faults.accept_202, nvidia.faults.polls_before_result, nvidia.faults.drop_poll_answer = True, 1, 1
    brief = write_brief(tmp_path, "lost-nvcf-poll", provider={"name": "nvidia"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert nvidia.dropped == 1 and nvidia.calls["status"] >= 4  # the deadline and the drop happened
    assert nvidia.paid_generations == 2 == summary["published"] and nvidia.calls["genai"] == 2
    assert summary["provider_calls"] == 2 and summary["outcome_unknown"] == 0
    assert len(request_ids(out) - {None}) == 2
    assert consistency_problems(out, masters=2) == []
    assert not list((out / "masters" / ".pending").glob("*.json")), "a stored answer leaves no pending entry"


def test_nvcf_requests_still_running_when_the_run_gives_up_are_resumed_by_the_rerun(
        prefect_harness, nvidia, fast_retries, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS", "0.3")
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6  # they finish after the run
    brief = write_brief(tmp_path, "lost-nvcf-rerun", provider={"name": "nvidia"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1 and len(summary["failed"]) == 2, err
    assert all("is kept" in failure["reason"] for failure in summary["failed"])
    assert nvidia.paid_generations == 2 and summary["provider_calls"] == 2  # the retries only polled
    assert consistency_problems(out, masters=0) == []
    running = set(nvidia.jobs)

    nvidia.finish_jobs()  # the requests finish later
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert nvidia.paid_generations == 2 and nvidia.calls["genai"] == 2, "a kept request was paid again"
    assert summary["provider_calls"] == 0 and summary["answers_recovered"] == 2 and summary["published"] == 2
    assert request_ids(out) == running
    assert consistency_problems(out, masters=2) == []


def test_kept_requests_are_resumed_by_a_rerun_whose_budgets_are_spent(
        prefect_harness, nvidia, fast_retries, tmp_path, capsys, monkeypatch):
    """The first run paid both masters and spent the day's 2 images; the rerun may make no provider call
    at all (--max-provider-calls 0). Polling the kept ids is free, so it still gets both paid images."""
    monkeypatch.setenv("IMAGEGEN_NVCF_POLL_DEADLINE_SECONDS", "0.3")
    monkeypatch.setenv("IMAGEGEN_NVIDIA_IMAGES_PER_DAY", "2")
    nvidia.faults.accept_202, nvidia.faults.polls_before_result = True, 10**6  # they finish after the run
    brief = write_brief(tmp_path, "lost-nvcf-spent", provider={"name": "nvidia"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1 and len(summary["failed"]) == 2 and summary["provider_calls"] == 2, err
    assert daily_images_sent(out) == 2

    nvidia.finish_jobs()
    code, summary, err = run(capsys, brief, out, "--max-provider-calls", "0")
    assert code == 0, err
    assert nvidia.paid_generations == 2 and nvidia.calls["genai"] == 2
    assert summary["provider_calls"] == 0 and summary["answers_recovered"] == 2 and summary["published"] == 2
    assert summary["outcome_unknown"] == 0 and daily_images_sent(out) == 2
    assert consistency_problems(out, masters=2) == []


def daily_images_sent(out) -> int:
    with contextlib.closing(sqlite3.connect(out / "catalog.db")) as conn:
        return conn.execute("SELECT coalesce(sum(images), 0) FROM imagegen_daily_images").fetchone()[0]


# --------------------------------------------------------------------------- neuroflash: adopted from history

@pytest.mark.parametrize("fault", ["drop_after_accept", "error_after_submit"])
def test_a_lost_neuroflash_answer_is_adopted_from_the_history(prefect_harness, neuroflash, fast_retries, tmp_path,
                                                              capsys, fault):
    neuroflash.set_fault(fault)
    brief = write_brief(tmp_path, f"lost-nf-{fault.replace('_', '-')}", provider={"name": "neuroflash"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert neuroflash.paid_generations == 2 == summary["published"], "a lost generation was paid again"
    assert summary["outcome_unknown"] == 1 and summary["answers_recovered"] == 1 and summary["provider_calls"] == 2
    masters = [row for row in catalog_rows(out) if row["variant"] == "master"]
    assert len({row["sha256"] for row in masters}) == 2, "both variations got the same image"
    assert {json.loads(row["metadata"])["image_id"] for row in masters} == set(neuroflash.images)
    assert consistency_problems(out, masters=2) == []


# --------------------------------------------------------------------------- synchronous 200: one retry, counted

@pytest.mark.parametrize("fault", ["drop_after_accept", "error_after_submit"])
def test_a_lost_synchronous_answer_costs_at_most_one_more_call_and_is_reported(
        prefect_harness, nvidia, fast_retries, tmp_path, capsys, fault):
    setattr(nvidia.faults, fault, 1)
    campaign = f"lost-sync-{fault.replace('_', '-')}"
    brief = write_brief(tmp_path, campaign, provider={"name": "nvidia"})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert nvidia.paid_generations == 3, "2 masters + the one allowed retry of the lost call"
    assert summary["provider_calls"] == 3 and summary["outcome_unknown"] == 1 and summary["published"] == 2
    assert json.loads((out / "run-summary.json").read_text())["outcome_unknown"] == 1
    assert "outcome unknown: 1" in summary_artifact(campaign)
    assert len(master_files(out)) == 2
    assert consistency_problems(out, masters=2) == []


def test_a_synchronous_request_lost_twice_is_not_paid_a_third_time(prefect_harness, nvidia, fast_retries, tmp_path,
                                                                   capsys):
    nvidia.faults.drop_after_accept = 2
    brief = write_brief(tmp_path, "lost-sync-twice", provider={"name": "nvidia", "fallback": ["local"]},
                        subjects=[{"subject": "a glass teapot", "seed": 5150, "variations": 1}])
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1, err
    assert nvidia.paid_generations == 2 and summary["provider_calls"] == 2 and summary["outcome_unknown"] == 2
    (failure,) = summary["failed"]
    assert "not sent again" in failure["reason"] and "OutcomeUnknown" in failure["reason"]
    assert summary["providers_used"] == {}, "a request that may have been billed twice does not fall back"
    assert "outcome unknown: 2" in summary_artifact("lost-sync-twice")
    assert consistency_problems(out, masters=0) == []


def test_a_request_given_up_after_two_lost_answers_expires_and_a_later_rerun_sends_it_as_new(
        prefect_harness, nvidia, fast_retries, tmp_path, capsys, caplog):
    """Its journal entry outlives the run that gave it up; once older than PENDING_TTL_SECONDS, a rerun
    sends the request as new (one send, counted once) and a warning names the entry's file."""
    nvidia.faults.drop_after_accept = 2
    brief = write_brief(tmp_path, "lost-sync-expired", provider={"name": "nvidia"},
                        subjects=[{"subject": "a glass teapot", "seed": 5151, "variations": 1}])
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1 and summary["outcome_unknown"] == 2, err
    (entry_file,) = (out / "masters" / PENDING_FOLDER).glob("*.json")
    entry = PendingRequest.model_validate_json(entry_file.read_text())
    assert entry.sends == 2
    aged = entry.model_copy(update={"sent_at": entry.sent_at - PENDING_TTL_SECONDS - 60})
    entry_file.write_text(aged.model_dump_json())  # the rerun comes days later

    with caplog.at_level("WARNING", logger="imagegen.pending"):
        code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert nvidia.paid_generations == 3 and summary["provider_calls"] == 1 and summary["outcome_unknown"] == 0
    (line,) = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
    assert str(entry_file) in line and "2 send(s)" in line and "sent as new" in line
    assert not entry_file.exists() and consistency_problems(out, masters=1) == []
