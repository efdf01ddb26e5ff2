"""OpenAI's Chat Completions, as the gateway speaks it: ``POST /v1/chat/completions``.

Read: ``model``, ``messages`` (roles system, developer, user, assistant, tool; content a
string or text parts), ``tools``/``tool_choice``, ``response_format``, ``temperature``,
``top_p``, ``max_tokens``/``max_completion_tokens``, ``stop``, ``seed``, ``user`` (recorded
in the request's tags), ``stream`` and ``stream_options.include_usage``. Written: the
``chat.completion`` object, or ``chat.completion.chunk`` events with tool-call deltas by
index, a last chunk with no choice carrying ``usage`` (when asked) and ``torq`` (always),
then ``data: [DONE]``. Errors are ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from engine.gateway.dialect import Parsed, bad, neutral
from engine.gateway.failures import GatewayError
from engine.types.completion import Completion
from engine.types.deltas import ReasoningDelta, TextDelta, ToolCallDelta
from engine.types.meta import GenerationMeta

__all__ = ["OpenAIDialect"]

_READ: Final = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "response_format",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "user",
    }
)
#: Parameters the engine cannot honour, at the value that asks for nothing.
_NEUTRAL: Final = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "parallel_tool_calls": True,
    "store": False,
}
_ROLES: Final = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# OpenAI's own error types: a bad key and an unknown model are invalid requests there too.
_TYPES: Final = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    502: "api_error",
    504: "timeout_error",
}


def _text(content: Any, where: str, refusal: bool = False) -> str | None:
    """A message's content as text: a string, or text parts joined (other parts: a 400)."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(where, "must be a string or a list of content parts")
    pieces = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind == "refusal" and refusal and isinstance(part.get("refusal"), str):
            pieces.append(part["refusal"])
        else:
            raise bad(
                f"{where}[{index}]",
                f"content part {kind!r} is not supported "
                "(text parts only: the chain's providers are asked in text)",
            )
    return "".join(pieces)


