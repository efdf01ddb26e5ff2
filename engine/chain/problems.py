"""Where a problem in a configuration file is, and how it is said: locations as people write
them (``steps[1].goto``), line and column of a location, and pydantic's errors as located
problems with "did you mean" for unknown keys and values."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.chain.filelimits import snippet
from engine.chain.spec import UNION_TAGS, Loc
from engine.errors import Problem

__all__ = ["Pos", "field_name", "locate", "validation_problems"]

#: (line, column), 1-based.
Pos = tuple[int, int]
_Pos = Pos


def field_name(loc: Loc) -> str:
    """A location as people write it: ``("steps", 1, "goto")`` -> ``steps[1].goto``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _keys(model: type[BaseModel]) -> list[str]:
    """A model's keys as written in files (a field's alias when it has one)."""
    return sorted(info.alias or name for name, info in model.model_fields.items())


def _message(
    error: Mapping[str, Any], loc: Loc, model_at: Callable[[Loc], type[BaseModel] | None]
) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = model_at(loc[:-1])
        allowed = _keys(model) if model else []
        close = difflib.get_close_matches(key[:100], allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{snippet(key)}'{hint}; allowed keys: {', '.join(allowed)}"
    if kind == "missing":
        return f"required key '{loc[-1]}' is missing"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        close = difflib.get_close_matches(str(value)[:100], choices, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        what = "category" if set(choices) <= {"retryable", "timeout", "non_retryable"} else "value"
        return f"unknown {what} {snippet(repr(value))}{hint}; expected {expected}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt'):g} (got {snippet(repr(value))})"
    if kind == "greater_than_equal":
        return f"must be {ctx.get('ge'):g} or more (got {snippet(repr(value))})"
    if kind == "less_than_equal":
        return f"must be {ctx.get('le'):g} or less (got {snippet(repr(value))})"
    if kind == "too_short" and loc == ("steps",):
        return "a chain needs at least one step"
    if kind == "too_long" and loc == ("steps",):
        return f"a chain has at most {ctx.get('max_length')} steps (got {ctx.get('actual_length')})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":  # our own validators' messages name the value already
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{error['msg']} (got {snippet(repr(value))})"


def _clean_loc(loc: Iterable[str | int]) -> Loc:
    parts = list(loc)
    # Union tags follow a list index under "steps"; drop them so paths match the file.
    return tuple(
        p
        for i, p in enumerate(parts)
        if not (isinstance(p, str) and p in UNION_TAGS and i > 0 and isinstance(parts[i - 1], int))
    )


def locate(loc: Loc, values: Mapping[Loc, _Pos], keys: Mapping[Loc, _Pos], *, key: bool) -> _Pos:
    """Line and column of ``loc`` (of its key when ``key``), else of its nearest parent."""
    if key and loc in keys:
        return keys[loc]
    probe = loc
    while probe:
        if probe in values:
            return values[probe]
        probe = probe[:-1]
    return values.get((), (0, 0))


def validation_problems(
    exc: ValidationError,
    source: str,
    values: Mapping[Loc, _Pos],
    keys: Mapping[Loc, _Pos],
    model_at: Callable[[Loc], type[BaseModel] | None],
) -> list[Problem]:
    """pydantic's errors as located problems, with "did you mean" for unknown keys."""
    problems = []
    for error in exc.errors():
        loc = _clean_loc(error["loc"])
        line, column = locate(loc, values, keys, key=error["type"] == "extra_forbidden")
        message = _message(error, loc, model_at)
        problems.append(Problem(source, line, column, field_name(loc), message))
    return problems
