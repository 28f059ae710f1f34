"""NVIDIA blocks: credentials, the image provider (hosted API or self-hosted NIM) and the VLM reviewer.

Thin wrappers: all behaviour lives in imagegen.providers.nvidia and imagegen.providers.vlm.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.abstract import CredentialsBlock
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from imagegen.providers.nvidia import (
    DEFAULT_ASSETS_URL,
    DEFAULT_BASE_URL,
    DEFAULT_POLL_SECONDS,
    DEFAULT_RATE_PER_MINUTE,
    DEFAULT_STATUS_URL,
    NvidiaClient,
    NvidiaGenerator,
    nvidia_account_key,
)
from imagegen.providers.nvidia_models import FLUX_DEV, FLUX_KONTEXT
from imagegen.providers.vlm import DEFAULT_VLM_BASE_URL, DEFAULT_VLM_MODEL, VisionReviewer
from imagegen.redaction import mask_url_fields
from imagegen_flows.blocks.providers import ImageProviderBlock


class NvidiaCredentials(CredentialsBlock):
    """An NVIDIA API key (build.nvidia.com, `nvapi-...`) and the NVCF endpoints it is used with.

    Example:
        ```python
        from imagegen_flows.blocks.nvidia import NvidiaCredentials
        credentials = NvidiaCredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        ```
    """

    _block_type_name = "Imagegen NVIDIA Credentials"
    _block_type_slug = "imagegen-nvidia-credentials"
    _description = "API key and endpoints for NVIDIA's hosted AI APIs (ai.api.nvidia.com, NVCF)."

    api_key: SecretStr = Field(..., title="API key", description="NVIDIA API key (nvapi-...)")
    base_url: str = Field(DEFAULT_BASE_URL, title="Image API base URL",
                          description="Hosted image generation base; the model path is appended")
    status_url: str = Field(DEFAULT_STATUS_URL, title="NVCF status URL",
                            description="Where 202-accepted requests are polled: {status_url}/{reqId}")
    assets_url: str = Field(DEFAULT_ASSETS_URL, title="NVCF assets URL",
                            description="Upload endpoint for edit inputs too large to send inline")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def get_client(self, *, rate_per_minute: float | None = DEFAULT_RATE_PER_MINUTE,
                   nim_url: str | None = None, **kwargs: Any) -> NvidiaClient:
        """An NvidiaClient; paced by the account's shared token bucket unless rate_per_minute is None."""
        settings = dict(base_url=self.base_url, status_url=self.status_url, assets_url=self.assets_url,
                        nim_url=nim_url, **kwargs)
        key = self.api_key.get_secret_value()
        if rate_per_minute is None:
            return NvidiaClient(key, **settings)
        return NvidiaClient.for_account(key, rate_per_minute=rate_per_minute, **settings)


class NvidiaImageProvider(ImageProviderBlock):
    """FLUX.1 / SD 3.5 image generation on NVIDIA's hosted API, or on a self-hosted NIM (`nim_url`).

    Example:
        ```python
        from imagegen_flows.blocks.nvidia import NvidiaImageProvider
        provider = NvidiaImageProvider.load("BLOCK_NAME")
        generator = provider.get_generator()
        ```
    """

    _block_type_name = "Imagegen NVIDIA Image Provider"
    _block_type_slug = "imagegen-nvidia-image-provider"
    _description = "Text-to-image (FLUX.1-dev/schnell, SD 3.5) and FLUX.1 Kontext edits via NVIDIA."

    provider_name: str = Field("nvidia", description="Name recorded per asset in the catalog "
                                                      "(use 'nim' for a self-hosted container)")
    credentials: NvidiaCredentials | None = Field(
        None, description="Required for the hosted API; optional for a self-hosted NIM")
    model: str = Field(FLUX_DEV, title="Model", description="publisher/model path, e.g. " + FLUX_DEV)
    edit_model: str | None = Field(FLUX_KONTEXT, title="Edit model", description="Model used for edits")
    rate_per_minute: float = Field(DEFAULT_RATE_PER_MINUTE, gt=0, title="Requests per minute",
                                   description="Client-side pacing shared by every task using this account")
    steps: int | None = Field(None, ge=1, description="Diffusion steps; model default when empty")
    cfg_scale: float | None = Field(None, ge=0, title="CFG scale", description="Guidance; model default when empty")
    native_negative_prompt: bool = Field(
        False, description="Send negative_prompt to SD 3.5 (unconfirmed support); FLUX always folds negatives")
    nim_url: str | None = Field(None, title="NIM URL", description="Self-hosted NIM base, e.g. http://host:8000")
    timeout_seconds: float = Field(90.0, gt=0, description="Read timeout of one HTTP call")
    poll_seconds: int = Field(DEFAULT_POLL_SECONDS, ge=0, description="NVCF-POLL-SECONDS sent with each request")
    poll_deadline_seconds: float = Field(
        600.0, gt=0, description="Stop polling a 202-accepted request after this; its id is kept, and a retry "
                                 "or rerun polls it again instead of paying again")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def _client(self) -> NvidiaClient:
        options: dict[str, Any] = dict(nim_url=self.nim_url, timeout=self.timeout_seconds,
                                       poll_seconds=self.poll_seconds, poll_deadline=self.poll_deadline_seconds)
        if self.credentials is not None:
            return self.credentials.get_client(rate_per_minute=self.rate_per_minute, **options)
        if not self.nim_url:
            raise ValueError("NvidiaImageProvider needs credentials unless nim_url points at a self-hosted NIM")
        return NvidiaClient.for_account("", rate_per_minute=self.rate_per_minute, **options)

    def get_generator(self) -> NvidiaGenerator:
        return NvidiaGenerator(self._client(), model=self.model, edit_model=self.edit_model, steps=self.steps,
                               cfg_scale=self.cfg_scale, native_negative_prompt=self.native_negative_prompt,
                               name=self.provider_name)

    def account_key(self) -> str:
        key = self.credentials.api_key.get_secret_value() if self.credentials is not None else ""
        return nvidia_account_key(key, self.nim_url)


