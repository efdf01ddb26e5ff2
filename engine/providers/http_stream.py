"""Streaming over HTTP, for `HTTPProvider`'s ``stream`` and
``astream``: every socket read bounded by the first-token deadline until the first
delta, then by the idle timeout, and always by the stream's whole deadline."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TYPE_CHECKING

import httpx

from engine.providers.exchange import Exchange
from engine.providers.framing import EventReader
from engine.providers.leftover import aclose_if_leftover, close_if_leftover
from engine.providers.network import deadline
from engine.providers.replies import (
    _APaced,
    _aread_events,
    _in_memory,
    _is_stream,
    _Paced,
    _parser,
    _read_events,
    _with_model,
)
from engine.providers.streamwire import deltas_of
from engine.types.completion import Completion
from engine.types.deltas import Delta
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

if TYPE_CHECKING:  # the provider these serve, as they see it
    from engine.providers.endpoint import HTTPEndpoint

__all__ = ["astream", "stream"]


def stream(
    self: HTTPEndpoint,
    *,
    request: ChatRequest,
    timeouts: StreamTimeouts,
    model: str | None = None,
) -> Iterator[Delta | Completion]:
    """Stream the answer to ``request`` synchronously: text and tool-call deltas as they
    arrive, then the whole `Completion`. Every socket read is bounded: by the
    first-token deadline until the first delta, then by the idle timeout (and always by
    the stream's whole deadline). Closing the iterator closes the connection."""
    started = time.monotonic()
    first_by = started + timeouts.first_token
    ends = started + timeouts.total
    client = self.sync_client()
    body = self.request_body(request, model, stream=True)
    self.check_configured()
    self.bulkhead.acquire(timeouts.first_token)
    exchange = Exchange(self, timeouts.total, timeouts)
    try:
        with exchange:
            out = self.httpx_request(body, first_by - time.monotonic())
            with deadline(first_by):
                response = exchange.response = client.send(out, stream=True)
            exchange.phase = "body"
            reader = self.reader_for(response)
            if response.status_code >= 300 or not _is_stream(response, self.wire.name):
                with deadline(ends):
                    for chunk in response.iter_raw():
                        reader.feed(chunk)
                        if reader.full:
                            break
                whole = self.finish_reply(
                    response.status_code, response.headers, reader.finish(), model,
                    reader.unreadable,
                )  # fmt: skip
                yield from deltas_of(whole)  # a server that answered all at once
                yield whole
                return
            paced = _Paced(response, reader, first_by)
            parser = _parser(self.wire.name)
            events = EventReader(parser.framing, self.name)
            try:
                for delta in _read_events(parser, events, paced):
                    exchange.delivered = True
                    yield delta
                    # Idle time is time waiting on the network: it starts when the caller
                    # is back for more, not while it holds the chunk it was given.
                    paced.at = min(time.monotonic() + timeouts.idle, ends)
            except (httpx.HTTPError, TimeoutError):
                if not parser.complete:  # the completion signal came: the answer is whole
                    raise
            yield self.priced(_with_model(parser.finish(), model or self.model))
    finally:
        if exchange.response is not None:
            exchange.response.close()
            close_if_leftover(exchange.response)


def astream(
    self: HTTPEndpoint,
    *,
    request: ChatRequest,
    timeouts: StreamTimeouts,
    model: str | None = None,
) -> AsyncGenerator[Delta | Completion, None]:
    """The async twin of `stream`: posted straight through the provider's transport
    (asyncio's, the default, or aiohttp's: `engine.providers.http_aio.astream`), or
    through httpx's pool."""
    transport = self.async_transports.get()
    if hasattr(transport, "post"):
        return _posting_astream()(self, transport, request, timeouts, model)
    return _httpx_astream(self, transport, request, timeouts, model)


@functools.cache
def _posting_astream() -> Callable[..., AsyncGenerator[Delta | Completion, None]]:
    # Imported on the first async stream (not by an import statement on every one).
    from engine.providers.http_aio import astream

    return astream


async def _httpx_astream(
    self: HTTPEndpoint,
    transport: httpx.AsyncBaseTransport,
    request: ChatRequest,
    timeouts: StreamTimeouts,
    model: str | None,
) -> AsyncGenerator[Delta | Completion, None]:
    started = time.monotonic()
    first_by = started + timeouts.first_token
    ends = started + timeouts.total
    body = self.request_body(request, model, stream=True)
    self.check_configured()
    await self.bulkhead.aacquire(timeouts.first_token)
    exchange = Exchange(self, timeouts.total, timeouts)
    try:
        with exchange:
            out = self.httpx_request(body, first_by - time.monotonic())
            async with asyncio.timeout(max(first_by - time.monotonic(), 0)):
                response = exchange.response = await transport.handle_async_request(out)
            exchange.phase = "body"
            reader = self.reader_for(response)
            if response.status_code >= 300 or not _is_stream(response, self.wire.name):
                async with asyncio.timeout(max(ends - time.monotonic(), 0)):
                    if _in_memory(response):
                        reader.feed(response.content)
                    else:
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                            if reader.full:
                                break
                whole = self.finish_reply(
                    response.status_code, response.headers, reader.finish(), model,
                    reader.unreadable,
                )  # fmt: skip
                for delta in deltas_of(whole):
                    yield delta
                yield whole
                return
            paced = _APaced(response, reader, first_by)
            parser = _parser(self.wire.name)
            events = EventReader(parser.framing, self.name)
            try:
                async for delta in _aread_events(parser, events, aiter(paced)):
                    exchange.delivered = True
                    yield delta
                    paced.at = min(time.monotonic() + timeouts.idle, ends)  # see stream()
            except (httpx.HTTPError, TimeoutError):
                if not parser.complete:  # the completion signal came: the answer is whole
                    raise
            yield self.priced(_with_model(parser.finish(), model or self.model))
    finally:
        if exchange.response is not None:
            await exchange.response.aclose()
            await aclose_if_leftover(exchange.response)
