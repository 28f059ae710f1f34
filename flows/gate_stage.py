"""Gate and edit stage: measure, validate, review; remedy what failed and gate again, a bounded number of times.

Every version an edit makes stays in the masters folder; what still fails after the last attempt is
judged as it is and quarantined by the publish stage, never dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.futures import PrefectFuture, wait

from imagegen.brief import Brief
from imagegen.errors import MasterChanged, safe_reason
from imagegen.imaging.metrics import ImageMeasurements
from imagegen.models import GeneratedImage
from imagegen.prompts import PromptSpec
from imagegen.providers.vlm import Review
from imagegen.quality import GateReport
from imagegen.remediation import edit_instruction, plan_remediation
from imagegen.summary import FailedAsset
from imagegen_flows.flows.streaming import future_exception, resolved
from imagegen_flows.tasks.edit import fix_master_locally
from imagegen_flows.tasks.gate import gate_masters, measure_master
from imagegen_flows.tasks.generate import provider_edit_master, regenerate_master
from imagegen_flows.tasks.providers import review_master


def measure_all(masters: dict[str, GeneratedImage], palette: list[str],
                known: dict[str, Any], background: str = "keep", faces: frozenset[str] = frozenset()
                ) -> list[ImageMeasurements]:
    """Measure each master once: bytes measured (or being measured) earlier are not measured again.

    `known` maps a master's sha256 to its measurements or to the future of a measure task that the
    generate stage submitted as the master arrived. The masters named in `faces` get the faces columns.
    """
    for aid, m in masters.items():
        if m.image.sha256 not in known:
            known[m.image.sha256] = measure_master.submit(m.image.path, aid, palette, background, aid in faces)
    for m in masters.values():
        known[m.image.sha256] = resolved(known[m.image.sha256])
    return [known[m.image.sha256].model_copy(update={"image_id": aid}) for aid, m in masters.items()]


def submit_remedy(aid: str, failures: list, remedies: list[str], master: GeneratedImage, spec: PromptSpec,
                  provider, masters_dir: Path, palette: list[str], run_id: str, attempt: int,
                  seeds_used: int = 0) -> PrefectFuture:
    """`seeds_used`: new seeds the generate stage already tried (after filtered answers); a regeneration
    here takes the next one, not one of those again."""
    if remedies == ["regenerate"]:
        return regenerate_master.submit(spec, provider, str(masters_dir), run_id, attempt + seeds_used)
    if remedies == ["provider_edit"]:
        return provider_edit_master.submit(master, spec, provider, edit_instruction(failures), str(masters_dir),
                                           run_id, attempt)
    return fix_master_locally.submit(master, aid, remedies, palette, str(masters_dir), attempt)


def review_all(masters: dict[str, GeneratedImage], specs: dict[str, PromptSpec], reviewer, run_id: str,
               known: dict[str, Any], logger, masters_dir: Path) -> dict[str, Any]:
    """A VLM review per master (verdict, reasons, alt text); bytes reviewed in an earlier round are not
    reviewed again. A review that fails counts as a failing verdict, with its reason."""
    futures = {m.image.sha256: review_master.submit(m.image.path, aid, reviewer,
                                                    {"campaign": specs[aid].campaign, "prompt": specs[aid].prompt,
                                                     "brand": specs[aid].brand_name}, run_id,
                                                    m.image.sha256, str(masters_dir))
               for aid, m in masters.items() if m.image.sha256 not in known}
    wait(list(futures.values()))
    for sha, future in futures.items():
        exc = future_exception(future)
        if exc is None:
            known[sha] = future.result()
        else:
            logger.warning(f"[gate] review failed: {safe_reason(exc)}")
            known[sha] = Review(verdict="fail", reasons=[f"review failed: {safe_reason(exc)}"], alt_text="",
                                model=getattr(reviewer, "model", "vlm"))
    return {aid: known[m.image.sha256] for aid, m in masters.items()}


def gate_and_edit(masters: dict[str, GeneratedImage], specs: dict[str, PromptSpec], brief: Brief, provider,
                  masters_dir: Path, docs_dir: Path, run_id: str, logger, reviewer=None,
                  measured: dict[str, Any] | None = None, failed: list[FailedAsset] | None = None
                  ) -> tuple[GateReport, dict[str, list], dict[str, Any]]:
    """Gate every master; remedy failures and gate again, at most `max_edit_attempts` times.

    Every version an edit produces stays in the masters folder: edits add files, never replace them.
    With a reviewer, each master also gets a VLM review: its verdict is a gate when the policy asks
    for it, and its alt text is kept for the catalog. Returns the report, the edit history, and the
    latest review per master. `measured` holds measurements (or their futures) made as masters arrived.
    A master whose remedy finds its recorded bytes changed (MasterChanged) leaves `masters` for `failed`.
    """
    failed = failed if failed is not None else []
    policy = brief.quality
    palette = list(brief.brand.palette)
    known: dict[str, Any] = measured if measured is not None else {}
    reviewed: dict[str, Any] = {}
    reviews: dict[str, Any] = {}
    history: dict[str, list[dict]] = {aid: [] for aid in masters}
    seeds_used = {aid: int(m.metadata.get("filtered_retries", 0)) for aid, m in masters.items()}
    supports_edit = provider.get_generator().capabilities(brief.provider.model).supports_edit
    faces = frozenset(aid for aid in masters if policy.checks_faces(specs[aid].style))
    for round_no in range(policy.max_edit_attempts + 1):
        measurements = measure_all(masters, palette, known, brief.publish.background, faces)
        filtered = {aid: bool(m.content_filtered) for aid, m in masters.items()}
        if reviewer is not None:
            reviews = review_all(masters, specs, reviewer, run_id, reviewed, logger, masters_dir)
        verdicts = {aid: r.verdict for aid, r in reviews.items()} if policy.vlm_review else None
        report = gate_masters(measurements, filtered, policy, bool(palette), str(docs_dir), round_no, verdicts,
                              {aid: parent for aid in masters if (parent := specs[aid].outpaint_from)},
                              with_cutout=brief.publish.background != "keep", with_faces=bool(faces))
        if verdicts:
            for aid, result in report.results.items():  # the model's own reasons, not just "verdict is 'fail'"
                for failure in result.failures:
                    if failure.gate == "vlm_review" and reviews[aid].reasons:
                        failure.reason = "VLM review: " + "; ".join(reviews[aid].reasons)
        failing = report.failed_ids()
        logger.info(f"[gate] round {round_no}: {len(masters) - len(failing)}/{len(masters)} passed")
        for aid in failing:
            history[aid].append({"round": round_no, "sha256": masters[aid].image.sha256,
                                 "failures": [f.model_dump() for f in report.results[aid].failures]})
        if not failing or round_no == policy.max_edit_attempts:
            return report, history, reviews
        attempt = round_no + 1
        futures = {}
        for aid in failing:
            failures = report.results[aid].failures
            remedies = plan_remediation(failures, provider_supports_edit=supports_edit)
            if not remedies:  # a gate that could not run: no edit can pass it, none is paid for
                logger.warning(f"[edit] {aid}: no remedy for a gate that could not run; kept as it is")
                continue
            logger.info(f"[edit] {aid} attempt {attempt}: {', '.join(remedies)}")
            futures[aid] = submit_remedy(aid, failures, remedies, masters[aid], specs[aid], provider, masters_dir,
                                         palette, run_id, attempt, seeds_used[aid])
        if not futures:  # nothing changed: gating again would say the same
            return report, history, reviews
        wait(list(futures.values()))
        for aid, future in futures.items():
            exc = future_exception(future)
            if exc is None:
                masters[aid] = future.result()
            elif isinstance(exc, MasterChanged):  # judging an earlier version instead would publish other bytes
                logger.warning(f"[edit] {aid} failed: {safe_reason(exc)}")
                failed.append(FailedAsset(asset_id=aid, stage="edit", reason=safe_reason(exc)))
                del masters[aid]
            else:  # the edit failed: the last version stays and is judged (and kept) as it is
                logger.warning(f"[edit] {aid} attempt {attempt} failed: {safe_reason(exc)}")
                history[aid].append({"round": round_no, "edit_error": safe_reason(exc)})
        if not masters:  # every master left for `failed`: nothing to gate again
            return report, history, reviews
    raise AssertionError("unreachable: the last round returns")
