"""Anthropic's Messages, as the gateway speaks it: ``POST /v1/messages``.

Read: ``model``, ``max_tokens`` (required, as Anthropic requires it), ``system`` (a string
or text blocks), ``messages`` (user and assistant; content a string or ``text``,
``tool_use`` and ``tool_result`` blocks), ``tools``/``tool_choice``, ``stop_sequences``,
``temperature``, ``top_p``, ``metadata.user_id`` (recorded in the request's tags) and
``stream``. Written: the ``message`` object, or the event sequence ``message_start``,
``content_block_start``/``_delta``/``_stop`` per block, ``message_delta`` (the stop reason,
usage and ``torq``, the attempt history) and ``message_stop``. Errors are
``{"type": "error", "error": {type, message}}``; a stream cut mid-way ends with
``event: error``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from engine.gateway.dialect import Parsed, bad, neutral
from engine.gateway.failures import GatewayError
from engine.types.completion import Completion
from engine.types.deltas import TextDelta, ToolCallDelta
from engine.types.meta import GenerationMeta

__all__ = ["AnthropicDialect"]

_READ: Final = frozenset(
    {
        "model",
        "max_tokens",
        "system",
        "messages",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "top_p",
        "metadata",
        "stream",
    }
)
_STOP: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    502: "api_error",
    504: "api_error",
}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad(where, "must be a string or a list of content blocks")
    for index, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in ("text", "tool_use", "tool_result"):
            raise bad(
                f"{where}[{index}]",
                f"content block {kind!r} is not supported (text, tool_use and tool_result only)",
            )
    return content


def _result_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    pieces = []
    for index, block in enumerate(content if isinstance(content, list) else [None]):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad(f"{where}[{index}]", "a tool result's content is text")
        pieces.append(str(block.get("text", "")))
    return "".join(pieces)


def _messages(raw: Any) -> list[dict[str, Any]]:
    """Anthropic's turns as OpenAI-style messages: an assistant's tool_use blocks become
    its tool calls, a user's tool_result blocks become tool messages (before its text)."""
    if not isinstance(raw, list) or not raw:
        raise bad("messages", "must be a non-empty list")
    out: list[dict[str, Any]] = []
    for index, turn in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise bad(f"{where}.role", "must be user or assistant")
        if set(turn) - {"role", "content"}:
            raise bad(f"{where}.{sorted(set(turn) - {'role', 'content'})[0]}", "is not supported")
        texts, calls = [], []
        for number, block in enumerate(_blocks(turn.get("content"), f"{where}.content")):
            at = f"{where}.content[{number}]"
            if block["type"] == "text":
                texts.append(str(block.get("text", "")))
            elif block["type"] == "tool_use" and turn["role"] == "assistant":
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {
                            "name": block.get("name"),
                            "arguments": json.dumps(block.get("input", {})),
                        },
                    }
                )
            elif block["type"] == "tool_result" and turn["role"] == "user":
                if block.get("is_error"):
                    raise bad(f"{at}.is_error", "is not supported: say so in the content")
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": _result_text(block.get("content"), f"{at}.content"),
                    }
                )
            else:
                raise bad(at, f"a {block['type']} block does not belong in a {turn['role']} turn")
        message: dict[str, Any] = {"role": turn["role"]}
        if texts or not calls:
            message["content"] = "".join(texts)
        if calls:
            message["tool_calls"] = calls
        if texts or calls:
            out.append(message)
    return out


def _choice(raw: Any) -> Any:
    if not isinstance(raw, dict) or raw.get("type") not in ("auto", "any", "tool", "none"):
        raise bad("tool_choice", "must be {type: auto | any | tool | none}")
    if set(raw) - {"type", "name"}:
        raise bad("tool_choice", "only type and name are supported")
    if raw["type"] == "tool":
        return {"type": "function", "function": {"name": raw.get("name")}}
    return {"auto": "auto", "any": "required", "none": "none"}[raw["type"]]


