"""JSON Schemas compiled once and checked fast (jsonschema-rs), with no network.

A schema is compiled the first time it is seen and kept (by its canonical JSON text) in a
bounded cache, so a chain's schemas are compiled at load time and a request's schemas
(tool parameters, a ``response_format``) once per distinct schema, not per answer. The
schema objects themselves are remembered too (the same dict given again skips even the
canonical text), so a schema must not be changed in place once a request has used it:
give a new dict instead.
References must stay inside the schema (``$defs``): a ``$ref`` to a URL or a file is refused,
never fetched, since a schema may come from a request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Final, Protocol

__all__ = ["CompiledSchema", "SchemaError", "compile_schema", "schema_error"]

#: Distinct schemas kept compiled (a chain's few, and the tools of recent requests).
_CACHED: Final = 256
#: Longest message describing why a value does not match.
_MESSAGE_LIMIT: Final = 300


class CompiledSchema(Protocol):
    """What a compiled schema offers (a jsonschema-rs validator)."""

    def is_valid(self, instance: Any) -> bool: ...

    def iter_errors(self, instance: Any) -> Any: ...


class SchemaError(ValueError):
    """A schema that cannot be used: not JSON, not a valid JSON Schema, or a remote ``$ref``."""


def _refuse(uri: str) -> Any:
    raise ValueError(f"a $ref to {uri} is not fetched; keep definitions inside the schema ($defs)")


@functools.lru_cache(maxsize=_CACHED)
def _compiled(text: str) -> CompiledSchema:
    import jsonschema_rs  # imported on first use: `import engine` stays light

    try:
        validator: CompiledSchema = jsonschema_rs.validator_for(json.loads(text), retriever=_refuse)
    except jsonschema_rs.ValidationError as exc:
        # Its message runs over several lines (the failing part of the metaschema).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise SchemaError(f"not a valid JSON Schema: {first[:_MESSAGE_LIMIT]}") from None
    return validator


# The same schema object seen again (a tool defined once, sent with every request): found by
# identity, without writing its canonical text (~15 us). Each entry holds the object, so
# its id cannot be reused while it is here.
_BY_OBJECT: dict[int, tuple[object, CompiledSchema]] = {}


def compile_schema(schema: Mapping[str, Any] | bool) -> CompiledSchema:
    """The compiled validator for ``schema`` (cached); raises `SchemaError`."""
    known = _BY_OBJECT.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    validator = _compile_new(schema)
    if not isinstance(schema, bool):
        while len(_BY_OBJECT) >= _CACHED:
            try:
                del _BY_OBJECT[next(iter(_BY_OBJECT))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break
        _BY_OBJECT[id(schema)] = (schema, validator)
    return validator


def _compile_new(schema: Mapping[str, Any] | bool) -> CompiledSchema:
    if not isinstance(schema, Mapping | bool):
        raise SchemaError(
            f"a JSON Schema is a mapping (or true/false), not {type(schema).__name__}"
        )
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"the schema is not JSON: {exc}") from None
    return _compiled(text)


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "the top level"


def schema_error(validator: CompiledSchema, value: Any) -> str | None:
    """None when ``value`` matches, else the first mismatch and where: ``at /a/0: ...``."""
    if validator.is_valid(value):  # the common case, and the fastest call
        return None
    for error in validator.iter_errors(value):
        message = " ".join(str(error.message).split())
        if len(message) > _MESSAGE_LIMIT:
            message = message[: _MESSAGE_LIMIT - 1] + "…"
        return f"at {_pointer(error.instance_path)}: {message}"
    return "does not match"  # is_valid said no, yet no error was listed