class NvidiaVisionReviewer(Block):
    """A vision-language model that reviews generated images and writes alt text.

    Example:
        ```python
        from imagegen_flows.blocks.nvidia import NvidiaVisionReviewer
        reviewer = NvidiaVisionReviewer.load("BLOCK_NAME").get_reviewer()
        ```
    """

    _block_type_name = "Imagegen NVIDIA Vision Reviewer"
    _block_type_slug = "imagegen-nvidia-vision-reviewer"
    _description = "Quality review and alt text via an OpenAI-compatible NVIDIA chat endpoint."

    credentials: NvidiaCredentials = Field(..., description="The NVIDIA account to call with")
    base_url: str = Field(DEFAULT_VLM_BASE_URL, title="Chat API base URL",
                          description="OpenAI-compatible base; /chat/completions is appended")
    model: str = Field(DEFAULT_VLM_MODEL, description="Vision-language model id")
    rate_per_minute: float = Field(DEFAULT_RATE_PER_MINUTE, gt=0, title="Requests per minute",
                                   description="Shared with image generation on the same key")
    timeout_seconds: float = Field(60.0, gt=0, description="Read timeout of one HTTP call")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def get_reviewer(self) -> VisionReviewer:
        return VisionReviewer.for_account(self.credentials.api_key.get_secret_value(),
                                          rate_per_minute=self.rate_per_minute, base_url=self.base_url,
                                          model=self.model, status_url=self.credentials.status_url,
                                          timeout=self.timeout_seconds,
                                          poll_seconds=min(30, max(0, int(self.timeout_seconds) - 1)))


def _credentials_from_settings(settings) -> NvidiaCredentials | None:
    if settings.nvidia_api_key is None or not settings.nvidia_api_key.get_secret_value():
        return None
    return NvidiaCredentials(api_key=settings.nvidia_api_key, base_url=settings.nvidia_base_url,
                             status_url=settings.nvcf_status_url, assets_url=settings.nvcf_assets_url)


def nvidia_provider_from_settings(settings, model: str | None = None, *,
                                  self_hosted: bool = False) -> NvidiaImageProvider:
    """Build the provider from NVIDIA_API_KEY and IMAGEGEN_NVIDIA_* / IMAGEGEN_NIM_URL.

    `self_hosted` (provider name `nim`) needs IMAGEGEN_NIM_URL; the key is then optional.
    """
    from imagegen.errors import ProviderNotConfigured

    credentials = _credentials_from_settings(settings)
    # the brief may name the provider, but what is missing is in the environment: exit 1, naming the variable
    if self_hosted and not settings.nim_url:
        raise ProviderNotConfigured([("IMAGEGEN_NIM_URL", "provider 'nim' needs it in the environment, e.g. "
                                                  "http://host:8000 (or name a saved block: provider.block)")])
    if not self_hosted and credentials is None:
        raise ProviderNotConfigured([("NVIDIA_API_KEY", "provider 'nvidia' needs it in the environment "
                                                "(or name a saved block: provider.block)")])
    return NvidiaImageProvider(credentials=credentials, model=model or FLUX_DEV,
                               rate_per_minute=settings.nvidia_rate_per_minute,
                               poll_deadline_seconds=settings.nvcf_poll_deadline_seconds,
                               nim_url=settings.nim_url if self_hosted else None,
                               provider_name="nim" if self_hosted else "nvidia")


def vision_reviewer_from_settings(settings) -> NvidiaVisionReviewer | None:
    """The VLM reviewer from NVIDIA_API_KEY, IMAGEGEN_VLM_BASE_URL and IMAGEGEN_VLM_MODEL; None without a key
    (callers then fall back to template alt text and skip the VLM gate)."""
    credentials = _credentials_from_settings(settings)
    if credentials is None:
        return None
    return NvidiaVisionReviewer(credentials=credentials, base_url=settings.vlm_base_url or DEFAULT_VLM_BASE_URL,
                                model=settings.vlm_model or DEFAULT_VLM_MODEL,
                                rate_per_minute=settings.nvidia_rate_per_minute)
