"""The gate's pure parts (checks from a policy, the aspect-fitted resolution minimum, remedies per
gate) and one real Great Expectations validation that names the image, the gate and the reason."""

from __future__ import annotations

import pytest

from imagegen.brief import QualityPolicy
from imagegen.quality import GateFailure, checks_for_policy, expectation_error, required_size, validate_rows
from imagegen.remediation import plan_remediation


@pytest.mark.parametrize("size, expected", [
    ((2048, 2048), (1024, 1024)),
    ((1024, 576), (1024, 576)),     # a native 16:9 master: long side at the minimum, short side in proportion
    ((576, 1024), (576, 1024)),
    ((512, 288), (1024, 576)),      # too small whatever its aspect
    ((3000, 600), (1024, 205)),
])
def test_required_size_fits_the_minimum_to_the_aspect(size, expected):
    assert required_size(*size, 1024, 1024) == expected


def test_checks_follow_the_policy():
    policy = QualityPolicy(min_sharpness=50, max_brand_delta_e=12)
    gates = {(c.gate, c.column) for c in checks_for_policy(policy, has_palette=True)}
    assert ("brand_colors", "brand_delta_e") in gates and ("resolution", "resolution_ok") in gates
    assert not any(g == "brand_colors" for g, _ in
                   {(c.gate, c.column) for c in checks_for_policy(policy, has_palette=False)})
    assert ("vlm_review", "vlm_verdict") in {(c.gate, c.column) for c in
                                             checks_for_policy(policy, has_palette=True, with_vlm=True)}
    sharp = next(c for c in checks_for_policy(policy, has_palette=False) if c.gate == "sharpness")
    assert sharp.min_value == 50


def _row(image_id: str, **overrides) -> dict:
    row = dict(image_id=image_id, decoded_ok=True, format_detected="PNG", format_consistent=True,
               resolution_ok=True, required_size="1024x1024", width=2048, height=2048, sharpness=300.0,
               blockiness=1.0, clipped_dark=0.0, clipped_bright=0.0, noise_sigma=1.0, duplicate_of=None,
               content_filtered=False, brand_delta_e=5.0)
    return {**row, **overrides}


def test_great_expectations_names_image_gate_and_reason(tmp_path):
    policy = QualityPolicy()
    rows = [_row("good"), _row("blurry", sharpness=3.0),
            _row("small", width=512, height=512, resolution_ok=False),
            _row("copy", duplicate_of="good", brand_delta_e=40.0)]
    report = validate_rows(rows, checks_for_policy(policy, has_palette=True), suite_name="unit",
                           docs_dir=tmp_path / "docs")
    assert not report.success and report.failed_ids() == ["blurry", "small", "copy"]
    assert report.results["good"].passed
    assert [(f.gate, f.reason) for f in report.results["blurry"].failures] == [
        ("sharpness", f"sharpness is 3.0; expected >= {policy.min_sharpness:g}")]
    assert report.results["small"].failures[0].reason == "512x512 is below the minimum 1024x1024 for its aspect"
    assert {f.gate for f in report.results["copy"].failures} == {"duplicate", "brand_colors"}
    assert (tmp_path / "docs" / "index.html").is_file()


def test_a_measurement_that_did_not_come_out_fails_its_gate(tmp_path):
    rows = [_row("good"), _row("unmeasured", sharpness=float("nan")), _row("no-noise-figure", noise_sigma=None)]
    report = validate_rows(rows, checks_for_policy(QualityPolicy(), has_palette=False), suite_name="unit")
    assert report.failed_ids() == ["unmeasured", "no-noise-figure"]
    assert [(f.gate, f.reason) for f in report.results["unmeasured"].failures] == [
        ("sharpness", f"sharpness could not be measured; expected >= {QualityPolicy().min_sharpness:g}")]
    assert [f.gate for f in report.results["no-noise-figure"].failures] == ["noise"]


def _failure(gate: str) -> GateFailure:
    return GateFailure(gate=gate, column=gate, expected="x", reason="x")


@pytest.mark.parametrize("gates, supports_edit, remedies", [
    (["sharpness"], False, ["sharpen"]),
    (["sharpness", "exposure", "noise"], False, ["fix_exposure", "denoise", "sharpen"]),
    (["brand_colors", "sharpness"], False, ["shift_to_palette", "sharpen"]),
    (["sharpness", "duplicate"], False, ["regenerate"]),     # new pixels make local fixes moot
    (["content_filter"], True, ["regenerate"]),
    (["vlm_review"], True, ["provider_edit"]),
    (["vlm_review"], False, ["regenerate"]),
])
def test_each_failed_gate_gets_its_remedy(gates, supports_edit, remedies):
    assert plan_remediation([_failure(g) for g in gates], provider_supports_edit=supports_edit) == remedies


def test_an_expectation_that_raises_fails_every_image_closed(tmp_path):
    """A value the check cannot compare (a measurement that came back as text) makes GX raise inside the
    expectation: the gate fails for every image with the reason, instead of passing them all."""
    policy = QualityPolicy()
    rows = [_row("good"), _row("odd", sharpness="n/a")]
    report = validate_rows(rows, checks_for_policy(policy, has_palette=True), suite_name="unit-errored")
    assert not report.success and report.failed_ids() == ["good", "odd"]
    for result in report.results.values():
        [failure] = result.failures
        assert (failure.gate, failure.column, failure.errored) == ("sharpness", "sharpness", True)
        assert failure.reason.startswith("the sharpness check on sharpness could not run: ")
        assert "same type" in failure.reason and failure.reason.endswith("; failed closed")
        assert "errored" not in result.summary()["failures"][0]  # the catalog's JSON keeps its shape


@pytest.mark.parametrize("info, message", [
    ({"raised_exception": False, "exception_traceback": None, "exception_message": None}, None),
    ({"raised_exception": True, "exception_message": "column 'x' does not exist"}, "column 'x' does not exist"),
    ({"MetricConfigurationID(...)": {"raised_exception": True, "exception_message": "bad\n kwargs"}}, "bad kwargs"),
    ({"MetricConfigurationID(...)": {"raised_exception": False}}, None),
    (None, None),
])
def test_expectation_errors_are_read_in_both_shapes_gx_reports(info, message):
    assert expectation_error(info) == message


def test_a_gate_that_could_not_run_gets_no_remedy():
    errored = GateFailure(gate="sharpness", column="sharpness", expected="x", reason="could not run", errored=True)
    assert plan_remediation([errored, _failure("resolution")], provider_supports_edit=True) == []
