"""The faces gates: which masters are checked (brief), the columns and expectations (a real Great
Expectations run), the remedy they call for, and the remedy applied to a master file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageEnhance

from imagegen.brief import QualityPolicy
from imagegen.brief_source import parse_brief
from imagegen.errors import BriefError
from imagegen.imaging.faces import detect_faces, measure_faces
from imagegen.imaging.metrics import measure_image
from imagegen.models import ImageRef
from imagegen.quality import GateFailure, checks_for_policy, validate_rows
from imagegen.remediation import apply_local_fixes, plan_remediation
from imagegen.summary import tally_faces
from imagegen_flows.tasks.gate import measurement_rows
from tests.unit.test_faces import head_box, picture


def test_portrait_subjects_are_checked_unless_the_brief_says_otherwise():
    assert QualityPolicy().checks_faces("portrait") and not QualityPolicy().checks_faces("product")
    assert QualityPolicy(faces=True).checks_faces("product")
    assert not QualityPolicy(faces=False).checks_faces("portrait")


def test_a_face_luma_range_no_face_can_pass_is_refused_naming_the_field(tmp_path):
    data = {"campaign": "c", "brand": {"name": "B", "palette": ["#000000"]}, "subjects": [{"subject": "s"}],
            "quality": {"min_face_luma": 150, "max_face_luma": 100}}
    with pytest.raises(BriefError) as caught:
        parse_brief(data, tmp_path)
    assert "quality.max_face_luma: is below min_face_luma (150)" in str(caught.value)


def test_faces_checks_follow_the_policy():
    policy = QualityPolicy(min_face_sharpness=40, min_faces=1)
    plain = {c.gate for c in checks_for_policy(policy, has_palette=False)}
    faces = {c.gate: c for c in checks_for_policy(policy, has_palette=False, with_faces=True)}
    assert not {"face_sharpness", "face_exposure", "face_count"} & plain
    assert faces["face_sharpness"].min_value == 40 and faces["face_count"].min_value == 1
    assert (faces["face_exposure"].min_value, faces["face_exposure"].max_value) == (70, 215)
    assert "face_count" not in {c.gate for c in checks_for_policy(QualityPolicy(), has_palette=False,
                                                                   with_faces=True)}


def test_the_faces_gates_call_for_the_face_enhancement_or_a_new_render():
    def failure(gate):
        return GateFailure(gate=gate, column=gate, expected="x", reason="r")

    assert plan_remediation([failure("face_sharpness"), failure("face_exposure")],
                            provider_supports_edit=False) == ["enhance_faces"]
    assert plan_remediation([failure("exposure"), failure("face_exposure")],
                            provider_supports_edit=False) == ["fix_exposure", "enhance_faces"]
    assert plan_remediation([failure("face_count")], provider_supports_edit=True) == ["regenerate"]


def _measured(tmp_path, name, img, faces: bool):
    path = tmp_path / f"{name}.png"
    img.save(path)
    return measure_image(path, name, also=measure_faces if faces else None)


def test_great_expectations_gates_faces_and_passes_masters_not_checked_for_them(tmp_path):
    face = picture((1024, 1024), [head_box(512, 480, 420)])
    measurements = [
        _measured(tmp_path, "good", face, True),
        _measured(tmp_path, "dark", ImageEnhance.Brightness(face).enhance(0.35), True),
        _measured(tmp_path, "faceless", Image.new("RGB", (1024, 1024), (120, 140, 170)), True),
        # another subject of the same brief, not checked for faces: no face columns, so no face gate judges it
        _measured(tmp_path, "product", picture((1024, 1024), [head_box(300, 300, 300)], bg=(200, 90, 60)), False),
    ]
    rows = measurement_rows(measurements, {}, QualityPolicy(min_sharpness=0, max_noise_sigma=99))
    assert "face_count" not in rows[3] and rows[0]["face_count"] == 1 and rows[2]["face_count"] == 0
    policy = QualityPolicy(min_sharpness=0, max_noise_sigma=99, min_faces=1)
    report = validate_rows(rows, checks_for_policy(policy, has_palette=False, with_faces=True), suite_name="faces")
    gates = {aid: {f.gate for f in result.failures} for aid, result in report.results.items()}
    assert gates == {"good": set(), "dark": {"face_exposure"}, "faceless": {"face_count"}, "product": set()}
    dark = report.results["dark"].failures[0]
    assert dark.reason.startswith("face_luma is ") and dark.reason.endswith("expected between 70 and 215")
    assert report.results["good"].measurements["face_boxes"][0][2] > 0
    tally = tally_faces(report.results)
    assert tally is not None and (tally.masters_checked, tally.with_faces, tally.faces) == (3, 2, 2)
    assert tally.failures == {"face_exposure": 1, "face_count": 1}


def test_the_face_remedy_mends_a_dark_face_in_a_master_file(tmp_path):
    dark = ImageEnhance.Brightness(picture((1024, 1024), [head_box(512, 480, 420)])).enhance(0.35)
    source = tmp_path / "dark.png"
    dark.save(source)
    ref = ImageRef(path=str(source), sha256="0" * 64, bytes=source.stat().st_size, width=1024, height=1024,
                   format="PNG")
    fixed = apply_local_fixes(ref, ["enhance_faces"], [], tmp_path / "masters")
    before, after = measure_faces(dark)["face_luma"], measure_faces(Image.open(fixed.path))["face_luma"]
    assert before < 70 <= after


def test_the_readme_faces_brief_is_valid_as_written(tmp_path):
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"### Faces\n.*?```yaml\n(.*?)```", readme, re.S)
    assert block, "README lost its Faces brief"
    brief = parse_brief(yaml.safe_load(block.group(1)), tmp_path)
    assert brief.quality.faces is None and brief.quality.checks_faces(brief.subjects[0].style)


def test_a_render_that_cannot_keep_every_face_says_so_in_its_catalog_metadata(tmp_path):
    from imagegen.catalog.rows import rows_for_files
    from imagegen.imaging.encode import build_xmp
    from imagegen.publishing import PublishedFile, WebOptions, render_variants
    from imagegen.sizes import Target

    # two faces far apart on a square master: a 9:16 story holds one of them, a square holds both
    master = tmp_path / "master.png"
    picture((1000, 1000), [head_box(200, 450, 300), head_box(800, 450, 260)]).save(master)
    xmp = build_xmp(prompt="p", model="m", provider="local", seed=1, source_type="trainedAlgorithmicMedia", title="t")
    targets = [Target(name="story", platform="instagram", width=270, height=480),
               Target(name="square", platform="instagram", width=300, height=300)]
    story, square = render_variants(ImageRef.from_file(master), targets, xmp=xmp, work_dir=tmp_path / "out",
                                    include_master=False, options=WebOptions(faces=True))
    assert story.crop_note and "kept 1 of 2 faces whole" in story.crop_note and square.crop_note is None
    with Image.open(story.path) as img:
        assert len(detect_faces(img.convert("RGB"))) == 1  # the larger face, whole
    stored = {"store": "local", "key": "k", "url": "file:///k", "bytes": 1, "sha256": "0" * 64,
              "content_type": "image/jpeg", "written": True}
    files = [PublishedFile(variant=v.variant, platform=v.platform, width=v.width, height=v.height, format=v.format,
                           stored=stored, crop_note=v.crop_note) for v in (story, square)]
    template = dict(campaign="c", asset_id="a", prompt="p", provider="local", model="m", seed=1, status="published")
    rows = rows_for_files(template, files)
    assert rows[0].metadata["crop_note"] == story.crop_note and "crop_note" not in rows[1].metadata
