"""Text and URLs made safe to print: credentials in URLs masked, and the secrets a URL carries named.

Every URL setting (IMAGEGEN_NVIDIA_BASE_URL, SUPABASE_URL, IMAGEGEN_CATALOG_URL, ...) may carry
credentials: user info (`user:password@`, or a lone `token@`) and secret-looking query or fragment
parameters (`?token=`, `&X-Amz-Signature=`, `#access_token=`). Whatever prints or stores a URL
(exception texts, log lines, reprs, the run summary, catalog rows, artifacts) passes it through
`mask_url`, or a whole text through `mask_urls_in`; `url_secrets` lists the values to scrub from
text a server or driver wrote (they may echo the URL, or the Basic auth header made of its user info).

Parsing is by hand, not urllib: a URL bad enough to make `urlsplit` raise (an unclosed IPv6 bracket, a
port that is not a number) must still be masked, and masking never raises.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

REDACTED = "***"

# `user:password@` in a path segment: user info after a stray slash (`http:///user:pw@host`).
_PATH_USERINFO = re.compile(r"(?<=/)(?P<user>[^/:@?#]*):(?P<password>[^/?#]*)@")
# A name=value pair: at the start, or after a query/fragment/parameter separator or a space (DSNs).
_PARAM = re.compile(r"(?<![^\s?&;#,])(?P<name>[^\s=?&;#,'\"]+)(?P<eq>\s*=\s*)")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
# Where a parameter's value ends: in a DSN, at white space; in a URL's query or fragment, at the next
# parameter or the fragment; in a path (`;sig=...`), also at the query.
_DSN_VALUE_END, _QUERY_VALUE_END, _PATH_VALUE_END = re.compile(r"\s"), re.compile(r"[&#]"), re.compile(r"[&#?]")
# A URL inside free text: a scheme and everything up to white space or a quote...
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*[^\s'\"<>`.,;:!?)\]}]")
# ... and a query parameter without its URL (an HTTP request line: "GET /path?token=... HTTP/1.1").
_QUERY_PARAM_IN_TEXT = re.compile(r"(?<=[?&])(?P<name>[^\s=?&#'\"]+)=(?P<value>(?:[^\s&#'\"]*[^\s&#'\".,;:!?)\]}])?)")
# What HTTP libraries log each request's URL on: httpx at INFO ("HTTP Request: GET http://..."),
# urllib3 (under requests, python-gitlab) its request line at DEBUG.
HTTP_LIBRARY_LOGGERS = ("httpx", "urllib3.connectionpool")

# Parameter names (lower case, letters and digits only) whose values are secrets...
_SECRET_NAMES = frozenset({"key", "sig", "pass", "auth", "authorization", "jwt", "code"})
# ... and the words that make any name secret (x-amz-signature, access_token, client_secret, sslpassword).
_SECRET_WORDS = ("token", "secret", "passw", "pwd", "signature", "credential", "apikey", "accesskey", "privatekey",
                 "subscriptionkey", "session")


def is_secret_name(name: str) -> bool:
    """True for a parameter name whose value must not be shown (`token`, `api_key`, `X-Amz-Signature`...)."""
    plain = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return plain in _SECRET_NAMES or any(word in plain for word in _SECRET_WORDS)


def mask_url(url: str, *, query: bool = True) -> str:
    """`url` with its credentials replaced by '***': `user:password@` -> `user:***@`, a lone `token@` ->
    `***@`, and the value of every secret-looking query or fragment parameter (`?token=***`). Also masks
    a key=value DSN (`host=db password=***`). Anything else is kept as written; never raises.

    `query=False` keeps the parameters: for a published URL whose signature is what makes it work (a
    signed Storage URL), masked only of the user info our own settings put in it."""
    url = url if isinstance(url, str) else str(url)
    if _is_dsn(url):  # a connection string is never a published URL: its password goes whatever `query` says
        return _mask_params(url, dsn=True)
    prefix, userinfo, rest = _split(url)
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        prefix += f"{user}:{REDACTED}@" if colon else f"{REDACTED}@" if userinfo else "@"
    path_end = len(re.split(r"[?#]", rest, maxsplit=1)[0])
    rest = _PATH_USERINFO.sub(lambda m: f"{m['user']}:{REDACTED}@", rest[:path_end]) + rest[path_end:]
    return prefix + (_mask_params(rest, dsn=False) if query else rest)


def url_location(url: str) -> str:
    """`mask_url(url)` without its query string and fragment: where a request went, for messages
    (presigned URLs carry signatures in their query)."""
    masked = mask_url(url)
    prefix, userinfo, rest = _split(masked)
    if userinfo is not None:
        prefix += userinfo + "@"
    return prefix + re.split(r"[?#]", rest, maxsplit=1)[0]


def mask_urls_in(text: str) -> str:
    """`text` with every `scheme://...` URL in it masked by `mask_url`, and every secret-looking query
    parameter outside one too (server and driver messages, exception texts, HTTP libraries' logs)."""
    text = text if isinstance(text, str) else str(text)
    text = _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
    return _QUERY_PARAM_IN_TEXT.sub(
        lambda match: f"{match['name']}={REDACTED}" if is_secret_name(match["name"]) else match.group(0), text)


def url_secrets(url: str | None) -> list[str]:
    """The secrets `url` carries, as written and percent-decoded: its password (or lone token), the
    values of its secret-looking parameters, and the Basic auth credentials an HTTP client makes of its
    user info. For scrubbing text that a server or driver wrote (it may echo any of them)."""
    if not url:
        return []
    url = url if isinstance(url, str) else str(url)
    dsn = _is_dsn(url)
    _prefix, userinfo, rest = (url, None, url) if dsn else _split(url)
    found: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
        try:
            basic = f"{unquote(user)}:{unquote(password)}".encode("utf-8", "surrogatepass")
            found.append(base64.b64encode(basic).decode("ascii"))
        except UnicodeError:  # not encodable, so no client could have sent it either
            pass
    for match in _PARAM.finditer(rest):
        if is_secret_name(match["name"]):
            value = _param_value(rest, match.end(), dsn)
            found.append(value.strip("'\"") if dsn and _QUOTED.fullmatch(value) else value)
    decoded = [unquote(value) for value in found]
    return list(dict.fromkeys(value for value in found + decoded if value))


def mask_url_fields(fields: Iterable[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    """A pydantic model's `__repr_args__` with the value of every URL field (`url`, `*_url`) masked:
    what a block's repr and str show."""
    return [(name, mask_url(value) if isinstance(value, str) and name and name.lower().endswith("url") else value)
            for name, value in fields]


class MaskUrlsFilter(logging.Filter):
    """Masks the URLs in every record of the logger it is added to (`mask_urls_in`): HTTP libraries log
    each request's full URL, user info and query included."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted fails in its handler, not here
            return True
        masked = mask_urls_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_urls_in_logs(names: Iterable[str] = HTTP_LIBRARY_LOGGERS) -> None:
    """Add a MaskUrlsFilter to each named logger, once (a filter sees only records made on its own
    logger, not those of its children, hence the exact names)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskUrlsFilter) for f in logger.filters):
            logger.addFilter(MaskUrlsFilter())


# --------------------------------------------------------------------------- parsing

def _split(url: str) -> tuple[str, str | None, str]:
    """(text before the user info, the user info or None, the rest from the host on).

    The authority starts after the first `//` (`scheme://`; at the start when a '/' comes first) and
    ends at the next '/': a password may hold an unencoded '?', '#' or '@', so its user info ends at the
    last '@' in the authority. A query holding '@' without a path before it is masked too much, never
    too little. A password holding an unencoded '/' (which no client parses either) is told from a path
    by what follows the ':': not a port number.
    """
    start = 0
    slashes = url.find("//")
    if slashes >= 0 and "/" not in url[:slashes]:  # the first slashes: `scheme://`, `//` or junk + `scheme://`
        start = slashes + 2
    end = url.find("/", start)
    end = len(url) if end < 0 else end
    at = url.rfind("@", start, end)
    authority = url[start:end]
    if at < 0 and ":" in authority and not authority.startswith("[") and not authority.partition(":")[2].isdigit():
        # `user:pa/ss@host`: not a port after the ':', so a password holding a '/', up to the last '@'
        at = url.rfind("@", end, len(re.split(r"[?#]", url[end:], maxsplit=1)[0]) + end)
    if at < 0:
        return url[:start], None, url[start:]
    return url[:start], url[start:at], url[at + 1:]


def _is_dsn(text: str) -> bool:
    """A key=value connection string (`host=db user=me password=...`): values end at white space, not '&'."""
    return "://" not in text and bool(re.search(r"\S\s+\S", text.strip())) and "=" in text


def _param_value(text: str, start: int, dsn: bool) -> str:
    """The value that starts at `text[start]`: in a DSN, quoted or up to white space; in a URL, up to
    the next '&' or '#' (and '?' for a `;name=value` in the path). A ';' is not an end: `sig=a;b` is
    masked whole rather than in part."""
    if dsn:
        quoted = _QUOTED.match(text, start)
        if quoted:
            return quoted.group(0)
        end = _DSN_VALUE_END.search(text, start)
    else:
        query = text.find("?")
        end = (_PATH_VALUE_END if 0 <= start <= query else _QUERY_VALUE_END).search(text, start)
    return text[start:end.start() if end else len(text)]


def _mask_params(text: str, *, dsn: bool) -> str:
    out: list[str] = []
    position = 0
    for match in _PARAM.finditer(text):
        if match.start() < position or not is_secret_name(match["name"]):
            continue
        value = _param_value(text, match.end(), dsn)
        out.append(text[position:match.end()] + REDACTED)
        position = match.end() + len(value)
    return "".join(out) + text[position:]
