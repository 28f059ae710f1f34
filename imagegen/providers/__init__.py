"""Image providers as plain clients (no Prefect): the blocks layer wraps them."""

from imagegen.providers.base import ImageGenerator, save_image_bytes

__all__ = ["ImageGenerator", "save_image_bytes"]
