"""Provider-account tasks around the generate stage: quota before spending, usage after, VLM reviews."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task

from imagegen.budget import budget_for_run, paid_call
from imagegen.ledger import ledger_for_run, ledger_key, paid_once
from imagegen.paid_sends import charges_when_sending
from imagegen.pending import FolderJournal
from imagegen.providers.vlm import REVIEW_PROMPT_VERSION, Review
from imagegen_flows.blocks.providers import ImageProviderBlock
from imagegen_flows.tasks.retrying import RETRY_OPTIONS


@task(name="check-quota", task_run_name="check quota of {provider.provider_name}", **RETRY_OPTIONS)
def check_quota(provider: ImageProviderBlock, needed: int) -> dict[str, Any] | None:
    """Raise QuotaExhausted (saying how many are needed and left) before the first generation.

    Providers without a quota API (local, NVIDIA) answer None.
    """
    generator = provider.get_generator()
    ensure = getattr(generator, "ensure_quota", None)
    return ensure(needed).summary() if ensure else None


@task(name="read-usage", task_run_name="read usage of {provider.provider_name}", **RETRY_OPTIONS)
def read_usage(provider: ImageProviderBlock) -> dict[str, Any] | None:
    """The account's quota after the run (neuroflash); None where the provider has no usage API."""
    generator = provider.get_generator()
    report = getattr(generator, "usage_report", None)
    return report().get("after") if report else None


@task(name="review-master", task_run_name="review {image_id}", cache_result_in_memory=False, **RETRY_OPTIONS)
def review_master(image_path: str, image_id: str, reviewer, context: dict[str, Any], run_id: str, sha256: str,
                  masters_dir: str) -> Review:
    """A vision-language model's verdict, reasons and alt text for one master (one provider call).

    Recorded in the ledger by the image's bytes, the reviewer's model, the review prompt's version and
    the brief context the prompt quotes: a rerun takes the review from there instead of paying again.
    """
    def pay() -> Review:  # a lost answer counts as spent and is sent again at most once (paid_call)
        journal = FolderJournal.under(Path(masters_dir))
        vlm = reviewer.get_reviewer()
        return paid_call(budget_for_run(run_id), "vlm", lambda: vlm.review(image_path, context, journal=journal),
                         image=False, charged_when_sent=charges_when_sending(vlm))

    key = ledger_key("review", sha256, reviewer.model, REVIEW_PROMPT_VERSION, json.dumps(context, sort_keys=True))
    return paid_once(ledger_for_run(run_id, Path(masters_dir)), key, Review, pay)
