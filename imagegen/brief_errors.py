"""How a brief's validation errors read to a person: (field path, reason) pairs such as
``brand.palette[2]: not a hex colour like #ff6b6b``.

The wording never echoes a whole value (it may be the personal data being rejected): a value is
named by its kind ("got text") or quoted cut short. Unknown keys get a close match ("did you mean
'palette'?") or the list of fields the mapping at that place allows.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from imagegen.brief import Brief, short_repr


def problems_from_validation_error(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, human reason) for each error, e.g. ('brand.palette[2]', 'not a hex colour ...')."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        problem = (format_loc(error["loc"]), _human_reason(error))
        if problem not in problems:
            problems.append(problem)
    return problems


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('subjects', 0, 'subject') -> 'subjects[0].subject'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "brief"


def describe_value(value: Any) -> str:
    """What kind of value the user wrote, without echoing it (it may be personal data)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def reason_for(kind: str, value: Any) -> str:
    """The reason worded for a pydantic error type, for a check made outside pydantic (imagegen.brief_checks)."""
    return _FIXED_REASONS[kind].format(got=describe_value(value))


def _human_reason(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return unknown_field_reason(_model_at(error["loc"][:-1]), str(error["loc"][-1]))
    fixed = _FIXED_REASONS.get(kind)
    if fixed:
        return fixed.format(got=describe_value(value), **ctx)
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"at least {ctx['min_length']} characters"
    if kind == "string_too_long":
        return f"at most {ctx['max_length']} characters (got {len(value)})"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}"
    if kind == "too_long":
        return f"at most {ctx['max_length']} items (got {ctx.get('actual_length', len(value))})"
    if kind == "literal_error":
        return f"must be {ctx['expected']}; got {short_repr(value)}"
    return error["msg"]


_FIXED_REASONS: dict[str, str] = {
    "int_parsing": "expected a whole number, got {got}",
    "int_type": "expected a whole number, got {got}",
    "int_from_float": "expected a whole number, got a fraction",
    "float_parsing": "expected a number, got {got}",
    "float_type": "expected a number, got {got}",
    "finite_number": "must be a finite number, not NaN or infinity",
    "bool_parsing": "expected true or false, got {got}",
    "bool_type": "expected true or false, got {got}",
    "string_type": "expected text, got {got}",
    "list_type": "expected a list, got {got}",
    "model_type": "expected a mapping, got {got}",
    "model_attributes_type": "expected a mapping, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}",
    "less_than": "must be less than {lt}",
}


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` inside a Brief (None when unknown)."""
    model: type[BaseModel] | None = Brief
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation such as `list[Subject]` or `LogoSpec | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def unknown_field_reason(model: type[BaseModel] | None, key: str) -> str:
    if model is None:
        return "unknown field"
    allowed = [name for name in model.model_fields if name != "base_dir"]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    return f"unknown field; allowed: {', '.join(allowed)}"
