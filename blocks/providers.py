"""Provider blocks: saved configuration (and credentials) that hand out an image generator client.

Tasks take an `ImageProviderBlock` as a parameter, the way prefect-aws's S3 tasks take
`AwsCredentials`: a saved block in the Prefect UI and a block built from environment variables
work the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from prefect.blocks.core import Block
from pydantic import Field

from imagegen.providers.base import ImageGenerator


class ImageProviderBlock(Block, ABC):
    """Base type of every image provider block: `get_generator()` returns a ready client."""

    _block_type_name = "Image Provider"
    _logo_url = None

    provider_name: str = Field("provider", description="Name recorded per asset in the catalog")

    @abstractmethod
    def get_generator(self) -> ImageGenerator:
        """A client implementing imagegen.providers.ImageGenerator (generate, edit, capabilities)."""

    def account_key(self) -> str:
        """Identifies the provider account whose rate limit this block shares with other tasks."""
        return self.provider_name


class LocalProvider(ImageProviderBlock):
    """The offline, deterministic stand-in renderer: not a diffusion model, no credentials, no quota.

    Example:
        ```python
        from imagegen_flows.blocks.providers import LocalProvider
        provider = LocalProvider.load("BLOCK_NAME")
        generator = provider.get_generator()
        ```
    """

    _block_type_name = "Imagegen Local Provider"
    _block_type_slug = "imagegen-local-provider"
    _description = "Offline procedural renderer for dry runs, demos and tests (not a diffusion model)."

    provider_name: str = Field("local", description="Name recorded per asset in the catalog")
    model: str = Field("local-procedural-v1", description="Renderer version, recorded as the model")
    master_size: int = Field(2048, ge=64, le=4096, title="Master size",
                             description="Side of the square master image in pixels")

    def get_generator(self) -> ImageGenerator:
        from imagegen.providers.local import LocalGenerator

        return LocalGenerator(master_size=self.master_size)
