"""An image file a brief names besides its logo (an inpainting mask, a style reference), read once within
the logo's caps (imagegen.imaging.logo) and decoded whole, or refused with one reason for the brief field."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

from imagegen.imaging.logo import MAX_LOGO_PIXELS, logo_file_stat


class _Refused(ValueError):
    """A reason found while decoding, passed through the catch-all for Pillow's own errors."""


def read_brief_image(path: Path, formats: tuple[str, ...], caps: str, *, noun: str,
                     format_word: str | None = None) -> tuple[bytes, Image.Image]:
    """The file's bytes and its decoded image; ValueError (the reason, ending in "give <caps>") unless it is
    a regular file within the byte cap holding a whole image of `formats` within the pixel cap.

    `noun` names the image in the pixel-cap reason ("the mask"); `format_word` the one format it must be
    ("PNG"), or None for any of `formats`.
    """
    try:
        logo_file_stat(path)  # a regular file within the byte cap, before anything is read
        data = path.read_bytes()
    except ValueError as exc:
        raise ValueError(str(exc).replace(" for a logo", "")) from None
    except OSError as exc:
        raise ValueError(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    kind = format_word or "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(formats))
            if image.width * image.height > MAX_LOGO_PIXELS:
                raise _Refused(f"{noun} is {image.width}x{image.height} px, over the {MAX_LOGO_PIXELS} "
                               f"pixel cap (give {caps})")
            image.load()
    except _Refused as refused:
        raise ValueError(str(refused)) from None
    except Image.UnidentifiedImageError:
        raise ValueError(f"not {'a ' + format_word + ' image' if format_word else 'an image'}: give {caps}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises several unrelated types for damaged files
        raise ValueError(f"a truncated or damaged {kind} ({type(exc).__name__}): give {caps}") from None
    return data, image
