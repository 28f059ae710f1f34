"""Parsing brief text, YAML or JSON, into plain data, refusing what the plain parsers would accept
silently or crash on.

Duplicate keys are refused (both parsers would keep the last value). Lists and mappings nested deeper
than `MAX_NESTING` are refused before a parser recurses into them: PyYAML's composer and the json
module recurse once per level, so a 1 KB brief of 500 nested lists would end in a RecursionError.
So is a value Python cannot hold (a date like 2024-13-01, a number over 4300 digits). Every problem is
a `BriefError` naming the line where the parser can tell, never a traceback.
"""

from __future__ import annotations

import json
import re
import sys
import typing
from typing import Any

import yaml

from imagegen.brief import short_repr
from imagegen.brief_checks import MAX_NESTING, NESTING_REASON
from imagegen.errors import BriefError


class _Refused(yaml.MarkedYAMLError):
    """Text YAML can parse but a brief may not hold (too deep, a value Python cannot hold), with its mark."""


def _value_reason(exc: ValueError) -> str:
    """Why a scalar cannot be read, e.g. a date like 2024-13-01 or a number over Python's digit limit."""
    if "integer string conversion" in str(exc):
        return f"cannot read a number with more than {sys.get_int_max_str_digits()} digits"
    return f"cannot read the value: {exc}"


class _BriefYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_NESTING.

    The depth is counted as nodes are composed, so the composer's recursion never goes deeper than
    MAX_NESTING + 1 levels whatever the text holds.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                raise _Refused(problem=NESTING_REASON, problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except ValueError as exc:  # a scalar Python cannot hold; PyYAML lets it out with no line, as a traceback
            raise _Refused(problem=_value_reason(exc), problem_mark=node.start_mark) from None


def _construct_unique_mapping(loader: _BriefYamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
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


_BriefYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """The data in YAML `text`; BriefError (naming the line) for syntax errors, duplicate keys and
    nesting deeper than MAX_NESTING. `source` names the brief in the error."""
    try:
        return yaml.load(text, Loader=_BriefYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        mark = exc.problem_mark
        raise BriefError([(f"line {mark.line + 1}", f"{exc.problem} (column {mark.column + 1})")], source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "file"
        column = f" (column {mark.column + 1})" if mark else ""
        raise BriefError([(where, f"YAML syntax error: {exc.problem or exc.context}{column}")], source) from None
    except yaml.YAMLError as exc:
        raise BriefError([("file", f"YAML syntax error: {type(exc).__name__}")], source) from None


# A JSON string (escapes included) with the ':' that makes it a key, or a bracket. Outside strings,
# valid JSON holds no '"', so scanning for these alone follows the document's structure exactly.
_JSON_TOKEN = re.compile(r'(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")(?P<colon>\s*:)?|(?P<open>[\[{])|(?P<close>[\]}])')


def parse_json(text: str, source: str) -> Any:
    """The data in JSON `text`; BriefError (naming the line) for syntax errors, duplicate keys and
    nesting deeper than MAX_NESTING (checked on the text first: the json module recurses per level)."""
    duplicate = _scan_json(text, source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BriefError([(f"line {exc.lineno}", f"JSON syntax error: {exc.msg} (column {exc.colno})")],
                         source) from None
    except ValueError as exc:  # a number over Python's digit limit; the json module does not say where
        raise BriefError([("file", _value_reason(exc))], source) from None
    if duplicate:
        raise BriefError([duplicate], source)
    return data


def _scan_json(text: str, source: str) -> tuple[str, str] | None:
    """Refuse nesting deeper than MAX_NESTING; the first duplicate key as a problem, reported only once
    the text has parsed (a syntax error is the more useful message)."""
    keys: list[set[str] | None] = []  # per open bracket: the keys seen in that object, None for a list
    duplicate: tuple[str, str] | None = None
    for token in _JSON_TOKEN.finditer(text):
        if token["open"]:
            keys.append(set() if token["open"] == "{" else None)
            if len(keys) > MAX_NESTING:
                line, column = _line_and_column(text, token.start())
                raise BriefError([(f"line {line}", f"{NESTING_REASON} (column {column})")], source)
        elif token["close"]:
            if keys:
                keys.pop()
        elif token["colon"] and keys and duplicate is None:
            seen = keys[-1]
            if seen is None:
                continue  # a key inside a list: json.loads reports it
            try:
                key = json.loads(token["string"])
            except ValueError:
                continue  # a broken escape: json.loads reports it
            if key in seen:
                line, column = _line_and_column(text, token.start())
                duplicate = (f"line {line}", f"JSON syntax error: duplicate key {short_repr(key)} (column {column})")
            seen.add(key)
    return duplicate


def _line_and_column(text: str, position: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1
