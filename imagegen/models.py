"""Small, picklable models that travel between stages.

Tasks pass these instead of pixels or bytes: Prefect pickles task results, so a
result must stay a few hundred bytes no matter how large the image is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ImageFormat = Literal["PNG", "JPEG", "WEBP", "AVIF"]

FORMAT_EXTENSIONS: dict[str, str] = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}
FORMAT_CONTENT_TYPES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
}

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ImageRef(BaseModel):
    """A file on the run's working store, identified by its content hash."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Absolute path of the file on local disk")
    sha256: str
    width: int
    height: int
    format: str = Field(description="Pillow format name: PNG, JPEG, WEBP, AVIF, ...")
    bytes: int

    @classmethod
    def from_file(cls, path: str | Path) -> ImageRef:
        """Describe an image file without decoding its pixels (Pillow reads the header only)."""
        from PIL import Image

        path = Path(path).resolve()
        with Image.open(path) as im:
            width, height, fmt = im.width, im.height, (im.format or "UNKNOWN")
        return cls(
            path=str(path),
            sha256=sha256_file(path),
            width=width,
            height=height,
            format=fmt,
            bytes=path.stat().st_size,
        )


class ProviderCapabilities(BaseModel):
    """What a provider accepts; the prompt builder and aspect planner read this before any spend."""

    max_prompt_chars: int = 500
    negative_prompt: Literal["native", "fold", "drop"] = "fold"
    # Exact (width, height) pairs the provider can render; empty means any size up to max_side.
    native_sizes: list[tuple[int, int]] = Field(default_factory=list)
    # Aspect ratios such as "16:9" the provider renders natively (neuroflash, Kontext).
    aspect_ratios: list[str] = Field(default_factory=list)
    max_side: int = 4096
    supports_edit: bool = False
    is_stand_in: bool = False
    # Fewer inference steps the model allows for masters that only feed thumbnails (None: no faster setting)
    fast_steps: int | None = None


class GenerationRequest(BaseModel):
    """One image to make: everything a provider needs, nothing it must not see."""

    prompt: str
    negative_prompt: str = ""
    width: int
    height: int
    seed: int
    model: str | None = None
    output_format: ImageFormat = "PNG"
    steps: int | None = None  # None: the model's (or the provider block's) default
    # Structured prompt parts, for providers (like `local`) that render from structure, not text.
    spec: dict[str, Any] = Field(default_factory=dict)


class GeneratedImage(BaseModel):
    """What a provider call produced: a file reference plus the provenance we catalog."""

    image: ImageRef
    provider: str
    model: str
    seed: int
    generation_ms: int
    content_filtered: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class StoredObject(BaseModel):
    """A file as it sits in an asset store after publishing."""

    store: str = Field(description="Name of the store: local, supabase, gitlab, quarantine, ...")
    key: str = Field(description="Store-relative key, e.g. <campaign>/<asset>/<variant>.<ext>")
    url: str
    sha256: str
    bytes: int
    content_type: str
    written: bool = Field(description="False when the store already held these exact bytes")
    replaced_sha256: str | None = Field(None, description="The other bytes a write replaced under the key "
                                                          "(put_file with replace=True), None otherwise")
