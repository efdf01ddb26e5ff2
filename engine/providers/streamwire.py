"""Reading streamed replies: each wire protocol's stream, event by event, into text deltas,
tool-call deltas, reasoning deltas and, at its proper end, the whole
`Completion`.

The parsers are sans-IO: the HTTP provider splits the body into events
(`engine.providers.framing`) and feeds them here; the parsers return what the caller
may see. One reply, one reading: a stream ends up read exactly as the same answer sent
whole would be (the same text, tool calls, usage, finish reason and outcome; the checks
of `settle` close both).

Where a stream ends is decided by the protocol's own completion signal:

- OpenAI-compatible: ``data: [DONE]``; a stream that delivered every choice's
  ``finish_reason`` is complete too (its usage, if sent, comes in the chunk after), even
  when the server never sends ``[DONE]``;
- Anthropic: ``message_stop``;
- Ollama: the line with ``"done": true``.

After the end marker nothing more is read (`StreamParser.ended`). A stream that
stops before its completion signal is ``truncated_response``. An error event raises
`ErrorEvent`, which the provider maps like an HTTP error body of the same kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import AIResponseError, ProviderError
from engine.providers.framing import Framing
from engine.providers.reading import (
    Usage,
    anthropic_finish,
    anthropic_usage,
    content_parts,
    ollama_finish,
    openai_usage,
    reasoning_of,
    settle,
)
from engine.types.completion import Completion
from engine.types.deltas import Delta, ReasoningDelta, TextDelta, ToolCallDelta
from engine.types.request import ToolCall

__all__ = [
    "STREAM_PARSERS",
    "AnthropicStream",
    "Delta",
    "ErrorEvent",
    "OllamaStream",
    "OpenAIStream",
    "ReasoningDelta",
    "StreamParser",
    "TextDelta",
    "ToolCallDelta",
    "deltas_of",
]


class ErrorEvent(Exception):
    """The stream sent an error event; ``payload`` is its JSON object."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__("error event")
        self.payload = payload


def deltas_of(completion: Completion) -> list[Delta]:
    """The deltas a stream of ``completion`` would have given: what a streamed request
    answered all at once (plain JSON) hands over, so events and completion agree."""
    out: list[Delta] = [ReasoningDelta(completion.reasoning)] if completion.reasoning else []
    if completion.text:
        out.append(TextDelta(completion.text))
    out += [
        ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls)
    ]
    return out


