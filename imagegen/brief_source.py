"""Reading a brief from where it comes from: a .yaml/.yml/.json file, YAML or JSON text, a mapping,
or an http(s) URL, into a validated `Brief`.

YAML is parsed with a loader that refuses duplicate keys; syntax errors, unreadable files and fetch
failures are reported as a `BriefError` like any validation problem, never as a traceback.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imagegen.brief import Brief, short_repr
from imagegen.brief_errors import describe_value, problems_from_validation_error, unknown_field_reason
from imagegen.errors import BriefError


def load_brief(path: str | Path) -> Brief:
    """Read a brief from a .yaml, .yml or .json file; relative paths in it start from its folder."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in {".yaml", ".yml", ".json"}:
        raise BriefError([("file", f"unsupported extension {suffix or '(none)'!r}; use .yaml, .yml or .json")],
                         source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BriefError([("file", "file not found")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BriefError([("file", f"cannot read the file ({type(exc).__name__})")], source) from None
    data = _parse_json(text, source) if suffix == ".json" else _parse_yaml(text, source)
    return parse_brief(data, path.parent, source)


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
    base = Path(base_dir).resolve()
    try:
        return Brief.model_validate({**data, "base_dir": str(base)}, context={"base_dir": base})
    except ValidationError as exc:
        raise BriefError(problems_from_validation_error(exc), source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would otherwise keep the last one silently."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, typing.Hashable):
            continue  # construct_mapping below reports unhashable keys
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {short_repr(key)}",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "file"
        column = f" (column {mark.column + 1})" if mark else ""
        raise BriefError([(where, f"YAML syntax error: {exc.problem or exc.context}{column}")], source) from None
    except yaml.YAMLError as exc:
        raise BriefError([("file", f"YAML syntax error: {type(exc).__name__}")], source) from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BriefError([(f"line {exc.lineno}", f"JSON syntax error: {exc.msg} (column {exc.colno})")],
                         source) from None


MAX_BRIEF_BYTES = 1_000_000


def brief_from_source(source: str | dict | Brief, base_dir: Path | None = None) -> Brief:
    """A brief from whatever a deployment parameter or an event payload carries: a Brief, a mapping,
    YAML/JSON text, an http(s) URL (fetched with a timeout and a size cap), or a file path."""
    if isinstance(source, Brief):
        return source
    base = Path(base_dir or ".").resolve()
    if isinstance(source, dict):
        return parse_brief(source, base, "brief parameter")
    text = str(source).strip()
    if not text:
        raise BriefError([("brief", "empty: give a path, a URL, or the brief itself")])
    if text.startswith(("{", "campaign:")) or "\n" in text:
        return parse_brief(_parse_yaml(text, "brief parameter"), base, "brief parameter")
    if text.startswith(("http://", "https://")):
        return parse_brief(_parse_yaml(_fetch_brief(text), text), base, text)
    return load_brief(text if Path(text).is_absolute() else base / text)


def _fetch_brief(url: str) -> str:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=30, follow_redirects=True) as response:
            if response.status_code != 200:
                raise BriefError([("brief", f"fetching the brief answered HTTP {response.status_code}")], url)
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BRIEF_BYTES:
                    raise BriefError([("brief", f"the brief is over {MAX_BRIEF_BYTES} bytes")], url)
    except httpx.HTTPError as exc:
        raise BriefError([("brief", f"cannot fetch the brief ({type(exc).__name__})")], url) from None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BriefError([("brief", "the brief is not UTF-8 text")], url) from None
