"""Provider outages: a 5xx storm is retried (transient), a lasting outage moves every master to the
next provider in the brief's fallback chain, and either way each master is published exactly once.

Store and catalog outages are covered by tests/flows/test_publish_to_stores.py
(test_store_outage_leaves_no_orphan_and_next_run_completes, test_catalog_outage_rolls_back_uploads),
and exhausted quota falling back by tests/flows/test_provider_flows.py.
"""

from __future__ import annotations

import json

import pytest

from imagegen_flows.deployments.cli import main as cli_main
from tests.faults.conftest import catalog_rows, consistency_problems, write_brief

pytestmark = pytest.mark.prefect


def run(capsys, brief, out) -> tuple[int, dict | None, str]:
    code = cli_main(["run", str(brief), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def test_lasting_5xx_outage_falls_back_to_local(prefect_harness, nvidia, fast_retries, tmp_path, capsys):
    nvidia.faults.error_5xx = 1000  # every inference request answers 503 for the whole run
    brief = write_brief(tmp_path, "outage-fallback", provider={"name": "nvidia", "fallback": ["local"]})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["providers_used"] == {"local": 2} and summary["published"] == 2
    # each master: the first try and 3 retries at NVIDIA (a 503 is transient), then the fallback
    assert nvidia.statuses[503] == 2 * 4 and nvidia.spent == 0
    rows = catalog_rows(out)
    assert {(r["provider"], r["model"]) for r in rows} == {("local", "local-procedural-v1")}
    assert consistency_problems(out, masters=2) == []


def test_5xx_blip_is_retried_without_falling_back(prefect_harness, nvidia, fast_retries, tmp_path, capsys):
    nvidia.faults.error_5xx = 1
    brief = write_brief(tmp_path, "outage-blip", provider={"name": "nvidia", "fallback": ["local"]})
    out = tmp_path / "out"
    code, summary, err = run(capsys, brief, out)
    assert code == 0, err
    assert summary["providers_used"] == {"nvidia": 2} and nvidia.spent == 2 and nvidia.statuses[503] == 1
    assert consistency_problems(out, masters=2) == []
