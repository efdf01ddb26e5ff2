"""What an async transport hands back, and the three ways the provider reads it.

An async transport (`engine.providers.h1`, the default, or
`engine.providers.aio`) posts a body and returns an `AsyncReply` once the
reply's head has come: its status, its headers (looked up by lower-case name), and its
body as it arrives. Every fault it raises is an httpx exception (``ConnectError``,
``ReadError``, ...), so one table maps faults onto outcomes whichever transport carried the
call (`engine.providers.mapping.error_for_transport`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx

__all__ = ["AsyncReply", "BodyStream", "PacedBody", "PostTransport", "finish", "read_raw"]


class BodyStream(Protocol):
    """A reply's body as it arrives."""

    async def readany(self) -> bytes:
        """The bytes that came since the last read (waiting for some); ``b""`` at the end."""
        ...

    def is_eof(self) -> bool:
        """Whether the whole body has come."""
        ...


class AsyncReply(Protocol):
    """A reply whose head has come."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> BodyStream: ...

    def release(self) -> object:
        """Let the reply go once its body was read to the end (the connection is reused)."""
        ...

    def close(self) -> object:
        """Let the reply go now (its connection is closed)."""
        ...


class PostTransport(Protocol):
    """An async transport that posts straight to a URL (no httpx request is built)."""

    async def post(self, url: httpx.URL, body: bytes, connect: float) -> AsyncReply:
        """POST ``body`` to ``url`` with the provider's headers; ``connect`` bounds
        connecting (the caller bounds the whole exchange)."""
        ...

    async def aclose(self) -> None: ...


async def read_raw(response: AsyncReply, feed: Callable[[bytes], bool]) -> None:
    """Hand a reply's raw bytes to ``feed`` as they arrive, until it returns True or the
    body ends. (A plain loop: an async generator per reply costs the event loop's generator
    hooks on every call.)"""
    content = response.content
    while chunk := await content.readany():
        if feed(chunk):
            return


class PacedBody:
    """A reply's raw bytes as they arrive, each read bounded by ``at`` (a
    ``time.monotonic`` deadline its reader moves as deltas are handed over), each chunk
    passed through ``take`` (decoding, the size bound) and skipped when that leaves nothing.
    A class, not an async generator: it runs once per chunk."""

    def __init__(self, response: AsyncReply, take: Callable[[bytes], bytes], at: float) -> None:
        self._content = response.content
        self._take = take
        self.at = at

    def __aiter__(self) -> PacedBody:
        return self

    async def __anext__(self) -> bytes:
        while True:
            async with asyncio.timeout(max(self.at - time.monotonic(), 0)):
                chunk = await self._content.readany()
            if not chunk:
                raise StopAsyncIteration
            data = self._take(chunk)
            if data:
                return data


def finish(response: AsyncReply) -> None:
    """Let a reply go: its connection is reused when the body came to the end."""
    if response.content.is_eof():
        response.release()
    else:
        response.close()  # abandoned midway: the connection cannot be reused
