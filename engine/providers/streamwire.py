"""Reading streamed replies: each wire protocol's stream, event by event, into text deltas,
tool-call deltas and, at its proper end, the whole :class:`~engine.classify.Completion`.

The parsers are sans-IO: the HTTP provider feeds them Server-Sent Events (OpenAI,
Anthropic; parsed by ``httpx-sse``) or NDJSON lines (Ollama) and they return what the
caller may see. A stream that ends without its protocol's end marker (``[DONE]``,
``message_stop``, ``"done": true``) is ``truncated_response``; an error event is mapped
like an HTTP error of the same kind; a line that is not JSON is ``malformed_response``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ..classify import Completion
from ..errors import AIResponseError, ProviderError
from ..request import ToolCall

__all__ = ["STREAM_PARSERS", "StreamParser", "TextDelta", "ToolCallDelta"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """The next piece of tool call number ``index``: its id and name when they first
    appear, then pieces of its JSON ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


Delta = TextDelta | ToolCallDelta

# An error event's type -> the code an HTTP error of that kind would get.
_ERROR_CODES: Final = {
    "overloaded_error": "529",
    "rate_limit_error": "429",
    "rate_limit_exceeded": "429",
    "api_error": "500",
    "server_error": "500",
    "insufficient_quota": "insufficient_quota",
}


_ANTHROPIC_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


@dataclass
class _Answer:
    """What the stream said so far."""

    texts: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, args...]
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    finish: str | None = None

    def text_delta(self, text: Any) -> list[Delta]:
        if isinstance(text, str) and text:
            self.texts.append(text)
            return [TextDelta(text)]
        return []

    def call_delta(self, index: int, call_id: Any, name: Any, arguments: Any) -> list[Delta]:
        entry = self.calls.setdefault(index, ["", ""])
        if isinstance(call_id, str) and call_id:
            entry[0] = call_id
        if isinstance(name, str) and name:
            entry[1] = name
        args = arguments if isinstance(arguments, str) else ""
        if not isinstance(arguments, str) and arguments is not None:
            args = json.dumps(arguments)
        if args:
            entry.append(args)
        new_id = call_id if isinstance(call_id, str) and call_id else None
        new_name = name if isinstance(name, str) and name else None
        if not (new_id or new_name or args):
            return []
        return [ToolCallDelta(index, new_id, new_name, args)]

    def completion(self) -> Completion:
        calls = tuple(
            ToolCall(entry[0] or f"call_{index}", entry[1], "".join(entry[2:]) or "{}")
            for index, entry in sorted(self.calls.items())
        )
        finish = "tool_calls" if calls and self.finish in (None, "stop") else self.finish
        return Completion(
            "".join(self.texts), self.model, self.tokens_in, self.tokens_out, None, calls, finish
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _json(data: str, wire: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ProviderError(
            f"{wire} stream sent an event that is not JSON: {data[:60]!r}",
            code="malformed_response",
        ) from None


def _error_event(wire: str, error: Any) -> ProviderError | AIResponseError:
    kind, message = "", ""
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("code") or "")
        message = str(error.get("message") or "")
    elif isinstance(error, str):
        message = error
    code = _ERROR_CODES.get(kind, "stream_error")
    return ProviderError(
        f"{wire} stream error{f' {kind}' if kind else ''}: {message[:200]}", code=code
    )


class StreamParser(Protocol):
    """Turns one stream's events into deltas; :meth:`finish` gives the whole answer."""

    #: ``sse`` (Server-Sent Events) or ``ndjson`` (a JSON object per line).
    framing: str

    def feed(self, event: str, data: str) -> list[Delta]:
        """One event (SSE event name, or "" for NDJSON) and its data."""
        ...

    def finish(self) -> Completion:
        """The complete answer; raises ``truncated_response`` if the stream never ended."""
        ...


class _Base:
    framing = "sse"
    wire = ""

    def __init__(self) -> None:
        self.answer = _Answer()
        self.ended = False

    def finish(self) -> Completion:
        if not self.ended:
            raise ProviderError(
                f"{self.wire} stream ended before its end marker", code="truncated_response"
            )
        return self.answer.completion()


class OpenAIStream(_Base):
    """``data: {chunk}`` lines, ``data: [DONE]`` at the end; usage in the last chunk."""

    wire = "openai"

    def feed(self, event: str, data: str) -> list[Delta]:
        if data.strip() == "[DONE]":
            self.ended = True
            return []
        chunk = _json(data, self.wire)
        if not isinstance(chunk, dict):
            raise ProviderError("openai stream chunk is not an object", code="malformed_response")
        if "error" in chunk:
            raise _error_event(self.wire, chunk["error"])
        answer = self.answer
        answer.model = chunk.get("model") if isinstance(chunk.get("model"), str) else answer.model
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            answer.tokens_in = _int(usage.get("prompt_tokens"))
            answer.tokens_out = _int(usage.get("completion_tokens"))
        out: list[Delta] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            if choice.get("finish_reason"):
                answer.finish = str(choice["finish_reason"])
                if answer.finish == "content_filter":
                    raise AIResponseError(
                        "answer withheld by the content filter", code="content_filter"
                    )
            if isinstance(delta, dict):
                out += answer.text_delta(delta.get("content"))
                for call in delta.get("tool_calls") or []:
                    if isinstance(call, dict):
                        function = call.get("function") or {}
                        out += answer.call_delta(
                            _int(call.get("index")), call.get("id"),
                            function.get("name"), function.get("arguments"),
                        )  # fmt: skip
        return out


class AnthropicStream(_Base):
    """``message_start`` ... ``content_block_delta`` ... ``message_stop``; ``error`` events."""

    wire = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, str] = {}  # content block index -> "text" | "tool_use"

    def feed(self, event: str, data: str) -> list[Delta]:
        payload = _json(data, self.wire) if data.strip() else {}
        kind = event or (payload.get("type") if isinstance(payload, dict) else "")
        if not isinstance(payload, dict):
            raise ProviderError(
                "anthropic stream event is not an object", code="malformed_response"
            )
        answer = self.answer
        if kind == "error":
            raise _error_event(self.wire, payload.get("error"))
        if kind == "message_start":
            message = payload.get("message") or {}
            answer.model = message.get("model") if isinstance(message.get("model"), str) else None
            answer.tokens_in = _int((message.get("usage") or {}).get("input_tokens"))
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            index = _int(payload.get("index"))
            self._blocks[index] = str(block.get("type"))
            if block.get("type") == "tool_use":
                return answer.call_delta(index, block.get("id"), block.get("name"), None)
            return answer.text_delta(block.get("text"))
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta":
                return answer.text_delta(delta.get("text"))
            if delta.get("type") == "input_json_delta":
                index = _int(payload.get("index"))
                return answer.call_delta(index, None, None, delta.get("partial_json") or "")
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            stop = delta.get("stop_reason")
            if stop == "refusal":
                raise AIResponseError("the model refused to answer", code="refusal")
            if isinstance(stop, str):
                answer.finish = _ANTHROPIC_FINISH.get(stop, stop)
            answer.tokens_out = _int((payload.get("usage") or {}).get("output_tokens"))
        elif kind == "message_stop":
            self.ended = True
        return []


