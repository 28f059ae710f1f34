"""Faces end to end: a portrait brief through the local provider, whose face hero the detector finds. The
faces gates run, their result reaches the run summary and the catalog, the 9:16 crop keeps the face whole,
and a face that fails its gate gets the face enhancement before it is judged again."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml
from PIL import Image

from imagegen.imaging.faces import detect_faces
from tests.flows.cli_runs import run
from tests.flows.test_provider_flows import brief_file, catalog, loopback, nvidia  # noqa: F401 - fixtures

pytestmark = pytest.mark.prefect


def portrait_brief(tmp_path, **quality) -> str:
    brief = tmp_path / "portrait.yaml"
    brief.write_text(yaml.safe_dump({
        "campaign": "faces", "brand": {"name": "Acme", "palette": ["#1a1a2e", "#e94560", "#f4f1ea"]},
        "subjects": [{"subject": "a woman smiling at the camera", "style": "portrait", "lighting": "portrait",
                      "seed": 1}],
        "size_sets": [], "targets": [{"name": "story", "platform": "web", "width": 288, "height": 512}],
        "provider": {"name": "local", "master_width": 512, "master_height": 512},
        "quality": {"min_width": 512, "min_height": 512, **quality}}))
    return brief


def catalog_rows(out) -> dict[str, tuple]:
    with sqlite3.connect(out / "catalog.db") as conn:
        rows = conn.execute("SELECT variant, status, gates, metadata, url FROM media_assets").fetchall()
    return {row[0]: (row[1], json.loads(row[2]), json.loads(row[3]), row[4]) for row in rows}


def test_a_portrait_is_face_gated_catalogued_and_cropped_around_its_face(prefect_harness, tmp_path, capsys):
    out = tmp_path / "out"
    code, summary, err = run(capsys, portrait_brief(tmp_path), out)
    assert code == 0, err
    assert summary["published"] == 1
    assert summary["faces"] == {"masters_checked": 1, "with_faces": 1, "faces": 1, "failures": {}}
    rows = catalog_rows(out)
    status, gates, _metadata, _url = rows["master"]
    assert status == "published"
    assert {"face_sharpness", "face_exposure"} <= set(gates["checked"])
    assert gates["measurements"]["face_count"] == 1 and gates["measurements"]["face_sharpness"] > 30
    # the 288x512 story: a 9:16 window of the square master, which holds the face whole
    _status, _gates, story_metadata, story_url = rows["story"]
    assert "crop_note" not in story_metadata
    with Image.open(story_url.removeprefix("file://")) as story:
        assert len(detect_faces(story.convert("RGB"))) == 1


def test_a_face_failing_its_gate_gets_the_face_enhancement_then_is_judged_again(prefect_harness, tmp_path, capsys):
    out = tmp_path / "out"
    # no face is this sharp: the gate fails, the remedy runs once, the master is quarantined as it is (the
    # brand gate is off: the face's skin and hair are not brand colours, and its remedy is not under test)
    code, summary, err = run(capsys, portrait_brief(tmp_path, min_face_sharpness=100000, max_edit_attempts=1,
                                                    check_brand_colors=False), out)
    assert code in (0, 1), err
    assert summary["quarantined"] == 1
    assert summary["faces"]["failures"] == {"face_sharpness": 1}
    status, gates, metadata, _url = catalog_rows(out)["master"]
    assert status == "quarantined"
    assert [edit["remedies"] for edit in metadata["edits"]] == [["enhance_faces"]]
    assert gates["history"][0]["failures"][0]["gate"] == "face_sharpness"


def test_faces_are_gated_on_what_the_nvidia_emulator_returns(prefect_harness, nvidia, tmp_path, capsys):  # noqa: F811
    # the emulator draws coloured discs, no face: with every subject checked and a face required, the
    # face_count gate quarantines both masters, with the reason in the catalog
    out = tmp_path / "out"
    brief = brief_file(tmp_path, {"name": "nvidia"}, "faces-nvidia", faces=True, min_faces=1)
    code, summary, err = run(capsys, brief, out)
    assert code in (0, 1), err
    assert summary["provider_calls"] == 2 and summary["quarantined"] == 2
    assert summary["faces"] == {"masters_checked": 2, "with_faces": 0, "faces": 0, "failures": {"face_count": 2}}
    masters = [r for r in catalog(out) if r["variant"] == "master"]
    assert len(masters) == 2
    for row in masters:
        failures = json.loads(row["gates"])["failures"]
        assert [(f["gate"], f["reason"]) for f in failures] == [("face_count", "face_count is 0; expected >= 1")]