def _message(raw: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise bad(where, "a message is an object with a role")
    role = raw.get("role")
    if role not in _ROLES:
        raise bad(f"{where}.role", f"{role!r} is not one of {', '.join(_ROLES)}")
    for key, value in raw.items():
        if key in ("role", "content") or value is None:
            continue
        allowed = {"assistant": ("tool_calls", "refusal"), "tool": ("tool_call_id", "name")}
        if key not in allowed.get(role, ()):
            raise bad(f"{where}.{key}", "is not supported on a message of this role")
    message: dict[str, Any] = {"role": _ROLES[role]}
    content = _text(raw.get("content"), f"{where}.content", refusal=role == "assistant")
    if content is not None:
        message["content"] = content
    if raw.get("tool_calls"):
        message["tool_calls"] = raw["tool_calls"]
    for key in ("tool_call_id", "name"):
        if raw.get(key) is not None:
            message[key] = raw[key]
    return message


def _tools(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise bad("tools", "must be a list of tools")
    for index, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise bad(f"tools[{index}]", "a tool is {type: function, function: {name, ...}}")
        if not neutral("strict", function.get("strict"), {"strict": False}):
            raise bad(
                f"tools[{index}].function.strict",
                "strict schemas are not supported "
                "(check arguments with the chain's accept: tool_arguments)",
            )
    return raw


class OpenAIDialect:
    """OpenAI's Chat Completions (see the module docstring)."""

    name = "openai"

    def parse(self, body: Any) -> Parsed:
        if not isinstance(body, dict):
            raise bad("body", "must be a JSON object")
        for key, value in body.items():
            if key not in _READ and not neutral(key, value, _NEUTRAL):
                raise bad(key, "is not supported by this gateway (it is never dropped silently)")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad("model", "is required: a chain's name or alias (GET /v1/models)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad("messages", "must be a non-empty list")
        options: dict[str, Any] = {}
        if body.get("tools") is not None:
            options["tools"] = _tools(body["tools"])
        for key in ("tool_choice", "temperature", "top_p", "stop", "seed"):
            if body.get(key) is not None:
                options[key] = body[key]
        response_format = body.get("response_format")
        if response_format is not None and response_format != {"type": "text"}:
            options["response_format"] = response_format
        limits = {body.get(k) for k in ("max_tokens", "max_completion_tokens")} - {None}
        if len(limits) > 1:
            raise bad("max_completion_tokens", "differs from max_tokens: give one")
        if limits:
            options["max_tokens"] = limits.pop()
        if body.get("user") is not None:
            if not isinstance(body["user"], str):
                raise bad("user", "must be a string")
            options["tags"] = {"user": body["user"][:256]}
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise bad("stream", "must be true or false")
        usage = False
        stream_options = body.get("stream_options")
        if stream_options is not None:
            if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
                raise bad("stream_options", "only include_usage is supported")
            usage = stream_options.get("include_usage") is True
        rows = [_message(m, i) for i, m in enumerate(messages)]
        return Parsed(model, rows, options, stream, usage)

    def answer(self, completion: Completion, meta: GenerationMeta, torq: dict[str, Any]) -> Any:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": completion.text or None,
            "refusal": None,
        }
        if completion.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in completion.tool_calls
            ]
        return {
            "id": f"chatcmpl-{meta.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": completion.model or meta.model or torq["chain"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": completion.finish_reason or "stop",
                }
            ],
            "usage": _usage(completion),
            "system_fingerprint": None,
            "torq": torq,
        }

    def writer(self, meta: GenerationMeta, model: str, include_usage: bool) -> _Writer:
        return _Writer(meta, model, include_usage)

    def error_body(self, error: GatewayError) -> Any:
        body: dict[str, Any] = {
            "error": {
                "message": error.message,
                "type": _TYPES.get(error.status, "api_error"),
                "param": error.param,
                "code": error.code,
            }
        }
        if error.torq is not None:
            body["torq"] = error.torq
        return body


def _usage(completion: Completion | None) -> dict[str, int]:
    tokens_in = completion.tokens_in if completion else 0
    tokens_out = completion.tokens_out if completion else 0
    return {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }


class _Writer:
    """One stream's chunks: the first carries the role, each delta one chunk."""

    def __init__(self, meta: GenerationMeta, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        head = {
            "id": f"chatcmpl-{meta.request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        # Every chunk is this head and its choices: the head is serialised once.
        self._head = json.dumps(head)[:-1].encode()
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + self._head + b', "choices": [' + json.dumps(choice).encode() + b"]}\n\n"

    def event(self, event: Any) -> bytes:
        first = b""
        if not self._started:
            self._started = True
            first = self._chunk({"role": "assistant", "content": ""})
        if type(event) is TextDelta:
            return first + self._chunk({"content": event.text})
        if type(event) is ToolCallDelta:
            call: dict[str, Any] = {"index": event.index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.name is not None:
                function["name"] = event.name
            call["function"] = function
            return first + self._chunk({"tool_calls": [call]})
        if type(event) is ReasoningDelta:  # DeepSeek's field, which OpenAI's SDK keeps
            return first + self._chunk({"reasoning_content": event.text})
        return first

    def end(self, completion: Completion | None, torq: dict[str, Any]) -> bytes:
        finish = (completion.finish_reason if completion else None) or "stop"
        last = self._chunk({}, finish)
        usage = json.dumps(_usage(completion)) if self.include_usage else "null"
        tail = (
            b"data: "
            + self._head
            + b', "choices": [], "usage": '
            + usage.encode()
            + b', "torq": '
            + json.dumps(torq).encode()
            + b"}\n\n"
        )
        return last + tail + b"data: [DONE]\n\n"

    def error(self, error: GatewayError) -> bytes:
        body = OpenAIDialect().error_body(error)
        return b"data: " + json.dumps(body).encode() + b"\n\n"
