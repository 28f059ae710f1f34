"""The quality gate: a Great Expectations suite derived from the brief's quality policy, run over
one table of image measurements (a row per image), answering which image failed which gate and why.

Great Expectations takes seconds to import and is not thread-safe across validations that share a
context, so it is imported lazily, each validation builds its own ephemeral context, and
validations in one process run one at a time.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

_GX_LOCK = threading.Lock()

# Which remedy the edit stage applies for each gate (see imagegen.remediation).
GATE_REMEDIES: dict[str, str] = {
    "decode": "regenerate",
    "format": "regenerate",
    "resolution": "regenerate",
    "content_filter": "regenerate",
    "duplicate": "regenerate",
    "blockiness": "regenerate",
    "sharpness": "sharpen",
    "exposure": "fix_exposure",
    "noise": "denoise",
    "brand_colors": "shift_to_palette",
    "vlm_review": "provider_edit",
    "cutout": "regenerate",  # no local fix finds a subject; new pixels may have one
    "face_sharpness": "enhance_faces",
    "face_exposure": "enhance_faces",
    "face_count": "regenerate",
}


class GateFailure(BaseModel):
    gate: str
    column: str
    observed: Any = None
    expected: str
    reason: str
    # the check itself raised (a bad column or argument, a value it cannot compare): no remedy of the
    # image can mend that, so the edit stage tries none; kept out of the catalog's JSON (the reason says it)
    errored: bool = Field(False, exclude=True)


class GateResult(BaseModel):
    image_id: str
    passed: bool
    failures: list[GateFailure] = Field(default_factory=list)
    measurements: dict[str, Any] = Field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The compact form stored in the catalog's `gates` column."""
        return {
            "passed": self.passed,
            "failures": [f.model_dump() for f in self.failures],
            "measurements": self.measurements,
        }


class GateReport(BaseModel):
    success: bool
    results: dict[str, GateResult]
    docs_index: str | None = None
    expectations: int = 0

    def failed_ids(self) -> list[str]:
        return [image_id for image_id, result in self.results.items() if not result.passed]


@dataclass(frozen=True)
class GateCheck:
    """One expectation: `kind` is between/in_set/null; the rest are its arguments."""

    gate: str
    column: str
    kind: str
    min_value: float | None = None
    max_value: float | None = None
    value_set: tuple = field(default_factory=tuple)
    missing_passes: bool = False  # between: a missing value (None, NaN) passes, as nothing was there to measure

    def describe(self) -> str:
        if self.kind == "between":
            if self.min_value is not None and self.max_value is not None:
                return f"between {self.min_value:g} and {self.max_value:g}"
            return f">= {self.min_value:g}" if self.min_value is not None else f"<= {self.max_value:g}"
        if self.kind == "in_set":
            return "one of " + ", ".join(str(v) for v in self.value_set)
        return "empty"


def checks_for_policy(policy, *, has_palette: bool, with_vlm: bool = False, with_cutout: bool = False,
                      with_faces: bool = False) -> list[GateCheck]:
    """Translate a QualityPolicy into gate checks (pure: unit-testable without GX)."""
    checks = [
        GateCheck("decode", "decoded_ok", "in_set", value_set=(True,)),
        GateCheck("format", "format_detected", "in_set", value_set=tuple(policy.allowed_formats)),
        GateCheck("format", "format_consistent", "in_set", value_set=(True,)),
        GateCheck("resolution", "resolution_ok", "in_set", value_set=(True,)),
        GateCheck("sharpness", "sharpness", "between", min_value=policy.min_sharpness),
        GateCheck("blockiness", "blockiness", "between", max_value=policy.max_blockiness),
        GateCheck("exposure", "clipped_dark", "between", max_value=policy.max_clipped_fraction),
        GateCheck("exposure", "clipped_bright", "between", max_value=policy.max_clipped_fraction),
        GateCheck("noise", "noise_sigma", "between", max_value=policy.max_noise_sigma),
        GateCheck("duplicate", "duplicate_of", "null"),
        GateCheck("content_filter", "content_filtered", "in_set", value_set=(False,)),
    ]
    if policy.check_brand_colors and has_palette:
        checks.append(GateCheck("brand_colors", "brand_delta_e", "between", max_value=policy.max_brand_delta_e))
    if with_vlm:
        checks.append(GateCheck("vlm_review", "vlm_verdict", "in_set", value_set=("pass",)))
    if with_cutout:  # publish.background remove/#rrggbb: the subject's mask must be plausible
        checks.append(GateCheck("cutout", "cutout_problem", "null"))
    if with_faces:  # a master measured without faces, or with none found, has nothing for these to judge
        checks += [GateCheck("face_sharpness", "face_sharpness", "between", min_value=policy.min_face_sharpness,
                             missing_passes=True),
                   GateCheck("face_exposure", "face_luma", "between", min_value=policy.min_face_luma,
                             max_value=policy.max_face_luma, missing_passes=True)]
        if policy.min_faces:
            checks.append(GateCheck("face_count", "face_count", "between", min_value=policy.min_faces,
                                    missing_passes=True))
    return checks


