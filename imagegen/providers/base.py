"""The provider interface every image source implements, and the one way bytes become a file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from imagegen.errors import ProviderError
from imagegen.files import write_atomically
from imagegen.models import (
    FORMAT_EXTENSIONS,
    GeneratedImage,
    GenerationRequest,
    ImageRef,
    ProviderCapabilities,
    sha256_file,
)

# A provider answer is untrusted input: cap its pixel count before decoding (decompression bombs).
MAX_PROVIDER_PIXELS = 64_000_000
MAX_PROVIDER_BYTES = 64 * 1024 * 1024


@runtime_checkable
class ImageGenerator(Protocol):
    """A client that turns a GenerationRequest into an image file in `dest_dir`."""

    name: str

    def capabilities(self, model: str | None = None) -> ProviderCapabilities: ...

    def generate(self, request: GenerationRequest, dest_dir: Path) -> GeneratedImage: ...

    def edit(self, source: ImageRef, instruction: str, request: GenerationRequest,
             dest_dir: Path) -> GeneratedImage:
        """Image-to-image edit of `source` following `instruction`. Providers without an edit
        endpoint raise ProviderRequestInvalid."""
        ...


def save_image_bytes(data: bytes, dest_dir: Path, *, provider: str) -> ImageRef:
    """Verify `data` is a whole, sane image and store it content-addressed as <sha256>.<ext>.

    Rejects non-image bytes, truncated files and oversized images with a ProviderError that
    says what was wrong, so nothing unverified reaches the gate as if it were an image.
    """
    if not data:
        raise ProviderError("provider returned an empty image", provider=provider)
    if len(data) > MAX_PROVIDER_BYTES:
        raise ProviderError(f"provider returned {len(data)} bytes, over the {MAX_PROVIDER_BYTES} byte cap",
                            provider=provider)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PROVIDER_PIXELS:
                raise ProviderError(
                    f"provider returned a {im.width}x{im.height} image, over the {MAX_PROVIDER_PIXELS} pixel cap",
                    provider=provider)
            fmt = im.format or ""
            im.load()  # a full decode catches truncated bodies
    except ProviderError:
        raise
    except Exception as exc:  # Pillow raises several unrelated types for bad data
        raise ProviderError(f"provider returned bytes that are not a decodable image ({type(exc).__name__}: {exc})",
                            provider=provider) from None
    ext = FORMAT_EXTENSIONS.get(fmt)
    if ext is None:
        raise ProviderError(f"provider returned an unsupported image format {fmt!r}", provider=provider)
    digest = hashlib.sha256(data).hexdigest()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{digest}.{ext}"
    if not target.exists() or target.stat().st_size != len(data) or sha256_file(target) != digest:
        # never half a file under a content hash (a truncated one is replaced); what a kill -9 leaves is swept
        write_atomically(target, data)
    return ImageRef.from_file(target)
