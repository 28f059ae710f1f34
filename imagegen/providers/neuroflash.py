"""neuroflash as an ImageGenerator: one image per request, at the nearest aspect ratio the model offers.

neuroflash takes no seed and no negative prompt: the request's seed is recorded but not honoured
and negatives are folded into the prompt. The quota is spent by the API call, so an image that
cannot be fetched afterwards fails for good (non-transient, naming the image id): a task retry
would pay for it again.

Every generate and edit is a paid request in the pending journal (imagegen.pending): when its answer
is lost in transit (OutcomeUnknown), the next call with the same request first looks for the image in
the workspace history (imagegen.providers.neuroflash_history) and adopts it instead of paying again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen.errors import ProviderError, ProviderRequestInvalid, outcome_unknown
from imagegen.models import GeneratedImage, GenerationRequest, ImageRef, ProviderCapabilities
from imagegen.paid_sends import sending_paid_request
from imagegen.pending import RECOVERED_KEY, FolderJournal, PendingJournal, new_entry, request_key
from imagegen.providers.neuroflash_api import (
    PROVIDER,
    GenerationResult,
    ImageModel,
    NeuroflashImage,
    Quota,
    nearest_aspect_ratio,
)
from imagegen.providers.neuroflash_client import NeuroflashClient
from imagegen.providers.neuroflash_history import adopt_lost_image
from imagegen.providers.paid_requests import lost_answer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nano-banana-2"
# Nano Banana (Gemini image) takes long prompts; 2000 keeps the folded negative prompt readable.
MAX_PROMPT_CHARS = 2000
_OUTPUT_FORMAT_BY_PILLOW: dict[str, str] = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "AVIF": "avif"}


class NeuroflashGenerator:
    """ImageGenerator over NeuroflashClient: one image per generate(), nearest offered aspect ratio.

    neuroflash takes no seed and no negative prompt: the request's seed is recorded but not
    honoured (`metadata["seed_honoured"] = False`) and negatives are folded into the prompt.
    """

    name = PROVIDER
    charges_budget_when_sending = True  # adopting a lost answer from the history is free (imagegen.paid_sends)

    def __init__(self, client: NeuroflashClient, model: str = DEFAULT_MODEL, output_format: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 journal_for: Callable[[Path], PendingJournal] = FolderJournal.under):
        self.client = client
        self.model = model
        self.output_format = output_format
        self._clock = clock
        self.journal_for = journal_for  # the pending-requests journal of a masters folder (imagegen.pending)
        self.images_generated = 0
        self.images_edited = 0

    def __repr__(self) -> str:
        return f"NeuroflashGenerator(model={self.model!r}, client={self.client!r})"

    def capabilities(self, model: str | None = None) -> ProviderCapabilities:
        entry = self.client.model(model or self.model)
        return ProviderCapabilities(max_prompt_chars=MAX_PROMPT_CHARS, negative_prompt="fold",
                                    aspect_ratios=list(entry.aspect_ratios), supports_edit=True,
                                    max_side=4096)

    def ensure_quota(self, needed: int) -> Quota:
        """Call before a run's generate stage with the number of images planned."""
        return self.client.ensure_quota(needed)

    def usage_report(self) -> dict[str, Any]:
        report = self.client.usage_report()
        report.update(images_generated=self.images_generated, images_edited=self.images_edited)
        return report

    def _prompt(self, request: GenerationRequest) -> str:
        """The prompt with any negatives folded in (the API has no negative prompt field)."""
        prompt = request.prompt.strip()
        if request.negative_prompt.strip():
            prompt = f"{prompt}\nAvoid: {request.negative_prompt.strip()}"
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ProviderRequestInvalid(f"neuroflash prompt is {len(prompt)} characters (negatives folded in); "
                                         f"allowed values: at most {MAX_PROMPT_CHARS}", provider=PROVIDER)
        return prompt

    def _output_format(self, request: GenerationRequest, entry: ImageModel) -> str:
        """The block's fixed format, else the request's; a format the model lacks falls back to
        png (lossless, re-encoded later) rather than failing the asset."""
        wanted = self.output_format or _OUTPUT_FORMAT_BY_PILLOW.get(request.output_format, "png")
        if wanted in entry.output_formats or not entry.output_formats:
            return wanted
        return "png" if "png" in entry.output_formats else entry.output_formats[0]

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage:
        started = self._clock()
        model_id = request.model or self.model
        entry = self.client.model(model_id)
        try:
            aspect = nearest_aspect_ratio(request.width, request.height, entry.aspect_ratios)
        except ValueError as exc:
            raise ProviderRequestInvalid(f"neuroflash aspect_ratio: cannot plan {request.width}x{request.height} "
                                         f"for {model_id!r} ({exc})", provider=PROVIDER) from None
        output_format = self._output_format(request, entry)
        prompt = self._prompt(request)
        payload = {"prompt": prompt, "model": model_id, "num_images": 1, "aspect_ratio": aspect,
                   "output_format": output_format}
        paid = self._paid(PaidCall(dest_dir, "/ds-prototypes/image_generation/", payload, prompt, request.seed),
                          lambda: self.client.generate(prompt, model_id, aspect, output_format, num_images=1))
        image = paid.image
        if not paid.recovered:
            self.images_generated += 1
        ref = self._fetch_paid(paid, dest_dir, spent="generated")
        metadata = {"seed_honoured": False, "image_id": image.image_id, "batch_id": paid.batch_id,
                    "aspect_ratio": aspect, "output_format": output_format,
                    "output_format_requested": request.output_format,
                    "negative_prompt": "folded" if request.negative_prompt.strip() else "none",
                    **paid.recovery_note()}
        return GeneratedImage(image=ref, provider=PROVIDER, model=model_id, seed=request.seed,
                              generation_ms=int((self._clock() - started) * 1000), metadata=metadata)

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest,
             dest_dir: Path) -> GeneratedImage:
        """Edit an image neuroflash made earlier: `request.spec["neuroflash_image_id"]` names it
        (the API has no upload, so a local file cannot be edited)."""
        source_id = request.spec.get("neuroflash_image_id")
        if not source_id:
            raise ProviderRequestInvalid(
                "neuroflash edit needs request.spec['neuroflash_image_id'] (the image_id in the generate "
                "metadata); neuroflash cannot edit an image it did not make", provider=PROVIDER)
        started = self._clock()
        payload = {"prompt": instruction, "source_image_id": str(source_id)}
        paid = self._paid(PaidCall(dest_dir, "/ds-prototypes/edit", payload, instruction, request.seed),
                          lambda: self.client.edit(str(source_id), instruction))
        image = paid.image
        if not paid.recovered:
            self.images_edited += 1
        ref = self._fetch_paid(paid, dest_dir, spent="edited")
        metadata = {"seed_honoured": False, "image_id": image.image_id, "batch_id": paid.batch_id,
                    "edited_from_image_id": source_id, "source_sha256": source.sha256, **paid.recovery_note()}
        return GeneratedImage(image=ref, provider=PROVIDER, model=request.model or self.model, seed=request.seed,
                              generation_ms=int((self._clock() - started) * 1000), metadata=metadata)

    def _paid(self, call: PaidCall, send: Callable[[], GenerationResult]) -> PaidImage:
        """Send a paid request once: adopt the image of an earlier send whose answer was lost, if the
        history has it; else journal the request, send it, and claim the image it answers with."""
        journal = self.journal_for(call.dest_dir)
        key = call.key(self.client.api_url)
        lost = journal.get(key)
        if lost is not None:
            adopted = adopt_lost_image(self.client.history(), lost, journal)
            if adopted is not None:
                image, item = adopted
                log.info("neuroflash: the answer to a request sent earlier was lost; adopted image %s from the "
                         "history instead of paying again", image.image_id)
                return PaidImage(journal, key, image, item.batch_id, recovered=True)
            log.warning("neuroflash: the answer to a request sent earlier was lost and the history has no image "
                        "for it; sending it again")
        sending_paid_request()
        journal.record(new_entry(key, PROVIDER, call.endpoint, lost, prompt=call.prompt))
        try:
            result = send()
        except ProviderError as exc:
            if outcome_unknown(exc):
                raise lost_answer(exc, provider=PROVIDER, request_key=key) from None
            journal.remove(key)  # a final answer: nothing was made, or nothing can be found again
            raise
        image = result.images[0]
        if image.image_id:
            journal.claim(PROVIDER, image.image_id)  # before any other master could adopt it from the history
        return PaidImage(journal, key, image, result.batch_id, recovered=False)

    def _fetch_paid(self, paid: PaidImage, dest_dir: Path, *, spent: str) -> ImageRef:
        try:
            return self._fetch(paid.image, dest_dir, spent=spent)
        finally:  # the answer arrived: stored, or reported with its image id; nothing left to look for
            paid.journal.remove(paid.key)

    def _fetch(self, image: NeuroflashImage, dest_dir: Path, *, spent: str) -> ImageRef:
        """Download and verify; a failure here is *not* transient: the image is already paid for."""
        try:
            return self.client.save_downloaded(self.client.download(image), dest_dir, image_id=image.image_id)
        except ProviderError as exc:
            raise ProviderError(f"neuroflash {spent} image {image.image_id} (quota spent) but could not fetch it: "
                                f"{exc}; not retried, the image stays in neuroflash history",
                                provider=PROVIDER, status=exc.status) from None


@dataclass(frozen=True)
class PaidCall:
    """What identifies one paid request in the journal. neuroflash takes no seed, so two variations of
    one prompt send equal bodies; the request's seed tells them apart."""

    dest_dir: Path
    endpoint: str
    payload: dict[str, Any]
    prompt: str
    seed: int

    def key(self, api_url: str) -> str:
        return request_key(f"{api_url.rstrip('/')}{self.endpoint}", self.payload, self.seed)


@dataclass(frozen=True)
class PaidImage:
    """The image a paid request answered with (or that was adopted from the history for it)."""

    journal: PendingJournal
    key: str
    image: NeuroflashImage
    batch_id: str | None
    recovered: bool

    def recovery_note(self) -> dict[str, str]:
        return {RECOVERED_KEY: "neuroflash history image adopted"} if self.recovered else {}
