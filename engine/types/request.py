"""What the engine asks a provider: a chat request richer than a prompt.

A `ChatRequest` holds the conversation (`Message`: roles ``system``, ``user``,
``assistant`` and ``tool``; assistant `ToolCall` s and tool results), an optional
system prompt, sampling parameters, `Tool` definitions (JSON Schema, OpenAI's shape),
``tool_choice``, a JSON ``response_format`` and free-form ``tags`` (recorded in metadata,
never sent). ``generate_response(prompt)`` is the request with one user message.

Messages may be given as these objects or as OpenAI-style dicts; `messages_from`
checks them and says which message and which field is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Final, Literal

__all__ = [
    "PARAM_NAMES",
    "ChatRequest",
    "Message",
    "Role",
    "Tool",
    "ToolCall",
    "build_request",
    "check_params",
    "messages_from",
    "tools_from",
]

Role = Literal["system", "user", "assistant", "tool"]
_ROLES: Final = ("system", "user", "assistant", "tool")
#: Sampling and output parameters a call (or a chain step's ``params``) may set.
PARAM_NAMES: Final = ("temperature", "max_tokens", "stop", "top_p", "seed")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asks to call: ``arguments`` is a JSON string, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, str]:
        """``{"id", "name", "arguments"}``."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: For ``role="tool"``: the call this message answers.
    tool_call_id: str | None = None
    #: For ``role="tool"``: the tool's name (some wire protocols want it).
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: name, description and JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything one call asks for (the same for every attempt of the chain)."""

    messages: tuple[Message, ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    #: Sent where the wire has it (OpenAI's and Ollama's); Anthropic's Messages API has no
    #: seed, so a step on it answers without one (a seed asks for best-effort determinism).
    seed: int | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_prompt(cls, prompt: str) -> ChatRequest:
        """The request of ``generate_response``: one user message."""
        if cls is not ChatRequest:  # a subclass gets its own __init__
            return cls((Message("user", prompt),))
        return _prompt_request(prompt)

    @property
    def plain_prompt(self) -> str | None:
        """The prompt, when the request is nothing more than one user message (what a
        provider with only ``generate_response(prompt=...)`` can answer); else None."""
        # Checked field by field (no list built): this runs on every plain provider's call.
        if (
            len(self.messages) != 1
            or self.system
            or self.tools
            or self.response_format is not None
            or self.temperature is not None
            or self.max_tokens is not None
            or self.top_p is not None
            or self.seed is not None
            or self.stop
        ):
            return None
        message = self.messages[0]
        return message.content if message.role == "user" and not message.tool_calls else None

    def unsupported_by_plain(self) -> list[str]:
        """What a plain ``generate_response(prompt=...)`` provider could not be given."""
        missing = []
        if self.system:
            missing.append("a system prompt")
        if len(self.messages) != 1 or self.messages[0].role != "user":
            missing.append(f"a conversation of {len(self.messages)} messages")
        if self.tools:
            missing.append("tools")
        if self.response_format is not None:
            missing.append("a response_format")
        for name in PARAM_NAMES:
            if getattr(self, name) not in (None, ()):
                missing.append(name)
        return missing

    def with_params(self, params: Mapping[str, Any]) -> ChatRequest:
        """This request with a step's ``params`` filled in where the call set none."""
        unset: dict[str, Any] = {
            name: (tuple(value) if name == "stop" else value)
            for name, value in params.items()
            if getattr(self, name) in (None, ())
        }
        return replace(self, **unset) if unset else self


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}")


def _tool_call(raw: Any, where: str) -> ToolCall:
    if isinstance(raw, ToolCall):
        return raw
    if not isinstance(raw, Mapping):
        raise _fail(where, "a tool call is a dict with id and function {name, arguments}")
    function = raw.get("function", raw)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise _fail(where, "a tool call needs function.name")
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        try:
            arguments = json.dumps(arguments, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise _fail(f"{where}.function.arguments", f"not JSON ({exc})") from None
    call_id = raw.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise _fail(where, "a tool call needs an id")
    return ToolCall(call_id, function["name"], arguments)


def _message(raw: Any, where: str) -> Message:
    if isinstance(raw, Message):
        return raw
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a message is a dict or a Message, not {type(raw).__name__}")
    unknown = sorted(set(raw) - {"role", "content", "tool_calls", "tool_call_id", "name"})
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}")
    role = raw.get("role")
    if role not in _ROLES:
        raise _fail(f"{where}.role", f"{role!r} is not one of {', '.join(_ROLES)}")
    content = raw.get("content")
    if content is not None and not isinstance(content, str):
        raise _fail(f"{where}.content", "must be a string (or null)")
    calls = raw.get("tool_calls") or ()
    if calls and role != "assistant":
        raise _fail(f"{where}.tool_calls", "only assistant messages carry tool calls")
    if not isinstance(calls, list | tuple):
        raise _fail(f"{where}.tool_calls", "must be a list")
    tool_calls = tuple(_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls))
    tool_call_id = raw.get("tool_call_id")
    if role == "tool" and not isinstance(tool_call_id, str):
        raise _fail(f"{where}.tool_call_id", "a tool message answers a call: give its id")
    if content is None and not tool_calls:
        raise _fail(f"{where}.content", "is missing")
    name = raw.get("name")
    return Message(role, content, tool_calls, tool_call_id, name if isinstance(name, str) else None)


