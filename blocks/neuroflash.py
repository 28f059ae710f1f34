"""neuroflash blocks: OAuth client credentials, and the image provider that uses them.

`NeuroflashCredentials` holds what identifies the API client (the secret as SecretStr, masked in
the UI, in logs and in reprs); `NeuroflashImageProvider` adds the model and pacing and hands out
an `imagegen.providers.neuroflash.NeuroflashGenerator`.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from imagegen.providers.base import ImageGenerator
from imagegen.providers.neuroflash import DEFAULT_MODEL, NeuroflashGenerator
from imagegen.providers.neuroflash_client import (
    DEFAULT_API_URL,
    DEFAULT_RATE_PER_MINUTE,
    DEFAULT_TOKEN_URL,
    NeuroflashClient,
)
from imagegen.redaction import mask_url_fields
from imagegen_flows.blocks.providers import ImageProviderBlock


class NeuroflashCredentials(CredentialsBlock):
    """OAuth2 client credentials of a neuroflash API client (and where its API lives).

    Example:
        ```python
        from imagegen_flows.blocks.neuroflash import NeuroflashCredentials
        credentials = NeuroflashCredentials.load("BLOCK_NAME")
        client = credentials.get_client()
        print(client.quota().remaining())
        ```
    """

    _block_type_name = "Imagegen Neuroflash Credentials"
    _block_type_slug = "imagegen-neuroflash-credentials"
    _description = "Client ID and secret of a neuroflash API client (OAuth2 client credentials)."
    _logo_url = None

    client_id: str = Field(..., title="Client ID", description="neuroflash API client ID (NEUROFLASH_CLIENT_ID)")
    client_secret: SecretStr = Field(..., title="Client secret",
                                     description="neuroflash API client secret (NEUROFLASH_CLIENT_SECRET)")
    api_url: str = Field(DEFAULT_API_URL, title="API URL", description="Base URL of the neuroflash API")
    token_url: str = Field(DEFAULT_TOKEN_URL, title="Token URL", description="OAuth2 token endpoint")
    workspace_id: str | None = Field(None, title="Workspace ID",
                                     description="Workspace to bill; empty means the first one the client sees")
    timeout_seconds: float = Field(120.0, gt=0, title="Timeout (s)",
                                   description="Per-request timeout; image generation can take a minute")

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return mask_url_fields(super().__repr_args__())  # a URL setting may carry credentials

    def get_client(self, *, rate_per_minute: float = DEFAULT_RATE_PER_MINUTE, limiter: Any = None,
                   transport: Any = None) -> NeuroflashClient:
        """A NeuroflashClient paced by the process-wide limiter of this client ID (unless `limiter`)."""
        return NeuroflashClient(
            client_id=self.client_id,
            client_secret=self.client_secret,
            api_url=self.api_url,
            token_url=self.token_url,
            workspace_id=self.workspace_id,
            timeout=self.timeout_seconds,
            limiter=limiter,
            transport=transport,
            rate_per_minute=rate_per_minute,
        )


class NeuroflashImageProvider(ImageProviderBlock):
    """neuroflash image generation (text-to-image and edit), quota-checked before every spend.

    Example:
        ```python
        from imagegen_flows.blocks.neuroflash import NeuroflashImageProvider
        provider = NeuroflashImageProvider.load("BLOCK_NAME")
        generator = provider.get_generator()
        ```
    """

    _block_type_name = "Imagegen Neuroflash Provider"
    _block_type_slug = "imagegen-neuroflash-provider"
    _description = "Generates and edits images with the neuroflash API (no seed, no negative prompt)."

    provider_name: str = Field("neuroflash", description="Name recorded per asset in the catalog")
    credentials: NeuroflashCredentials = Field(..., description="The API client to use")
    model: str = Field(DEFAULT_MODEL, description="Model id from GET /ds-prototypes/image_generation/models")
    rate_per_minute: float = Field(DEFAULT_RATE_PER_MINUTE, gt=0, title="Rate per minute",
                                   description="API calls per minute shared by every task on this client ID")
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, title="Output format", description="Format to request; empty follows each request's output_format")

    def get_generator(self) -> ImageGenerator:
        client = self.credentials.get_client(rate_per_minute=self.rate_per_minute)
        return NeuroflashGenerator(client, model=self.model, output_format=self.output_format)

    def account_key(self) -> str:
        """Same key as the client's shared limiter: one rate budget per neuroflash API client."""
        return f"neuroflash:{self.credentials.client_id}"


def neuroflash_provider_from_settings(settings, model: str | None = None) -> NeuroflashImageProvider:
    """Build the provider from NEUROFLASH_CLIENT_ID / NEUROFLASH_CLIENT_SECRET and IMAGEGEN_NEUROFLASH_*."""
    from imagegen.errors import ProviderNotConfigured

    missing = [name for name, value in (("NEUROFLASH_CLIENT_ID", settings.neuroflash_client_id),
                                        ("NEUROFLASH_CLIENT_SECRET", settings.neuroflash_client_secret)) if not value]
    if missing:  # the brief may name the provider, but what is missing is in the environment: exit 1
        raise ProviderNotConfigured([(name, "provider 'neuroflash' needs it in the environment (or name a saved block: "
                                    "provider.block)") for name in missing])
    credentials = NeuroflashCredentials(
        client_id=settings.neuroflash_client_id, client_secret=settings.neuroflash_client_secret,
        api_url=settings.neuroflash_api_url, token_url=settings.neuroflash_token_url,
        workspace_id=settings.neuroflash_workspace_id)
    return NeuroflashImageProvider(credentials=credentials, model=model or DEFAULT_MODEL,
                                   rate_per_minute=settings.neuroflash_rate_per_minute)
