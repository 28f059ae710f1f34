"""What an event may ask of a worker: briefs and output folders inside the roots the operator set.

An event comes from another system (a webhook, n8n, a CMS), so its payload is untrusted input. Without
these checks it could make the worker write anywhere it can write (`out_dir: /etc/cron.d`) or fetch
any URL it can reach (`brief: http://169.254.169.254/...`, the cloud metadata service). Runs started by
hand (the CLI, a "Custom run") are not confined: their user already has the worker's rights.

- `out_dir` must lie under IMAGEGEN_OUTPUT_ROOT (symlinks and `..` resolved first);
- a brief path must lie under IMAGEGEN_BRIEFS_ROOT, and so must the logo it names;
- a brief URL must be https (http only for hosts in IMAGEGEN_BRIEF_TRUSTED_HOSTS) and resolve to public
  addresses only (no loopback, link-local, private, reserved or multicast address unless the host is
  trusted); every redirect hop is checked the same way (see `brief_source`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from imagegen.errors import BriefError
from imagegen.redaction import mask_url

BRIEF_FIELD, OUT_DIR_FIELD = "event.payload.brief", "event.payload.out_dir"

Resolver = Callable[[str], Iterable[str]]


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (what a connection could end up at)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def _inside(path: Path, root: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root)))


def confined_out_dir(out_dir: str, output_root: Path) -> Path:
    """`out_dir` resolved (relative to the worker's working directory); refused outside `output_root`."""
    if not str(out_dir).strip():
        raise BriefError([(OUT_DIR_FIELD, "empty: name a folder under IMAGEGEN_OUTPUT_ROOT")])
    path = Path(out_dir).expanduser()
    if not _inside(path, output_root):
        raise BriefError([(OUT_DIR_FIELD, f"{str(out_dir)!r} is outside IMAGEGEN_OUTPUT_ROOT "
                                          f"({os.path.realpath(output_root)}); events may only write under it")])
    return Path(os.path.realpath(path))


def check_brief_path(path: Path, briefs_root: Path, field: str = BRIEF_FIELD) -> None:
    if not _inside(path, briefs_root):
        raise BriefError([(field, f"{str(path)!r} is outside IMAGEGEN_BRIEFS_ROOT ({os.path.realpath(briefs_root)}); "
                                  "events may only read briefs under it")])


def check_brief_url(url: str, trusted_hosts: Iterable[str], resolve: Resolver = resolve_host) -> None:
    """Refuse a URL an event must not make the worker fetch; `trusted_hosts` may use http and private addresses."""
    shown = mask_url(url)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    trusted = host in {h.strip().lower() for h in trusted_hosts if h.strip()}
    if parts.scheme not in ("https", "http") or not host:
        raise BriefError([(BRIEF_FIELD, f"{shown!r} is not an http(s) URL")])
    if parts.scheme == "http" and not trusted:
        raise BriefError([(BRIEF_FIELD, f"{shown!r}: only https, or http to a host in IMAGEGEN_BRIEF_TRUSTED_HOSTS")])
    if trusted:
        return
    try:
        addresses = list(resolve(host))
    except OSError:
        raise BriefError([(BRIEF_FIELD, f"{shown!r}: the host {host!r} does not resolve")]) from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise BriefError([(BRIEF_FIELD, f"{shown!r}: {host!r} resolves to {address}, a loopback, link-local, "
                                            "private or reserved address; list the host in "
                                            "IMAGEGEN_BRIEF_TRUSTED_HOSTS to allow it")])


def looks_like_url(text: str) -> bool:
    return "://" in text.split("\n", 1)[0][:16]


def check_event_brief(brief: object, briefs_root: Path, trusted_hosts: Iterable[str],
                      resolve: Resolver = resolve_host) -> None:
    """The brief an event names: a mapping or inline YAML/JSON passes (its logo is checked once parsed),
    a URL must pass `check_brief_url`, and a path must lie under `briefs_root`."""
    if brief is None or (isinstance(brief, str) and not brief.strip()):
        raise BriefError([(BRIEF_FIELD, "missing: the event's payload must carry `brief` (a path under "
                                        "IMAGEGEN_BRIEFS_ROOT, an https URL, or the brief itself)")])
    if isinstance(brief, dict):
        return
    if not isinstance(brief, str):
        raise BriefError([(BRIEF_FIELD, f"must be a path, a URL or the brief itself, not a {type(brief).__name__}")])
    text = brief.strip()
    if text.startswith(("{", "campaign:")) or "\n" in text:
        return
    if looks_like_url(text):
        check_brief_url(text, trusted_hosts, resolve)
        return
    path = Path(text).expanduser()
    check_brief_path(path if path.is_absolute() else Path.cwd() / path, briefs_root)
