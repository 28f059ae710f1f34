"""Load and check the brand logo, and prepare it once per run at the sizes it is stamped at.

`check_logo` is what the brief runs on `brand.logo.path` before any spend: the path must name a readable
regular file of at most `MAX_LOGO_BYTES` holding a whole PNG, JPEG or WebP image of at most
`MAX_LOGO_PIXELS`. The pixel cap is checked on the header, before a single pixel is decoded, so a
decompression bomb never is; then the image is decoded fully, so a truncated file is refused too.
Every refusal is a `LogoError` whose text is the reason, for the brief to report as
``brand.logo.path: <reason>``.

`prepare_marks` is what a render uses: the logo decoded once per run folder and resized (LANCZOS,
from the full logo, as `brand.overlay_logo` always did) to the exact mark size of each image width it
will be stamped on, saved as small PNGs. A mark of the exact size makes overlay_logo's own resize a
copy, so the published bytes are those of a resize from the full logo, without decoding it per render.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import os
import stat
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Pillow is imported where pixels are touched: the brief module loads this one
    from PIL import Image

MAX_LOGO_BYTES = 20_000_000  # a logo has no business being larger
MAX_LOGO_PIXELS = 16_000_000  # 4000 x 4000; 16 MP is 64 MB of RGBA pixels when decoded
DEFAULT_LOGO_SCALE = 0.15  # the logo's width as a share of the image width, unless the brief says
LOGO_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
LOGO_CAPS = "a PNG, JPEG or WebP image of at most 20 MB and 16 megapixels"
SYMLINK_LOOP_REASON = "a symlink loop: the path never reaches a file"
_CHECKED_KEPT = 32  # checked files remembered (by identity) so the CLI and the flow check a logo once


class LogoError(ValueError):
    """Why a logo file is refused, worded for ``brand.logo.path: <reason>``."""


@dataclass(frozen=True)
class LogoInfo:
    """What the check found: the image format and size of a logo that passed."""

    format: str
    width: int
    height: int


# --------------------------------------------------------------------------- the file


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def logo_file_stat(path: Path) -> os.stat_result:
    """stat() of `path`, refused (LogoError) unless it is an existing regular file within MAX_LOGO_BYTES."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise LogoError(f"file not found (looked for {path})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogoError(SYMLINK_LOOP_REASON) from None
        raise LogoError(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise LogoError(f"{_kind(info.st_mode)}, not a file: give {LOGO_CAPS}")
    if info.st_size == 0:
        raise LogoError(f"the file is empty: give {LOGO_CAPS}")
    if info.st_size > MAX_LOGO_BYTES:
        raise LogoError(f"the file is {info.st_size} bytes, over the {MAX_LOGO_BYTES} byte cap for a logo "
                        f"(give {LOGO_CAPS})")
    return info


def read_logo_bytes(path: Path) -> bytes:
    """The bytes of the logo file, refused unread unless it is a regular file within the byte cap.

    Opened without blocking and checked again once open: a FIFO swapped in after the first check
    must not hang the run, and a file that grows is read no further than the cap.
    """
    logo_file_stat(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise LogoError(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogoError(f"not a regular file: give {LOGO_CAPS}")
        data = file.read(MAX_LOGO_BYTES + 1)
    if len(data) > MAX_LOGO_BYTES:
        raise LogoError(f"the file is over the {MAX_LOGO_BYTES} byte cap for a logo (give {LOGO_CAPS})")
    return data


# --------------------------------------------------------------------------- the image


def _not_an_image_reason(data: bytes) -> str:
    """Why bytes Pillow cannot open as PNG, JPEG or WebP are not a logo, as specifically as we can tell."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in head:
        return f"an SVG (vector) file, which is not accepted: export the logo as {LOGO_CAPS}"
    if b"\0" not in head:
        try:  # incremental: a character cut at the end of the sample is not a decoding error
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
            return f"a text file, not an image: give {LOGO_CAPS}"
        except UnicodeDecodeError:
            pass
    from PIL import Image

    try:  # name the format when Pillow knows it (GIF, TIFF, BMP...): header only, nothing decoded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as other:
                return f"a {other.format} image, which is not accepted: give {LOGO_CAPS}"
    except Exception:  # noqa: BLE001 - any failure just means "not an image we can name"
        return f"not an image (not PNG, JPEG or WebP): give {LOGO_CAPS}"


def decode_logo(data: bytes) -> Image.Image:
    """The logo's first frame, fully decoded, from the file's bytes; LogoError if it is not a whole
    PNG, JPEG or WebP image within the pixel cap. The cap is checked on the header, before decoding."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns of large images: the cap below says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(LOGO_FORMATS))
    except Image.DecompressionBombError:
        raise LogoError(f"the image is far over the {MAX_LOGO_PIXELS} pixel cap for a logo "
                        f"(give {LOGO_CAPS})") from None
    except Image.UnidentifiedImageError:
        raise LogoError(_not_an_image_reason(data)) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises several unrelated types for bad headers
        raise LogoError(f"a truncated or damaged image: it cannot be opened ({_describe(exc)})") from None
    if image.width * image.height > MAX_LOGO_PIXELS:
        raise LogoError(f"the image is {image.width}x{image.height} px, over the {MAX_LOGO_PIXELS} pixel cap "
                        f"for a logo (give {LOGO_CAPS})")
    try:
        image.load()  # every byte decoded: a truncated file fails here, not as a half-grey logo
    except Exception as exc:  # noqa: BLE001 - plugins raise OSError, SyntaxError, EOFError, ...
        raise LogoError(f"the {image.format} image cannot be decoded whole: it is truncated or damaged "
                        f"({_describe(exc)})") from None
    return image


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def load_logo(path: Path) -> Image.Image:
    """The checked, fully decoded logo at `path` (see read_logo_bytes and decode_logo)."""
    return decode_logo(read_logo_bytes(path))


_checked: OrderedDict[tuple, LogoInfo] = OrderedDict()
_checked_lock = threading.Lock()


def check_logo(path: Path) -> LogoInfo:
    """Check the logo at `path` (LogoError with the reason if it is refused) and say what it is.

    A file already checked in this process, unchanged (same inode, size and times), is not decoded
    again: the CLI and the flow both load the brief.
    """
    info = logo_file_stat(path)
    key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    with _checked_lock:
        if key in _checked:
            return _checked[key]
    image = load_logo(path)
    found = LogoInfo(format=image.format or "", width=image.width, height=image.height)
    del image
    with _checked_lock:
        _checked[key] = found
        while len(_checked) > _CHECKED_KEPT:
            _checked.popitem(last=False)
    return found


# --------------------------------------------------------------------------- prepared marks


def mark_width(image_width: int, scale: float) -> int:
    """The logo's width on an image `image_width` wide: `scale` of that width, at least 1 px."""
    return max(1, round(image_width * scale))


def mark_size(image_width: int, logo_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """The logo's size on an image `image_width` wide: `scale` of that width, the logo's aspect kept."""
    width = mark_width(image_width, scale)
    return width, _height_at(width, logo_size)


def _height_at(width: int, logo_size: tuple[int, int]) -> int:
    return max(1, round(logo_size[1] * width / logo_size[0]))


_preparing = threading.Lock()  # renders run in parallel threads: one of them prepares, the rest reuse


def prepare_marks(source: Path, image_widths: Iterable[int], scale: float, work_dir: Path) -> dict[int, str]:
    """Paths of the logo's marks for images `image_widths` wide, by mark width, in a folder of `work_dir`.

    Marks already there (from an earlier render of the run) are reused; the missing ones are made
    from one decode of the logo, checked as the brief checks it (LogoError if it changed into
    something refused). The folder is named by the logo file's identity, so a changed logo gets
    new marks.
    """
    from PIL import Image

    from imagegen.imaging.encode import write_atomically

    mark_widths = sorted({mark_width(width, scale) for width in image_widths})
    with _preparing:
        info = logo_file_stat(source)
        identity = f"{source}\0{info.st_dev}\0{info.st_ino}\0{info.st_size}\0{info.st_mtime_ns}"
        folder = work_dir / f"logo-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
        marks = {width: folder / f"{width}w.png" for width in mark_widths}
        missing = [width for width, path in marks.items() if not path.exists()]
        if missing:
            logo = load_logo(source)
            full = logo.convert("RGBA")
            del logo
            for width in missing:
                mark = full.resize((width, _height_at(width, full.size)), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                mark.save(buffer, "PNG")
                write_atomically(marks[width], buffer.getvalue())
            del full
    return {width: str(path) for width, path in marks.items()}


class LogoMarks:
    """A render's view of the prepared marks: the mark for an image width, each read once."""

    def __init__(self, marks: dict[int, str], scale: float):
        if not marks:
            raise ValueError("no prepared logo marks")
        self.paths = dict(marks)
        self.scale = scale
        self._loaded: dict[int, Image.Image] = {}

    def for_image(self, image_width: int) -> Image.Image:
        """The mark made for images `image_width` wide; for a width nobody prepared, the smallest
        larger mark (or the largest), which overlay_logo then resizes."""
        width = mark_width(image_width, self.scale)
        if width not in self.paths:
            width = min((w for w in self.paths if w > width), default=max(self.paths))
        if width not in self._loaded:
            from PIL import Image

            with Image.open(self.paths[width]) as mark:
                self._loaded[width] = mark.convert("RGBA")
        return self._loaded[width]