class OllamaStream(_Base):
    """One JSON object per line; the last has ``"done": true`` and the token counts."""

    framing = "ndjson"
    wire = "ollama"

    def feed(self, event: str, data: str) -> list[Delta]:
        if not data.strip():
            return []
        chunk = _json(data, self.wire)
        if not isinstance(chunk, dict):
            raise ProviderError("ollama stream line is not an object", code="malformed_response")
        if "error" in chunk:
            raise _error_event(self.wire, chunk["error"])
        answer = self.answer
        answer.model = chunk.get("model") if isinstance(chunk.get("model"), str) else answer.model
        message = chunk.get("message") or {}
        out = answer.text_delta(message.get("content")) if isinstance(message, dict) else []
        if isinstance(message, dict):
            for call in message.get("tool_calls") or []:
                if not isinstance(call, dict):
                    continue
                function = call.get("function") or {}
                # Ollama sends each call whole, in one line: each is the next index.
                out += answer.call_delta(
                    len(answer.calls), call.get("id"), function.get("name"),
                    function.get("arguments"),
                )  # fmt: skip
        if chunk.get("done") is True:
            self.ended = True
            answer.finish = str(chunk.get("done_reason") or "stop")
            answer.tokens_in = _int(chunk.get("prompt_eval_count"))
            answer.tokens_out = _int(chunk.get("eval_count"))
        return out


#: A fresh parser for each wire protocol's streams.
STREAM_PARSERS: Final[dict[str, type[StreamParser]]] = {
    "openai": OpenAIStream,
    "anthropic": AnthropicStream,
    "ollama": OllamaStream,
}

__all__ += ["AnthropicStream", "Delta", "OllamaStream", "OpenAIStream"]