def required_size(width: int, height: int, min_width: int, min_height: int) -> tuple[int, int]:
    """The policy's minimum fitted to an image's orientation and aspect.

    A square master needs min_width x min_height. A 16:9 master made natively (neuroflash answers
    1024x576) needs its long side at the larger minimum and a short side in proportion, not a
    1024 px short side no provider would render.
    """
    if width <= 0 or height <= 0:
        return min_width, min_height
    if width == height:
        return min_width, min_height
    long_min, short_min = max(min_width, min_height), min(min_width, min_height)
    long_side, short_side = max(width, height), min(width, height)
    short_needed = min(short_min, math.ceil(long_min * short_side / long_side))
    return (long_min, short_needed) if width > height else (short_needed, long_min)


def _reason(check: GateCheck, observed: Any, row: dict[str, Any] | None = None) -> str:
    if check.column == "resolution_ok" and row is not None:
        return (f"{row.get('width')}x{row.get('height')} is below the minimum {row.get('required_size')} "
                "for its aspect")
    if check.column == "cutout_problem":
        return f"background removal: {observed}"
    if check.kind == "null":
        return f"{check.column} is {observed!r}; expected none"
    if isinstance(observed, float):
        observed = round(observed, 4)
    return f"{check.column} is {observed!r}; expected {check.describe()}"


def _build_expectation(gx, check: GateCheck):
    meta = {"gate": check.gate}
    if check.kind == "between":
        return gx.expectations.ExpectColumnValuesToBeBetween(
            column=check.column, min_value=check.min_value, max_value=check.max_value, meta=meta)
    if check.kind == "in_set":
        return gx.expectations.ExpectColumnValuesToBeInSet(
            column=check.column, value_set=list(check.value_set), meta=meta)
    return gx.expectations.ExpectColumnValuesToBeNull(column=check.column, meta=meta)


