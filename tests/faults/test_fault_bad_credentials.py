"""Credentials come from the environment, not the brief: when the provider refuses them (or cannot be
reached) during `imagegen run`'s pre-flight check, the run fails with exit 1 and a message naming the
environment variables to check, never their values; exit 2 stays reserved for the brief's own problems.
Either way nothing is written and no quota is spent."""

from __future__ import annotations

import os
import subprocess

import pytest

# Imported here, at collection, not first inside a test: importing the flows sets up Prefect's logging,
# whose console handlers keep the sys.stderr of that moment. Under a test's capsys that stream is
# closed after the test, and every later log record then fails to print; Python reports that failure
# with the record's whole traceback, un-redacted exception causes included (test_fault_secrets sees a
# store's echoed key there when an in-process CLI test runs first).
import flows.campaign  # noqa: F401,E402  (see above)
from imagegen_flows.deployments.cli import main as cli_main
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.serve import _free_port, serve_asgi
from tests.faults.conftest import BIN, REPO, write_brief

pytestmark = pytest.mark.prefect

NF_ID, NF_SECRET = "nf-creds-client", "nf-creds-right-secret"
WRONG_SECRET = "nf-SENTINEL-wrong-secret"
SMALL = {"name": "neuroflash", "master_width": 256, "master_height": 256}


@pytest.fixture(scope="module")
def neuroflash_server():
    emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=512)
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator, url


@pytest.fixture
def neuroflash(neuroflash_server, monkeypatch):
    """The emulator with its call counts reset, and the environment of a run that uses it."""
    emulator, url = neuroflash_server
    emulator.calls.clear()
    for name, value in emulator.run_environment(url).items():
        monkeypatch.setenv(name, value)
    return emulator


def run(capsys, brief, out) -> tuple[int, str]:
    code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_rejected_neuroflash_secret_exits_1_naming_the_variables(neuroflash, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", WRONG_SECRET)  # the emulator echoes it in its 401
    brief, out = write_brief(tmp_path, "bad-nf-secret", provider=SMALL), tmp_path / "out"
    code, text = run(capsys, brief, out)
    assert code == 1, text
    assert "rejected the credentials during the pre-flight check" in text and "the brief itself is valid" in text
    assert "check the environment variables NEUROFLASH_CLIENT_ID, NEUROFLASH_CLIENT_SECRET" in text
    assert "invalid brief" not in text
    assert WRONG_SECRET not in text and NF_SECRET not in text
    assert neuroflash.calls["token"] >= 1 and neuroflash.calls["generate"] == 0
    assert not out.exists(), "a failed pre-flight check wrote something"


def test_the_imagegen_command_exits_1_on_rejected_credentials(neuroflash, monkeypatch, tmp_path):
    """The same through the real command, as a shell or CI job sees it."""
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", WRONG_SECRET)
    brief, out = write_brief(tmp_path, "bad-nf-secret-cli", provider=SMALL), tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    done = subprocess.run([str(BIN / "imagegen"), "run", str(brief), "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "NEUROFLASH_CLIENT_SECRET" in done.stderr and WRONG_SECRET not in done.stdout + done.stderr
    assert not out.exists()


def test_unreachable_token_endpoint_exits_1_naming_the_url_variables(neuroflash, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IMAGEGEN_NEUROFLASH_TOKEN_URL", f"http://127.0.0.1:{_free_port()}/oauth/v2/token")
    brief, out = write_brief(tmp_path, "nf-unreachable", provider=SMALL), tmp_path / "out"
    code, text = run(capsys, brief, out)
    assert code == 1, text
    assert "provider 'neuroflash' failed during the pre-flight check" in text
    assert "IMAGEGEN_NEUROFLASH_TOKEN_URL" in text and "NEUROFLASH_CLIENT_SECRET" not in text
    assert not out.exists()


def test_an_invalid_brief_still_exits_2_whatever_the_credentials(neuroflash, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", WRONG_SECRET)
    brief = write_brief(tmp_path, "bad-brief", provider=SMALL, size_sets=["tiktok"])
    out = tmp_path / "out"
    code, text = run(capsys, brief, out)
    assert code == 2, text
    assert "size_sets[0]: unknown size set 'tiktok'" in text
    assert neuroflash.calls["token"] == 0, "the brief is checked before the provider is asked anything"
    assert not out.exists()


def test_a_model_the_provider_does_not_offer_is_a_brief_error(neuroflash, tmp_path, capsys):
    brief = write_brief(tmp_path, "nf-no-such-model", provider={**SMALL, "model": "no-such-model"})
    out = tmp_path / "out"
    code, text = run(capsys, brief, out)
    assert code == 2, text
    assert "provider.model: neuroflash model 'no-such-model' unknown; allowed values:" in text
    assert neuroflash.calls["generate"] == 0 and not out.exists()


def test_missing_provider_credentials_are_the_environments_problem(neuroflash, monkeypatch, tmp_path, capsys):
    """No credentials at all: the brief is fine, the environment lacks what its provider needs (exit 1, as
    for a store or catalog whose credentials are missing); the message names the variable to set."""
    monkeypatch.delenv("NEUROFLASH_CLIENT_SECRET")
    brief, out = write_brief(tmp_path, "nf-no-secret", provider=SMALL), tmp_path / "out"
    code, text = run(capsys, brief, out)
    assert code == 1, text
    assert "error: NEUROFLASH_CLIENT_SECRET: provider 'neuroflash' needs it in the environment" in text
    assert "Traceback" not in text
    assert not out.exists()
