"""Checks on parsed brief data that pydantic's validation cannot make, run before it sees the data.

Nesting: lists and mappings nested deeper than `MAX_NESTING` (a real brief is about 5 deep) are
refused without recursion. The parsers refuse deep text already (imagegen.brief_text); this pass
covers what they cannot see: YAML aliases that nest a deep anchor inside another, loops through an
alias, and mappings handed over from code or an event payload.

Booleans for numbers: pydantic's lax mode takes `variations: true` as 1. Every number field of the
brief (whole numbers and fractions, in any model, list or optional) refuses true/false instead.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Union

from pydantic import BaseModel

from imagegen.brief import Brief
from imagegen.brief_errors import format_loc, reason_for

MAX_NESTING = 32
NESTING_REASON = f"lists and mappings nested more than {MAX_NESTING} levels deep"
LOOP_REASON = "refers to a list or mapping it is inside (a YAML alias loop)"

_Loc = tuple[int | str, ...]


def nesting_problem(data: Any) -> tuple[str, str] | None:
    """(field path, reason) where `data` nests deeper than MAX_NESTING or into itself; None if it does not.

    Walks with an explicit stack and remembers the height of every list or mapping it has finished,
    so a brief that repeats one alias a million times costs one visit per distinct object.
    """
    if not _is_collection(data):
        return None
    heights: dict[int, int] = {}  # id -> levels from it down to its deepest list or mapping
    stack: list[tuple[Any, Iterator[tuple[int | str, Any]], list[int]]] = [(data, _children(data), [0])]
    path: list[int | str] = []
    while stack:
        value, children, tallest_child = stack[-1]
        key, child = next(children, (None, None))
        if key is None:
            stack.pop()
            heights[id(value)] = tallest_child[0] + 1
            if stack:
                stack[-1][2][0] = max(stack[-1][2][0], heights[id(value)])
                path.pop()
            continue
        if any(child is frame[0] for frame in stack):
            return format_loc((*path, key)), LOOP_REASON
        height = heights.get(id(child))
        if len(stack) + (height or 1) > MAX_NESTING:
            return format_loc((*path, key)), NESTING_REASON
        if height is not None:
            tallest_child[0] = max(tallest_child[0], height)
            continue
        stack.append((child, _children(child), [0]))
        path.append(key)
    return None


def _is_collection(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple))


def _children(value: Any) -> Iterator[tuple[int | str, Any]]:
    """(key or index, child) for the lists and mappings directly inside `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return ((key if isinstance(key, (int, str)) else str(key), child) for key, child in items
            if _is_collection(child))


def boolean_number_problems(data: dict) -> list[tuple[str, str]]:
    """(field path, reason) for each true/false written where the brief takes a number."""
    return [(format_loc(loc), reason) for loc, reason in _booleans_for_numbers(Brief, data, ())]


def _booleans_for_numbers(annotation: Any, value: Any, loc: _Loc) -> Iterator[tuple[_Loc, str]]:
    """Walk `value` along the fields `annotation` declares; only what a model would validate is visited
    (the data is at most MAX_NESTING deep, checked before)."""
    options = _options(annotation)
    if isinstance(value, bool):
        if bool in options:
            return
        if int in options:
            yield loc, reason_for("int_type", value)
        elif float in options:
            yield loc, reason_for("float_type", value)
    elif isinstance(value, dict):
        model = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
        for key, child in value.items() if model else ():
            field = model.model_fields.get(key) if model and isinstance(key, str) else None
            if field is not None:
                yield from _booleans_for_numbers(field.annotation, child, (*loc, key))
    elif isinstance(value, list):
        item = next((typing.get_args(o)[0] for o in options if typing.get_origin(o) is list), None)
        for index, child in enumerate(value) if item is not None else ():
            yield from _booleans_for_numbers(item, child, (*loc, index))


def _options(annotation: Any) -> list[Any]:
    """The types an annotation allows: `Annotated[int, ...] | None` -> [int, NoneType]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _options(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [option for arg in typing.get_args(annotation) for option in _options(arg)]
    return [annotation]
