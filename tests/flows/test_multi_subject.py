"""Multi-subject generation end to end: the featured subjects reach the prompt the provider gets, the
gate and the catalog (seed 000's "featuring: name: description, ...")."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from imagegen_flows.deployments.cli import main as cli_main

pytestmark = pytest.mark.prefect


def test_featured_subjects_are_generated_gated_and_catalogued(prefect_harness, tmp_path, capsys):
    brief = tmp_path / "duo.yaml"
    brief.write_text(yaml.safe_dump({
        "campaign": "duo", "brand": {"name": "Acme", "palette": ["#1a1a2e", "#e94560"]},
        "subjects": [{"subject": "a walk in an autumn park", "style": "lifestyle", "lighting": "golden_hour",
                      "featuring": [{"name": "Max", "description": "a golden retriever"},
                                    {"name": "Lea", "description": "a girl in a yellow raincoat"}],
                      "variations": 2}],
        "size_sets": [], "targets": [{"name": "square", "platform": "web", "width": 320, "height": 320}],
        "provider": {"name": "local", "master_width": 512, "master_height": 512}}))
    code = cli_main(["run", str(brief), "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    summary = json.loads(captured.out)
    assert summary["masters"] == 2 and summary["published"] + summary["quarantined"] == 2
    with sqlite3.connect(tmp_path / "out" / "catalog.db") as conn:
        rows = conn.execute("SELECT asset_id, variant, prompt, gates, seed FROM media_assets").fetchall()
    masters = [r for r in rows if r[1] == "master"]
    assert len(masters) == 2 and len({r[4] for r in masters}) == 2  # two variations, two seeds
    for _aid, _variant, prompt, gates, _seed in rows:
        assert prompt.startswith("a walk in an autumn park, featuring: Max: a golden retriever, "
                                 "Lea: a girl in a yellow raincoat, ")
        assert json.loads(gates)["checked"]  # gated like any other master