@dataclass
class _Answer:
    """What the stream said so far."""

    texts: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, args...]
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    finish: str | None = None
    refusal: list[str] = field(default_factory=list)

    def text_delta(self, text: Any) -> list[Delta]:
        if isinstance(text, str) and text:
            self.texts.append(text)
            return [TextDelta(text)]
        return []

    def reasoning_delta(self, text: Any) -> list[Delta]:
        if isinstance(text, str) and text:
            self.thoughts.append(text)
            return [ReasoningDelta(text)]
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

    def completion(self, wire: str) -> Completion:
        said = "".join(self.refusal)
        if said:
            raise AIResponseError(f"the model refused: {said[:200]}", code="refusal")
        calls = tuple(
            ToolCall(entry[0] or f"call_{index}", entry[1], "".join(entry[2:]) or "{}")
            for index, entry in sorted(self.calls.items())
        )
        return settle(
            wire,
            Completion(
                "".join(self.texts),
                self.model,
                self.usage.tokens_in,
                self.usage.tokens_out,
                None,
                calls,
                self.finish,
                "".join(self.thoughts),
                self.usage.cache_read,
                self.usage.cache_write,
            ),
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


class StreamParser(Protocol):
    """Turns one stream's events into deltas; `finish` gives the whole answer."""

    #: ``sse`` (Server-Sent Events) or ``ndjson`` (a JSON object per line).
    framing: Framing
    #: The end marker was seen: nothing after it is read.
    ended: bool

    def feed(self, event: str, data: str) -> list[Delta]:
        """One event (SSE event name, or "" for NDJSON) and its data."""
        ...

    @property
    def complete(self) -> bool:
        """Whether the protocol's completion signal has arrived (the answer is whole)."""
        ...

    def finish(self) -> Completion:
        """The complete answer; raises ``truncated_response`` if the stream never ended."""
        ...


class _Base:
    framing: Framing = "sse"
    wire = ""

    def __init__(self) -> None:
        self.answer = _Answer()
        self.ended = False

    @property
    def complete(self) -> bool:
        return self.ended

    def finish(self) -> Completion:
        if not self.complete:
            raise ProviderError(
                f"{self.wire} stream ended before its end marker", code="truncated_response"
            )
        return self.answer.completion(self.wire)


class OpenAIStream(_Base):
    """``data: {chunk}`` lines, ``data: [DONE]`` at the end; usage in the last chunk."""

    wire = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._open: set[int] = set()  # choices seen without their finish_reason yet
        self._finished = False

    @property
    def complete(self) -> bool:
        return self.ended or (self._finished and not self._open)

    def feed(self, event: str, data: str) -> list[Delta]:
        if "[DONE]" in data and data.strip() == "[DONE]":
            self.ended = True
            return []
        chunk = _json(data, self.wire)
        if not isinstance(chunk, dict):
            raise ProviderError("openai stream chunk is not an object", code="malformed_response")
        if "error" in chunk or event == "error":
            raise ErrorEvent(chunk)
        answer = self.answer
        model = chunk.get("model")
        if isinstance(model, str):
            answer.model = model
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            answer.usage = openai_usage(usage)
        elif "x_groq" in chunk:
            groq = chunk["x_groq"]
            if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
                answer.usage = openai_usage(groq["usage"])  # Groq's place for it
        out: list[Delta] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or _int(choice.get("index")) != 0:
                continue  # n > 1 is not asked for: only the first choice is the answer
            delta = choice.get("delta") or {}
            self._open.add(0)
            if isinstance(delta, dict):
                content = delta.get("content")
                if type(content) is str and len(delta) == 1:
                    # The usual chunk, text and nothing else: what the general reading
                    # below gives for it. (Runs once per streamed chunk.)
                    if content:
                        answer.texts.append(content)
                        out.append(TextDelta(content))
                else:
                    self._read_delta(delta, out)
            if choice.get("finish_reason"):
                answer.finish = str(choice["finish_reason"])
                self._open.discard(0)
                self._finished = True
                if answer.finish == "content_filter":
                    raise AIResponseError(
                        "answer withheld by the content filter", code="content_filter"
                    )
        return out

    def _read_delta(self, delta: dict[str, Any], out: list[Delta]) -> None:
        answer = self.answer
        text, thought = content_parts(delta.get("content"), self.wire)
        out += answer.reasoning_delta(thought or reasoning_of(delta))
        out += answer.text_delta(text)
        if isinstance(delta.get("refusal"), str):
            answer.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                function = call.get("function") or {}
                out += answer.call_delta(
                    _int(call.get("index")), call.get("id"),
                    function.get("name"), function.get("arguments"),
                )  # fmt: skip


class AnthropicStream(_Base):
    """``message_start`` ... ``content_block_delta`` ... ``message_stop``; ``error`` events.

    Only ``tool_use`` blocks are the application's tool calls (numbered 0, 1, ... in the
    answer); ``server_tool_use``/``mcp_tool_use`` blocks and their results ran at
    Anthropic and are not handed over. ``message_delta`` carries the cumulative usage."""

    wire = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, str] = {}  # content block index -> its type
        self._calls: dict[int, int] = {}  # tool_use block index -> tool call number

    def feed(self, event: str, data: str) -> list[Delta]:
        payload = _json(data, self.wire) if data.strip() else {}
        if not isinstance(payload, dict):
            raise ProviderError(
                "anthropic stream event is not an object", code="malformed_response"
            )
        kind = event or payload.get("type") or ""
        answer = self.answer
        if kind == "error":
            raise ErrorEvent(payload)
        if kind == "message_start":
            message = payload.get("message") or {}
            if isinstance(message, dict):
                model = message.get("model")
                answer.model = model if isinstance(model, str) else None
                answer.usage = anthropic_usage(message.get("usage"))
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            index = _int(payload.get("index"))
            block_type = str(block.get("type")) if isinstance(block, dict) else ""
            self._blocks[index] = block_type
            if block_type == "tool_use":
                number = self._calls.setdefault(index, len(self._calls))
                return answer.call_delta(number, block.get("id"), block.get("name"), None)
            if block_type == "text":
                return answer.text_delta(block.get("text"))
            if block_type == "thinking":
                return answer.reasoning_delta(block.get("thinking"))
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            index = _int(payload.get("index"))
            block_type = self._blocks.get(index, "")
            kind_of_delta = delta.get("type") if isinstance(delta, dict) else None
            if kind_of_delta == "text_delta" and block_type in ("text", ""):
                return answer.text_delta(delta.get("text"))
            if kind_of_delta == "thinking_delta":
                return answer.reasoning_delta(delta.get("thinking"))
            if kind_of_delta == "input_json_delta" and block_type == "tool_use":
                number = self._calls[index]
                return answer.call_delta(number, None, None, delta.get("partial_json") or "")
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            if stop == "refusal":
                raise AIResponseError("the model refused to answer", code="refusal")
            if isinstance(stop, str):
                answer.finish = anthropic_finish(stop)
            answer.usage = anthropic_usage(payload.get("usage"), answer.usage)
        elif kind == "message_stop":
            self.ended = True
        return []


class OllamaStream(_Base):
    """One JSON object per line; the last has ``"done": true`` and the token counts."""

    framing: Framing = "ndjson"
    wire = "ollama"

    def feed(self, event: str, data: str) -> list[Delta]:
        if not data.strip():
            return []
        chunk = _json(data, self.wire)
        if not isinstance(chunk, dict):
            raise ProviderError("ollama stream line is not an object", code="malformed_response")
        if "error" in chunk:
            raise ErrorEvent(chunk)
        answer = self.answer
        answer.model = chunk.get("model") if isinstance(chunk.get("model"), str) else answer.model
        message = chunk.get("message") or {}
        out: list[Delta] = []
        if isinstance(message, dict):
            content = message.get("content")
            if content is not None and not isinstance(content, str):
                raise ProviderError("ollama stream line has no text", code="malformed_response")
            out += answer.reasoning_delta(reasoning_of(message))
            out += answer.text_delta(content)
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
            answer.finish = ollama_finish(bool(answer.calls), chunk.get("done_reason"))
            answer.usage = Usage(
                _int(chunk.get("prompt_eval_count")), _int(chunk.get("eval_count"))
            )
        return out


#: A fresh parser for each wire protocol's streams.
STREAM_PARSERS: dict[str, type[StreamParser]] = {
    "openai": OpenAIStream,
    "anthropic": AnthropicStream,
    "ollama": OllamaStream,
}
