"""A request is checked once, before its first attempt: what no provider could be sent.

A caller's mistake is not a provider's failure. A value that is not JSON (a ``set``,
``bytes``, an object; ``NaN`` or an infinity, which would go out as invalid JSON), a schema
nested deeper than any real one, a tool name with control characters, or a conversation in
an impossible order (an assistant speaking first, a tool result answering no call) would
otherwise fail inside every attempt, or be sent and refused by every provider, and be
counted against healthy providers' breakers. Here it raises a ``ValueError`` or
``TypeError`` naming the field, before any provider is called.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from engine.support.schemas import SchemaError, compile_schema
from engine.types.request import ChatRequest

__all__ = ["MAX_JSON_DEPTH", "check_request", "response_schema", "strict_json"]

#: Deepest nesting a schema or any other JSON value of a request may have.
MAX_JSON_DEPTH: Final = 64
#: What every provider accepts as a tool name (OpenAI: ``^[a-zA-Z0-9_-]{1,64}$``; others
#: allow a little more): no spaces, no control characters.
_TOOL_NAME: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def strict_json(value: Any, where: str, depth: int = 0) -> None:
    """Raise unless ``value`` is JSON as the wire needs it: dicts with string keys, lists,
    strings, finite numbers, booleans and None, at most `MAX_JSON_DEPTH` deep."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not JSON (NaN and infinities are not)")
        return
    if depth >= MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: the key {key!r} is not a string")
            strict_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            strict_json(item, f"{where}[{index}]", depth + 1)
        return
    raise TypeError(
        f"{where}: a value of type {type(value).__name__} is not JSON "
        "(give a str, number, bool, None, list or dict)"
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _arguments(text: str, where: str) -> None:
    try:
        parsed = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: must be a JSON object, not {type(parsed).__name__}")
    strict_json(parsed, where)


def _name(name: str, where: str) -> None:
    if not _TOOL_NAME.match(name):
        raise ValueError(
            f"{where}: {name[:40]!r} is not a tool name (1-128 letters, digits, '_', '-', "
            "'.', ':'; no spaces or control characters)"
        )


def response_schema(response_format: Mapping[str, Any] | None) -> Any:
    """The JSON Schema a ``response_format`` asks the answer to match, or None."""
    if response_format is None or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    return spec.get("schema") if isinstance(spec, Mapping) else None


def _compiles(schema: Any, where: str) -> None:
    # Answers are checked against it (accept: tool_arguments, a json_schema response
    # format): a schema no validator can use is the caller's mistake, found before any call.
    try:
        compile_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"{where}: {exc}") from None


def check_request(request: ChatRequest) -> ChatRequest:
    """``request`` itself, once it is known that every provider can be sent it."""
    for index, tool in enumerate(request.tools):
        _name(tool.name, f"tools[{index}].function.name")
        strict_json(tool.parameters, f"tools[{index}].function.parameters")
        _compiles(tool.parameters, f"tools[{index}].function.parameters")
    if request.tool_choice is not None and not isinstance(request.tool_choice, str):
        strict_json(request.tool_choice, "tool_choice")
    if request.response_format is not None:
        strict_json(request.response_format, "response_format")
        schema = response_schema(request.response_format)
        if schema is not None:
            _compiles(schema, "response_format.json_schema.schema")
    called: set[str] = set()
    started = False
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        if message.role == "system":
            continue
        if not started and message.role != "user":
            raise ValueError(
                f"{where}.role: the conversation starts with {message.role!r}; it must start "
                "with a user message (after any system messages)"
            )
        started = True
        for number, call in enumerate(message.tool_calls):
            _name(call.name, f"{where}.tool_calls[{number}].function.name")
            _arguments(call.arguments, f"{where}.tool_calls[{number}].function.arguments")
            called.add(call.id)
        if message.role == "tool" and message.tool_call_id not in called:
            raise ValueError(
                f"{where}.tool_call_id: {str(message.tool_call_id)[:40]!r} answers no tool call "
                "of an earlier assistant message"
            )
    return request
