"""The simulator's streamed replies: each wire protocol's stream format, frame by frame, and
the faults a stream can have (cut, stall, an error event, a garbled frame, a slow first
token) placed after a given number of content frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.tools.simscript import Behaviour

__all__ = ["Frames", "frames", "garbled", "stream_error", "write_stream"]


@dataclass(frozen=True)
class Frames:
    """A stream: frames before the content, one frame per content piece, frames after."""

    content_type: str
    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]


def _sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return ((f"event: {event}\n" if event else "") + f"data: {text}\n\n").encode()


def _ndjson(data: Any) -> bytes:
    return (json.dumps(data) + "\n").encode()


def _pieces(text: str, count: int) -> list[str]:
    """``text`` in ``count`` pieces (fewer if it is shorter), joined back exactly."""
    count = max(1, min(count, len(text)))
    size = -(-len(text) // count)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def frames(
    wire: str, text: str, model: str, chunks: int, tokens: tuple[int, int],
    tool: tuple[str, dict[str, Any]] | None = None,
) -> Frames:  # fmt: skip
    """The frames of a streamed answer (``text`` in ``chunks`` pieces), or of a streamed
    tool call (``tool``: name and arguments, the arguments' JSON in pieces)."""
    tokens_in, tokens_out = tokens
    args = json.dumps(tool[1]) if tool else ""
    pieces = _pieces(args if tool else text, chunks)
    if wire == "openai":

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                {
                    "id": "chatcmpl-sim",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        head = [chunk({"role": "assistant", "content": ""})]
        if tool:
            head.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_sim_1",
                                "type": "function",
                                "function": {"name": tool[0], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            content = [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces
            ]
        else:
            content = [chunk({"content": p}) for p in pieces]
        usage = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        tail = [
            chunk({}, "tool_calls" if tool else "stop"),
            _sse(
                {
                    "id": "chatcmpl-sim",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            ),
            _sse("[DONE]"),
        ]
        return Frames("text/event-stream", head, content, tail)
    if wire == "anthropic":
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_sim",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": tokens_in, "output_tokens": 1},
            },
        }
        block = (
            {"type": "tool_use", "id": "toolu_sim_1", "name": tool[0], "input": {}}
            if tool
            else {"type": "text", "text": ""}
        )
        head = [
            _sse(start, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]
        delta_type = "input_json_delta" if tool else "text_delta"
        key = "partial_json" if tool else "text"
        content = [
            _sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": delta_type, key: p}},
                "content_block_delta",
            )
            for p in pieces
        ]
        tail = [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": "tool_use" if tool else "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": tokens_out},
                },
                "message_delta",
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return Frames("text/event-stream", head, content, tail)
    base = {"model": model, "created_at": "2026-01-01T00:00:00Z"}
    if tool:
        calls = [{"function": {"name": tool[0], "arguments": tool[1]}}]
        content = [
            _ndjson(
                {
                    **base,
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                    "done": False,
                }
            )
        ]
    else:
        content = [
            _ndjson({**base, "message": {"role": "assistant", "content": p}, "done": False})
            for p in pieces
        ]
    tail = [
        _ndjson(
            {
                **base,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": tokens_in,
                "eval_count": tokens_out,
            }
        )
    ]
    return Frames("application/x-ndjson", [], content, tail)  # fmt: skip


def stream_error(wire: str) -> bytes:
    """An error event in the middle of a stream, as each provider sends one."""
    if wire == "anthropic":
        return _sse({"type": "error", "error": {"type": "overloaded_error",
                                                "message": "Overloaded"}}, "error")  # fmt: skip
    if wire == "openai":
        return _sse({"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "code": None}})  # fmt: skip
    return _ndjson({"error": "model runner has unexpectedly stopped"})


def garbled(wire: str) -> bytes:
    """A frame that is not what the protocol promises (broken JSON)."""
    return b'{"model": "sim", "message": {"content": \n' if wire == "ollama" else b"data: {oops\n\n"


async def write_stream(
    writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
    wire: str,
    b: Behaviour,
    model: str,
    pause: Callable[[asyncio.StreamReader, float], Awaitable[None]],
) -> bool:
    """Write a streamed reply (chunked transfer), with the behaviour's stream fault; False
    when the connection is to close. ``pause`` waits (and sees a client hang up)."""
    tool = (b.tool, dict(b.arguments)) if b.kind == "tool_call" else None
    parts = frames(wire, b.text, b.model or model, b.chunks, (b.tokens_in, b.tokens_out), tool)
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: {parts.content_type}\r\n"
        "transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
    )
    writer.write(head.encode("latin-1"))

    async def send(frame: bytes) -> None:
        writer.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        await writer.drain()

    for frame in parts.head:
        await send(frame)
    if b.first_token_delay:
        await pause(reader, b.first_token_delay)
    for index, frame in enumerate(parts.content):
        if index == b.cut_after:
            return False  # the connection closes mid-stream
        if index == b.stall_after:
            await reader.read()  # nothing more, until the client gives up
            return False
        if index == b.error_after:
            await send(stream_error(wire))
            await send(b"")
            return True
        if index == b.garble_after:
            await send(garbled(wire))
            await send(b"")
            return True
        if index and b.chunk_interval:
            await asyncio.sleep(b.chunk_interval)
        await send(frame)
    for frame in parts.tail:
        await send(frame)
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True
