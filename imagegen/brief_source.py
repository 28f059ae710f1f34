"""Reading a brief from where it comes from: a .yaml/.yml/.json file, YAML or JSON text, a mapping,
or an http(s) URL, into a validated `Brief`.

Whatever the source, a brief is at most `MAX_BRIEF_BYTES`, checked before it is read or parsed whole;
the text is parsed by imagegen.brief_text (duplicate keys and deep nesting refused) and the data
checked by imagegen.brief_checks before pydantic validates it. Syntax errors, unreadable files, fetch
failures and oversized briefs are reported as a `BriefError` like any validation problem, never as a
traceback.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from imagegen.brief import Brief
from imagegen.brief_checks import boolean_number_problems, nesting_problem
from imagegen.brief_errors import describe_value, problems_from_validation_error, unknown_field_reason
from imagegen.brief_text import parse_json, parse_yaml
from imagegen.errors import BriefError
from imagegen.redaction import mask_url

# The largest brief read from a file, text or URL: a real one is a few KB.
MAX_BRIEF_BYTES = 1_000_000
OVERSIZED_REASON = f"the brief is over {MAX_BRIEF_BYTES} bytes"
MAX_REDIRECTS = 5


def load_brief(path: str | Path) -> Brief:
    """Read a brief from a .yaml, .yml or .json file; relative paths in it start from its folder."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in {".yaml", ".yml", ".json"}:
        raise BriefError([("file", f"unsupported extension {suffix or '(none)'!r}; use .yaml, .yml or .json")],
                         source)
    text = _read_brief_file(path, source)
    data = parse_json(text, source) if suffix == ".json" else parse_yaml(text, source)
    return parse_brief(data, path.parent, source)


def _read_brief_file(path: Path, source: str) -> str:
    """The file's text, as `Path.read_text` gives it, refused unread when its size is over the cap and
    read no further than the cap (a file that grows, or a device, is cut off there)."""
    try:
        if path.stat().st_size > MAX_BRIEF_BYTES:
            raise BriefError([("file", OVERSIZED_REASON)], source)
        with path.open("rb") as file:
            raw = file.read(MAX_BRIEF_BYTES + 1)
        if len(raw) > MAX_BRIEF_BYTES:
            raise BriefError([("file", OVERSIZED_REASON)], source)
        # decoded as read_text does, universal newlines included
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read()
    except FileNotFoundError:
        raise BriefError([("file", "file not found")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BriefError([("file", f"cannot read the file ({type(exc).__name__})")], source) from None


def parse_brief(data: dict, base_dir: Path, source: str | None = None) -> Brief:
    """Validate brief data; relative paths in it (the logo) start from `base_dir`.

    Raises BriefError with every problem found, never a pydantic ValidationError: its text would
    echo the input, which may hold the very personal data being rejected.
    """
    if data is None:
        raise BriefError([("brief", "the brief is empty")], source)
    if not isinstance(data, dict):
        raise BriefError([("brief", "expected a mapping of fields at the top level, "
                                    f"got {describe_value(data)}")], source)
    if "base_dir" in data:
        raise BriefError([("base_dir", unknown_field_reason(Brief, "base_dir"))], source)
    too_deep = nesting_problem(data)
    if too_deep:
        raise BriefError([too_deep], source)
    booleans = boolean_number_problems(data)
    base = Path(base_dir).resolve()
    try:
        brief = Brief.model_validate({**data, "base_dir": str(base)}, context={"base_dir": base})
    except ValidationError as exc:
        # pydantic took each boolean as 0 or 1: what it says about those fields is beside the point
        refused = {loc for loc, _ in booleans}
        problems = [problem for problem in problems_from_validation_error(exc) if problem[0] not in refused]
        raise BriefError(booleans + problems, source) from None
    if booleans:
        raise BriefError(booleans, source)
    return brief


def brief_from_source(source: str | dict | Brief, base_dir: Path | None = None,
                      check_url: Callable[[str], None] | None = None) -> Brief:
    """A brief from whatever a deployment parameter or an event payload carries: a Brief, a mapping,
    YAML/JSON text, an http(s) URL (fetched with a timeout and a size cap), or a file path.

    `check_url` (event-triggered runs, see imagegen.event_inputs) vets the URL and every redirect hop
    before it is requested; it raises to refuse one."""
    if isinstance(source, Brief):
        return source
    base = Path(base_dir or ".").resolve()
    if isinstance(source, dict):
        return parse_brief(source, base, "brief parameter")
    text = str(source).strip()
    if not text:
        raise BriefError([("brief", "empty: give a path, a URL, or the brief itself")])
    if text.startswith(("{", "campaign:")) or "\n" in text:
        if len(text) > MAX_BRIEF_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BRIEF_BYTES:
            raise BriefError([("brief", OVERSIZED_REASON)], "brief parameter")
        return parse_brief(parse_yaml(text, "brief parameter"), base, "brief parameter")
    if text.startswith(("http://", "https://")):
        shown = mask_url(text)  # a signed brief URL carries its token: messages name it masked
        return parse_brief(parse_yaml(_fetch_brief(text, check_url), shown), base, shown)
    return load_brief(text if Path(text).is_absolute() else base / text)


def _fetch_brief(url: str, check_url: Callable[[str], None] | None = None) -> str:
    import httpx

    shown = mask_url(url)
    body = b""
    try:
        # redirects are followed here, not by httpx, so that each hop is vetted before it is requested
        with httpx.Client(timeout=30, follow_redirects=False) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                if check_url is not None:
                    check_url(url)
                with client.stream("GET", url) as response:
                    if response.is_redirect and response.next_request is not None:
                        url = str(response.next_request.url)
                        continue
                    if response.status_code != 200:
                        raise BriefError([("brief", f"fetching the brief answered HTTP {response.status_code}")],
                                         shown)
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_BRIEF_BYTES:
                            raise BriefError([("brief", OVERSIZED_REASON)], shown)
                    break
            else:
                raise BriefError([("brief", f"more than {MAX_REDIRECTS} redirects")], shown)
    except httpx.HTTPError as exc:
        raise BriefError([("brief", f"cannot fetch the brief ({type(exc).__name__})")], shown) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BriefError([("brief", "the brief is not UTF-8 text")], shown) from None
