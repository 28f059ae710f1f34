"""Files a brief names (the logo, a mask, a style reference): relative to the brief's folder, never outside it."""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from imagegen.imaging.logo import SYMLINK_LOOP_REASON, logo_file_stat


def escape_reason(relative: str) -> str | None:
    """Why a path written in a brief may leave the brief's folder, judged from its text alone."""
    if PurePosixPath(relative).is_absolute() or PureWindowsPath(relative).is_absolute() \
            or PureWindowsPath(relative).drive:
        return "escapes the brief's folder: give a path relative to the brief, not an absolute one"
    if ".." in PurePosixPath(relative.replace("\\", "/")).parts:
        return "escapes the brief's folder: '..' is not allowed"
    return None


def resolve_inside(base_dir: Path, relative: str) -> Path:
    """The absolute, symlink-free path of an existing regular file `relative` to `base_dir`.

    Raises ValueError (the reason) when the path escapes `base_dir` (absolute, '..', or a symlink
    pointing out), goes round a symlink loop, or names no file (missing, a folder, a FIFO...).
    """
    reason = escape_reason(relative)
    if reason:
        raise ValueError(reason)
    base = base_dir.resolve()
    try:
        resolved = (base / relative).resolve()
    except RuntimeError:  # Python 3.11 reports a symlink loop so; later versions raise OSError(ELOOP)
        raise ValueError(SYMLINK_LOOP_REASON) from None
    except OSError as exc:
        raise ValueError(SYMLINK_LOOP_REASON if exc.errno == errno.ELOOP
                         else f"cannot resolve the path ({exc.strerror or type(exc).__name__})") from None
    if not resolved.is_relative_to(base):
        raise ValueError("escapes the brief's folder: it resolves (through a symlink) outside it")
    logo_file_stat(resolved)
    return resolved


def checked_brief_file(value: str, context: Mapping[str, Any] | None, load: Callable[[Path], Any]) -> str:
    """A brief field naming a file: with the brief's folder known (`context["base_dir"]`, as parse_brief
    passes it) the file is resolved inside it and checked by `load` before anything is spent; without it,
    the path's text is still refused when it would leave the folder."""
    base_dir = (context or {}).get("base_dir")
    if base_dir is not None:
        load(resolve_inside(Path(base_dir), value))
    elif reason := escape_reason(value):
        raise ValueError(reason)
    return value
