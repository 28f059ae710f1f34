"""What a neuroflash run costs in HTTP requests, counted per endpoint at the emulator: the spring-launch
example with `--provider neuroflash` fetches one token, looks its workspace and models up once, reads the
quota before and after, and otherwise makes two requests per image (the paid call and its download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagegen.providers.neuroflash_account import forget_accounts
from tests.emulators.neuroflash import NeuroflashEmulator
from tests.emulators.serve import serve_asgi
from tests.flows.cli_runs import run

pytestmark = pytest.mark.prefect

REPO = Path(__file__).resolve().parents[2]
NF_ID, NF_SECRET = "nf-requests-client", "nf-SENTINEL-requests-secret"
PER_RUN = {"token": 1, "workspaces": 1, "models": 1, "quotas": 2}  # quotas: before the run and after it


@pytest.fixture
def neuroflash(monkeypatch):
    # 2048 px on the long side: every master passes the brief's 1024 px minimum, so the run makes 16 images
    emulator = NeuroflashEmulator(client_id=NF_ID, client_secret=NF_SECRET, image_long_side=2048, available=1000,
                                  limit=1000, limit_daily=None)
    with serve_asgi(emulator.app) as url:
        for name, value in emulator.run_environment(url).items():
            monkeypatch.setenv(name, value)
        yield emulator


def test_spring_launch_on_neuroflash_costs_one_token_and_two_requests_per_image(prefect_harness, neuroflash,
                                                                                 tmp_path, capsys):
    brief, out = REPO / "examples" / "spring-launch.yaml", tmp_path / "out"
    code, summary, err = run(capsys, brief, out, "--provider", "neuroflash")
    assert code == 0, err[-3000:]
    generated, edited = neuroflash.calls["generate"], neuroflash.calls["edit"]
    images = generated + edited  # the emulator's random pictures may fail a gate that a paid edit answers
    assert summary["provider_calls"] == images and generated >= summary["masters"] == 16
    # each paid call downloads its image once; no history page, no other endpoint
    paid = {"generate": generated, **({"edit": edited} if edited else {}), "storage": images}
    assert dict(neuroflash.calls) == {**PER_RUN, **paid}
    assert sum(neuroflash.calls.values()) <= 2 * images + 6
    # one token served every task's API calls
    assert len({r["headers"]["authorization"] for r in neuroflash.requests if r["route"] != "storage"}) == 1
    usage = summary["provider_usage"]["neuroflash"]
    assert usage["before"]["available"] - usage["after"]["available"] == images

    # the same command again is a new process: the per-run requests again, nothing paid, nothing fetched
    forget_accounts()
    neuroflash.calls.clear()
    code, summary, err = run(capsys, brief, out, "--provider", "neuroflash")
    assert code == 0, err[-3000:]
    assert summary["provider_calls"] == 0
    assert dict(neuroflash.calls) == PER_RUN
