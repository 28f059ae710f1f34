"""Failures say what went wrong first, and only stop what they must:

- a member of the brief's fallback chain that fails its credential or quota pre-flight is skipped with
  a warning and named in the summary ("skipped <provider>: <reason>"), whatever its place in the chain;
  only when every member fails does the run stop before spending, with the first member's one line;
- a Great Expectations expectation that raises fails the gate closed, with the reason, and is not
  "remedied" with paid calls;
- a generation the NVIDIA safety filter withheld (CONTENT_FILTERED) is asked again with a new seed within
  `quality.max_edit_attempts`; still filtered, it fails with that reason in the summary and its artifact.
"""

from __future__ import annotations

import json

import pytest

import flows.campaign  # noqa: F401  (Prefect's logging set up at collection, see test_fault_bad_credentials)
from imagegen_flows.deployments.cli import main as cli_main
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.serve import serve_asgi
from tests.faults.conftest import catalog_rows, consistency_problems, write_brief
from tests.flows.cli_runs import run

pytestmark = pytest.mark.prefect

NF_ID, NF_SECRET = "nf-first-failure", "nf-first-failure-secret"
WRONG_SECRET = "nf-SENTINEL-first-failure-wrong"
NEUROFLASH = {"name": "neuroflash", "master_width": 256, "master_height": 256}
LOCAL = {"master_width": 256, "master_height": 256}


@pytest.fixture(scope="module")
def neuroflash_server():
    emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=512)
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator, url


@pytest.fixture
def neuroflash(neuroflash_server, monkeypatch):
    emulator, url = neuroflash_server
    emulator.calls.clear()
    emulator.set_quota(available=100)
    for name, value in emulator.run_environment(url).items():
        monkeypatch.setenv(name, value)
    return emulator


# --------------------------------------------------------------------------- the fallback chain's pre-flight