class AnthropicDialect:
    """Anthropic's Messages (see the module docstring)."""

    name = "anthropic"

    def parse(self, body: Any) -> Parsed:
        if not isinstance(body, dict):
            raise bad("body", "must be a JSON object")
        for key, value in body.items():
            if key not in _READ and not neutral(key, value, {}):
                raise bad(key, "is not supported by this gateway (it is never dropped silently)")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad("model", "is required: a chain's name or alias (GET /v1/models)")
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise bad("max_tokens", "is required: a positive integer")
        options: dict[str, Any] = {"max_tokens": max_tokens}
        system = body.get("system")
        if system is not None:
            options["system"] = _result_text(system, "system")
        if body.get("tools") is not None:
            tools = body["tools"]
            if not isinstance(tools, list):
                raise bad("tools", "must be a list of tools")
            converted = []
            for index, tool in enumerate(tools):
                if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
                    raise bad(
                        f"tools[{index}]",
                        "only custom tools {name, input_schema} are "
                        "supported (server tools run at Anthropic)",
                    )
                converted.append(
                    {
                        "type": "function",
                        "function": {
                            "name": tool.get("name"),
                            "description": tool.get("description", ""),
                            "parameters": tool.get("input_schema", {"type": "object"}),
                        },
                    }
                )
            options["tools"] = converted
        if body.get("tool_choice") is not None:
            options["tool_choice"] = _choice(body["tool_choice"])
        for key, name in (
            ("stop_sequences", "stop"),
            ("temperature", "temperature"),
            ("top_p", "top_p"),
        ):
            if body.get(key) is not None:
                options[name] = body[key]
        metadata = body.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
                raise bad("metadata", "only user_id is supported")
            if metadata.get("user_id") is not None:
                options["tags"] = {"user": str(metadata["user_id"])[:256]}
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise bad("stream", "must be true or false")
        return Parsed(model, _messages(body.get("messages")), options, stream, True)

    def answer(self, completion: Completion, meta: GenerationMeta, torq: dict[str, Any]) -> Any:
        content: list[dict[str, Any]] = []
        if completion.text or not completion.tool_calls:
            content.append({"type": "text", "text": completion.text})
        for call in completion.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": _input(call.arguments),
                }
            )
        return {
            "id": f"msg_{meta.request_id}",
            "type": "message",
            "role": "assistant",
            "model": completion.model or meta.model or torq["chain"],
            "content": content,
            "stop_reason": _STOP.get(completion.finish_reason or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": completion.tokens_in, "output_tokens": completion.tokens_out},
            "torq": torq,
        }

    def writer(self, meta: GenerationMeta, model: str, include_usage: bool) -> _Writer:
        return _Writer(meta, model)

    def error_body(self, error: GatewayError) -> Any:
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": _TYPES.get(error.status, "api_error"), "message": error.message},
        }
        if error.torq is not None:
            body["torq"] = error.torq
        return body


def _input(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return {}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


class _Writer:
    """One stream's events: a content block per text run and per tool call, in order."""

    def __init__(self, meta: GenerationMeta, model: str) -> None:
        self.meta = meta
        self.model = model
        self._started = False
        self._block = -1  # the open block's index (-1: none)
        self._kind = ""  # "text", or "tool:<index>" for a tool call's block

    def _start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": f"msg_{self.meta.request_id}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._kind = kind
        return out + _event(
            "content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )

    def _close(self) -> bytes:
        if not self._kind:
            return b""
        self._kind = ""
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def event(self, event: Any) -> bytes:
        out = b"" if self._started else self._start()
        if type(event) is TextDelta:
            if self._kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            delta = {"type": "text_delta", "text": event.text}
        elif type(event) is ToolCallDelta:
            kind = f"tool:{event.index}"
            if self._kind != kind:
                out += self._open(
                    kind,
                    {
                        "type": "tool_use",
                        "id": event.id or f"toolu_{event.index}",
                        "name": event.name or "",
                        "input": {},
                    },
                )
            if not event.arguments:
                return out
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
        else:
            return out  # reasoning is not part of the answer's content here
        return out + _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block, "delta": delta},
        )

    def end(self, completion: Completion | None, torq: dict[str, Any]) -> bytes:
        out = b"" if self._started else self._start()
        if self._block < 0:  # an empty answer still has its one text block
            out += self._open("text", {"type": "text", "text": ""})
        out += self._close()
        finish = (completion.finish_reason if completion else None) or "stop"
        usage = {
            "input_tokens": completion.tokens_in if completion else 0,
            "output_tokens": completion.tokens_out if completion else 0,
        }
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "usage": usage,
                "torq": torq,
                "delta": {"stop_reason": _STOP.get(finish, "end_turn"), "stop_sequence": None},
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, error: GatewayError) -> bytes:
        return _event("error", AnthropicDialect().error_body(error))