def messages_from(raw: Any) -> tuple[Message, ...]:
    """Messages from `Message` objects or OpenAI-style dicts, checked; a
    ``ValueError`` names the message and field at fault (``messages[2].role: ...``)."""
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
        raise TypeError("messages must be a list of messages (dicts or Message)")
    messages = tuple(_message(item, f"messages[{i}]") for i, item in enumerate(raw))
    if not messages:
        raise ValueError("messages must not be empty")
    return messages


def tools_from(raw: Any) -> tuple[Tool, ...]:
    """Tool definitions from `Tool` objects or OpenAI's ``{"type": "function",
    "function": {name, description, parameters}}`` dicts (the bare function dict works too)."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
        raise TypeError("tools must be a list of tool definitions")
    tools = []
    for index, item in enumerate(raw):
        where = f"tools[{index}]"
        if isinstance(item, Tool):
            tools.append(item)
            continue
        if not isinstance(item, Mapping):
            raise _fail(where, "a tool is a dict {type: function, function: {...}} or a Tool")
        function = item.get("function", item)
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise _fail(f"{where}.function.name", "is missing")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping):
            raise _fail(f"{where}.function.parameters", "must be a JSON Schema object")
        description = function.get("description", "")
        tools.append(Tool(name, description if isinstance(description, str) else "", parameters))
    return tuple(tools)


def check_params(params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Sampling parameters checked by name and type (``ValueError``/``TypeError`` naming
    the parameter)."""
    prefix = f"{where}: " if where else ""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in ("temperature", "top_p"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{prefix}{name} must be a number")
            upper = 2.0 if name == "temperature" else 1.0
            if not math.isfinite(value) or not 0 <= value <= upper:
                raise ValueError(f"{prefix}{name} must be between 0 and {upper:g}")
            out[name] = float(value)
        elif name == "max_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{prefix}max_tokens must be a positive integer")
            out[name] = value
        elif name == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{prefix}seed must be an integer")
            out[name] = value
        elif name == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
                raise TypeError(f"{prefix}stop must be a string or a list of strings")
            out[name] = tuple(stops)
        else:
            raise TypeError(f"{prefix}unknown parameter {name!r}; known: {', '.join(PARAM_NAMES)}")
    return out


def build_request(
    messages: Any,
    system: Any,
    tools: Any,
    tool_choice: Any,
    response_format: Any,
    tags: Any,
    params: Mapping[str, Any],
) -> ChatRequest:
    """A checked `ChatRequest` from a call's arguments (errors name the argument)."""
    if system is not None and not isinstance(system, str):
        raise TypeError(f"system must be a str, got {type(system).__name__}")
    if tool_choice is not None and not (
        tool_choice in ("auto", "none", "required") or isinstance(tool_choice, Mapping)
    ):
        raise ValueError(
            "tool_choice must be 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    if response_format is not None and not isinstance(response_format, Mapping):
        raise TypeError("response_format must be a dict such as {'type': 'json_object'}")
    if tags is not None and (
        not isinstance(tags, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise TypeError("tags must be a dict of str to str")
    checked = check_params(params)
    return ChatRequest(
        messages=messages_from(messages),
        system=system or None,
        tools=tools_from(tools),
        tool_choice=tool_choice,
        response_format=response_format,
        tags=dict(tags or {}),
        **checked,
    )


def _slot_setters(cls: type, given: tuple[str, ...]) -> tuple[tuple[Any, Any], ...]:
    """Each field's slot setter and default, but ``given``'s (a frozen slotted class's slots
    are written through their descriptors, as its generated ``__init__`` would)."""
    found = []
    for item in fields(cls):
        if item.name in given:
            continue
        if item.default is MISSING:  # a default factory would be shared: not made here
            raise TypeError(f"{cls.__name__}.{item.name} needs a value per instance")
        found.append((cls.__dict__[item.name].__set__, item.default))
    return tuple(found)


_MESSAGE_DEFAULTS: Final = _slot_setters(Message, ("role", "content"))
_REQUEST_DEFAULTS: Final = _slot_setters(ChatRequest, ("messages", "tags"))
_ROLE: Final = Message.__dict__["role"].__set__
_CONTENT: Final = Message.__dict__["content"].__set__
_MESSAGES: Final = ChatRequest.__dict__["messages"].__set__
_TAGS: Final = ChatRequest.__dict__["tags"].__set__


def _prompt_request(prompt: str) -> ChatRequest:
    """``ChatRequest((Message("user", prompt),))`` without the frozen dataclasses' generated
    ``__init__`` (15 ``object.__setattr__`` calls): every ``generate_response`` makes one."""
    message = object.__new__(Message)
    for put, value in _MESSAGE_DEFAULTS:
        put(message, value)
    _ROLE(message, "user")
    _CONTENT(message, prompt)
    request = object.__new__(ChatRequest)
    for put, value in _REQUEST_DEFAULTS:
        put(request, value)
    _MESSAGES(request, (message,))
    _TAGS(request, {})
    return request