def test_a_primary_with_rejected_credentials_is_skipped_for_a_working_fallback(prefect_harness, neuroflash,
                                                                              monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", WRONG_SECRET)
    brief = write_brief(tmp_path, "skip-rejected-primary", provider={**NEUROFLASH, "fallback": ["local"]})
    code, summary, err = run(capsys, brief, tmp_path / "out")
    assert code == 0, err
    assert summary["providers_used"] == {"local": 2} and summary["published"] == 2
    assert list(summary["providers_skipped"]) == ["neuroflash"]
    assert summary["providers_skipped"]["neuroflash"].startswith("ProviderAuthError: ")
    assert neuroflash.calls["generate"] == 0
    assert WRONG_SECRET not in json.dumps(summary) + err


def test_a_fallback_out_of_quota_no_longer_aborts_a_working_run(prefect_harness, neuroflash, tmp_path, capsys):
    """Before, the quota pre-flight raised for the last member of the chain even when the primary worked."""
    neuroflash.set_quota(available=0)
    brief = write_brief(tmp_path, "skip-empty-fallback", provider={"name": "local", "fallback": ["neuroflash"],
                                                                   **LOCAL})
    out = tmp_path / "out"
    code = cli_main(["run", str(brief), "--out", str(out)])  # the human summary, as a person reads it
    text = capsys.readouterr().out
    assert code == 0, text
    skipped = [line for line in text.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and skipped[0].startswith("skipped neuroflash: QuotaExhausted: "), text
    assert neuroflash.calls["generate"] == 0 and consistency_problems(out, masters=2) == []


def test_a_primary_without_credentials_is_skipped_for_a_working_fallback(prefect_harness, monkeypatch, tmp_path,
                                                                         capsys):
    monkeypatch.delenv("NVIDIA_API_KEY", raising=False)
    brief = write_brief(tmp_path, "skip-unconfigured", provider={"name": "nvidia", "fallback": ["local"], **LOCAL})
    code, summary, err = run(capsys, brief, tmp_path / "out")
    assert code == 0, err
    assert summary["providers_used"] == {"local": 2}
    assert summary["providers_skipped"] == {
        "nvidia": "ProviderNotConfigured: NVIDIA_API_KEY: provider 'nvidia' needs it in the environment "
                  "(or name a saved block: provider.block)"}


def test_when_every_member_fails_the_run_stops_with_the_first_ones_line(prefect_harness, neuroflash, monkeypatch,
                                                                        tmp_path, capsys):
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", WRONG_SECRET)
    monkeypatch.delenv("NVIDIA_API_KEY", raising=False)
    brief = write_brief(tmp_path, "all-fail", provider={**NEUROFLASH, "fallback": ["nvidia"]})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1 and summary is None
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "provider 'neuroflash' rejected the credentials during the pre-flight check" in lines[0]
    assert WRONG_SECRET not in err and neuroflash.calls["generate"] == 0 and not out.exists()


# --------------------------------------------------------------------------- the GX gate fails closed

def test_an_expectation_that_raises_quarantines_without_paid_remedies(prefect_harness, tmp_path, capsys,
                                                                      monkeypatch):
    from imagegen.quality import GateCheck
    from imagegen_flows.tasks import gate

    policy_checks = gate.checks_for_policy

    def with_a_check_gx_cannot_run(policy, **kwargs):
        # a numeric range over a text column: GX raises inside the expectation
        return [*policy_checks(policy, **kwargs), GateCheck("sharpness", "format_detected", "between", min_value=1)]

    monkeypatch.setattr(gate, "checks_for_policy", with_a_check_gx_cannot_run)
    brief = write_brief(tmp_path, "gx-errored", provider={"name": "local", **LOCAL}, quality={"max_edit_attempts": 2})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["quarantined"] == 2 and summary["published"] == 0, "an errored expectation let images pass"
    assert summary["provider_calls"] == 2, "a gate that could not run was 'remedied' with new generations"
    for row in catalog_rows(out):
        [failure] = json.loads(row["gates"])["failures"]
        assert failure["gate"] == "sharpness" and "could not run" in failure["reason"]
        assert "same type" in failure["reason"] and failure["reason"].endswith("failed closed")
    assert consistency_problems(out, masters=2) == []


# --------------------------------------------------------------------------- content-filtered generations

def test_a_filtered_generation_is_asked_again_with_a_new_seed(prefect_harness, nvidia, tmp_path, capsys):
    nvidia.faults.content_filtered = 1  # the first answer is withheld by the safety filter
    brief = write_brief(tmp_path, "filtered-once", provider={"name": "nvidia"}, quality={"max_edit_attempts": 1})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["published"] == 2 and summary["failed"] == [] and summary["provider_calls"] == 3
    seeds = [r["body"]["seed"] for r in nvidia.requests]
    assert len(seeds) == 3 and len(set(seeds)) == 3, "the filtered prompt was asked again with the same seed"
    masters = [r for r in catalog_rows(out) if r["variant"] == "master"]
    again = [json.loads(r["metadata"]) for r in masters if json.loads(r["metadata"]).get("filtered_retries")]
    assert len(again) == 1 and again[0]["filtered_retries"] == 1
    assert "CONTENT_FILTERED" in again[0]["filtered_reasons"][0]

    # the withheld answer is in the ledger like an image: an unchanged rerun asks the provider nothing
    asked = len(nvidia.requests)
    code, rerun, err = run(capsys, brief, out)
    assert code == 0, err
    assert len(nvidia.requests) == asked and rerun["provider_calls"] == 0 and rerun["files_written"] == 0
    assert rerun["published"] == 2 and rerun["catalog_unchanged"] == len(catalog_rows(out))


def test_a_generation_still_filtered_fails_with_its_reason_in_summary_and_artifact(prefect_harness, nvidia,
                                                                                   tmp_path, capsys):
    from prefect.artifacts import Artifact

    nvidia.faults.content_filtered = 3  # the first answer and both new seeds are withheld
    brief = write_brief(tmp_path, "filtered-always", provider={"name": "nvidia"}, quality={"max_edit_attempts": 2},
                        subjects=[{"subject": "a ceramic mug on a wooden table", "seed": 4242, "variations": 1}])
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 1, err
    assert summary["provider_calls"] == 3 and nvidia.spent == 3
    [failure] = summary["failed"]
    assert failure["stage"] == "generate"
    assert failure["reason"].startswith("ContentFiltered: ") and "CONTENT_FILTERED" in failure["reason"]
    assert failure["reason"].endswith("; still filtered after 2 new seed(s)")
    assert json.loads((out / "run-summary.json").read_text())["failed"][0]["reason"] == failure["reason"]
    code, rerun, err = run(capsys, brief, out)  # unchanged: the same answers, from the ledger, for nothing
    assert code == 1 and rerun["provider_calls"] == 0 and nvidia.spent == 3
    assert [f["reason"] for f in rerun["failed"]] == [failure["reason"]]
    artifact = Artifact.get("filtered-always-summary")
    assert artifact is not None and f"failed: {failure['asset_id']} at generate: {failure['reason']}" in str(
        artifact.data)
