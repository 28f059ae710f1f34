"""The gate stage: measure each master (one task each), then validate them all with one GX suite."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from imagegen.imaging.cutout_store import cutout_measurements
from imagegen.imaging.faces import FACE_COLUMNS, measure_faces
from imagegen.imaging.metrics import ImageMeasurements, find_near_duplicates, measure_image
from imagegen.pixelwork import PIXEL_SLOTS
from imagegen.quality import GateReport, checks_for_policy, required_size, validate_rows


@task(name="measure-master", task_run_name="measure {image_id}", cache_result_in_memory=False)
def measure_master(image_path: str, image_id: str, palette: list[str], background: str = "keep",
                   faces: bool = False) -> ImageMeasurements:
    """The gate's measurements of one master; with publish.background remove/#rrggbb, its cut-out's too;
    with `faces`, the faces gate's columns (imagegen.imaging.faces), for masters whose brief checks faces."""
    with PIXEL_SLOTS.urgent():  # the gate waits for every measurement; renders made ahead can wait
        measured = measure_image(image_path, image_id, palette, also=measure_faces if faces else None)
        if background == "keep":
            return measured
        return measured.model_copy(update=cutout_measurements(image_path, decoded=measured.decoded_ok))


def measurement_rows(measurements: list[ImageMeasurements], content_filtered: dict[str, bool], policy,
                     vlm_verdicts: dict[str, str] | None = None, outpainted_from: dict[str, str] | None = None
                     ) -> list[dict]:
    """One row per image for the suite; near-duplicates are judged across the whole campaign.

    An outpainted master shows its base master's scene by design: duplicates are judged between base
    masters, and an outpainted one is a duplicate exactly when its base is.
    """
    outpainted_from = outpainted_from or {}
    duplicates = find_near_duplicates([(m.image_id, m.phash) for m in measurements
                                       if m.phash and m.image_id not in outpainted_from],
                                      policy.duplicate_max_distance)
    rows = []
    for m in measurements:
        # faces columns only for masters measured for faces: the rows (and catalog) of the others stay as they were
        row = m.model_dump(exclude={"path", "dominant_colors", "dominant_shares",
                                    *(FACE_COLUMNS if m.face_count is None else ())})
        if m.cutout_coverage is None and m.cutout_problem is None:  # not asked for: the rows stay as they were
            del row["cutout_coverage"], row["cutout_problem"]
        row["format_consistent"] = m.format_detected is not None and m.format_detected == m.format_declared
        row["duplicate_of"] = duplicates.get(outpainted_from.get(m.image_id, m.image_id))
        need_w, need_h = required_size(m.width, m.height, policy.min_width, policy.min_height)
        row["required_size"] = f"{need_w}x{need_h}"
        row["resolution_ok"] = m.decoded_ok and m.width >= need_w and m.height >= need_h
        row["content_filtered"] = bool(content_filtered.get(m.image_id, False))
        if vlm_verdicts is not None:
            row["vlm_verdict"] = vlm_verdicts.get(m.image_id, "missing")
        rows.append(row)
    return rows


@task(name="gate-masters", task_run_name="gate round {round_no}", cache_result_in_memory=False)
def gate_masters(measurements: list[ImageMeasurements], content_filtered: dict[str, bool], policy,
                 has_palette: bool, docs_dir: str, round_no: int,
                 vlm_verdicts: dict[str, str] | None = None,
                 outpainted_from: dict[str, str] | None = None, with_cutout: bool = False,
                 with_faces: bool = False) -> GateReport:
    """Validate every measured master against the quality policy; which image failed which gate and why.
    `with_faces`: the faces gates too (masters measured without faces have nothing for them to judge)."""
    rows = measurement_rows(measurements, content_filtered, policy, vlm_verdicts, outpainted_from)
    checks = checks_for_policy(policy, has_palette=has_palette, with_vlm=vlm_verdicts is not None,
                               with_cutout=with_cutout, with_faces=with_faces)
    return validate_rows(rows, checks, suite_name=f"imagegen-quality-round-{round_no}", docs_dir=Path(docs_dir))
