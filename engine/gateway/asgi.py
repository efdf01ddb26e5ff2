"""The little of ASGI the gateway needs, written once: a bounded request body, a JSON reply,
the start of a streamed one, and a call raced against the client hanging up.

Bounds: a body larger than the limit is refused as soon as it is (413, nothing more is
read), headers larger in all than their limit are refused (431), a JSON body nested deeper
than any real request is refused (400): each with one line saying which.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, TypeVar

from engine.core.request_check import MAX_JSON_DEPTH, strict_json
from engine.errors import TorqError
from engine.gateway.failures import GatewayError

__all__ = ["Receive", "Send", "header_value", "read_json", "reply", "start", "until_hangup"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_T = TypeVar("_T")

_JSON: Final = (b"content-type", b"application/json")
_SSE: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def check_headers(scope: Scope, limit: int) -> dict[bytes, bytes]:
    """The request's headers, by lower-case name (a repeated one keeps its last value);
    a 431 when they are larger in all than ``limit`` bytes."""
    raw = scope.get("headers") or []
    size = sum(len(name) + len(value) + 4 for name, value in raw)
    if size > limit:
        raise GatewayError(
            431, "headers_too_large", f"request headers are {size} bytes; the limit is {limit}"
        )
    return {bytes(name).lower(): bytes(value) for name, value in raw}


async def read_json(receive: Receive, limit: int, declared: bytes | None) -> Any:
    """The request body as JSON, at most ``limit`` bytes (a 413 as soon as it is over)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError  # the client left before sending its request
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(body)
        if not message.get("more_body"):
            break
    try:
        data = json.loads(b"".join(chunks))
    except RecursionError:
        raise GatewayError(
            400, "invalid_json", f"the body is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:
        raise GatewayError(400, "invalid_json", f"the body is not JSON: {exc}") from None
    try:
        strict_json(data, "body")
    except (TypeError, ValueError) as exc:
        raise GatewayError(400, "invalid_json", str(exc)) from None
    return data


def _too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        413, "request_too_large", f"the request body is over {limit} bytes ({size} so far)"
    )


def header_value(text: object) -> bytes:
    """A header value from text: printable ASCII only (nothing else can break the head)."""
    value = str(text)
    if value.isascii() and value.isprintable():  # the usual: nothing to take out
        return value[:512].encode("ascii")
    return "".join(c for c in value if " " <= c <= "~")[:512].encode("ascii")


async def reply(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A whole JSON reply."""
    data = json.dumps(body).encode()
    head = [_JSON, (b"content-length", str(len(data)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


async def start(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    """The head of a 200 event stream."""
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE, *headers]})


async def until_hangup(receive: Receive, work: Awaitable[_T]) -> tuple[bool, _T | None]:
    """Run ``work`` until it ends or the client hangs up, whichever is first: on a hang-up
    ``work`` is cancelled (every attempt in flight with it, their connections closed) and
    ``(True, None)`` returned. ``work``'s own exceptions propagate.

    ``work`` runs in the request's own task; only the listener is a task of its own (a task
    and an ``asyncio.wait`` per request were a tenth of the gateway's own time)."""
    current = asyncio.current_task()
    assert current is not None
    state = {"hung": False, "over": False}

    def heard(listener: asyncio.Future[None]) -> None:
        if state["over"] or listener.cancelled() or listener.exception() is not None:
            return
        state["hung"] = True
        current.cancel()

    listener = asyncio.ensure_future(_disconnected(receive))
    listener.add_done_callback(heard)
    try:
        result = await work
    except (asyncio.CancelledError, TorqError):
        if not state["hung"]:
            raise
        current.uncancel()  # the cancel was ours: the client is gone, nothing else asked
        return True, None  # the chain's own record says how its attempts ended
    finally:
        state["over"] = True
        listener.remove_done_callback(heard)
        listener.cancel()
    return False, result


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