def _clean(value: Any) -> Any:
    """numpy scalars and NaN into plain JSON-friendly values."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def expectation_error(exception_info: Any) -> str | None:
    """The message of an exception raised inside an expectation, or None when it ran.

    GX reports it as `{"raised_exception": ..., "exception_message": ...}`, or keyed by the metric that
    raised, `{<metric id>: {"raised_exception": ..., "exception_message": ...}}`.
    """
    if not isinstance(exception_info, dict):
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            message = " ".join(str(info.get("exception_message") or "an exception").split())
            return message if len(message) <= 300 else message[:300] + "..."
    return None


# In the order the run needs them: the first master's measurements, then the gate's validation.
GATE_MODULES = ("imagehash", "scipy.ndimage", "skimage.color", "skimage.filters", "skimage.measure", "skimage.metrics",
                "skimage.restoration", "great_expectations", "pandas")


def preload_in_background() -> threading.Thread:
    """Import the gate's libraries in a daemon thread, so a run that starts it before generating pays for
    them while waiting on the provider, not when the first master is measured or the gate runs: first
    scikit-image, SciPy and imagehash (~0.9 s, the measurements; imported where used, see
    imagegen/imaging/metrics.py), then Great Expectations (~4 s of CPU)."""
    def load() -> None:
        for name in GATE_MODULES:
            importlib.import_module(name)

    thread = threading.Thread(target=load, name="gx-preload", daemon=True)
    thread.start()
    return thread


def validate_rows(rows: list[dict[str, Any]], checks: list[GateCheck], *, suite_name: str,
                  docs_dir: Path | None = None) -> GateReport:
    """Run `checks` as a GX suite over `rows` (each has an `image_id`); build Data Docs in `docs_dir`."""
    import great_expectations as gx  # lazy: ~3-4 s import
    import pandas as pd
    from great_expectations.checkpoint import UpdateDataDocsAction, ValidationAction

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = pd.DataFrame(rows)
    for check in checks:  # a gate over a column nobody measured must fail loudly, not vanish
        if check.column not in frame.columns:
            raise KeyError(f"quality gate {check.gate!r} needs column {check.column!r}, which was not measured")
    by_type_and_column = {}
    with _GX_LOCK:
        context = gx.get_context(mode="ephemeral")
        # GX types this as ProgressBarsConfig, yet reads it as a mapping (`"globally" in progress_bars`),
        # the shape a context's YAML config gives it; the dict is that shape.
        context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
        site_names = []
        if docs_dir is not None:
            context.add_data_docs_site(site_name="imagegen", site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            })
            site_names = ["imagegen"]
        batch = (context.data_sources.add_pandas("measurements")
                 .add_dataframe_asset("images").add_batch_definition_whole_dataframe("run"))
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        for check in checks:
            suite.add_expectation(_build_expectation(gx, check))
            by_type_and_column[(check.kind, check.column)] = check
            if check.kind == "between" and not check.missing_passes:
                # GX's between skips missing values (None, NaN): a measurement that did not come out must fail
                # its gate, not pass it unseen.
                suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(
                    column=check.column, meta={"gate": check.gate}))
                by_type_and_column[("measured", check.column)] = check
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch, suite=suite))
        actions: list[ValidationAction] = (
            [UpdateDataDocsAction(name="data-docs", site_names=site_names)] if site_names else [])
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{suite_name}-checkpoint", validation_definitions=[validation], actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["image_id"]}))
        run = checkpoint.run(batch_parameters={"dataframe": frame})

    rows_by_id = {row["image_id"]: row for row in rows}
    results = {row["image_id"]: GateResult(image_id=row["image_id"], passed=True,
                                           measurements={k: _clean(v) for k, v in row.items() if k != "image_id"})
               for row in rows}
    kinds = {"expect_column_values_to_be_between": "between", "expect_column_values_to_be_in_set": "in_set",
             "expect_column_values_to_be_null": "null", "expect_column_values_to_not_be_null": "measured"}
    for validation_result in run.run_results.values():
        for outcome in validation_result.results:
            if outcome.success:
                continue
            config = outcome.expectation_config
            assert config is not None, "a checkpoint run attaches its expectation to every result"
            column = config.kwargs["column"]
            kind = kinds[config.type]
            check = by_type_and_column[(kind, column)]
            unexpected_rows = outcome.result.get("unexpected_index_list") or []
            error = expectation_error(outcome.exception_info)
            if error is not None or not unexpected_rows:
                # fail closed: a check that could not run (or failed without naming an image) passes no image
                why = error or "it failed without naming an image"
                for result in results.values():
                    result.passed = False
                    result.failures.append(GateFailure(
                        gate=check.gate, column=column, expected=check.describe(), errored=True,
                        reason=f"the {check.gate} check on {column} could not run: {why}; failed closed"))
                continue
            for unexpected in unexpected_rows:
                observed = _clean(unexpected.get(column))
                result = results[unexpected["image_id"]]
                result.passed = False
                reason = (f"{column} could not be measured; expected {check.describe()}" if kind == "measured"
                          else _reason(check, observed, rows_by_id[unexpected["image_id"]]))
                result.failures.append(GateFailure(gate=check.gate, column=column, observed=observed,
                                                   expected=check.describe(), reason=reason))
    index = docs_dir / "index.html" if docs_dir is not None else None
    return GateReport(success=all(r.passed for r in results.values()), results=results,
                      docs_index=str(index) if index and index.exists() else None, expectations=len(checks))
