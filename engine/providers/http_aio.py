"""The async hot path of an HTTP provider: calls posted straight through a
`PostTransport` (HTTP/1.1 on asyncio, the default, or
aiohttp), with no httpx request or response built; plain and streamed.

They read exactly as the httpx path does (`HTTPProvider.achat`,
`engine.providers.http_stream.astream`): the same bounded, decoding body reader, the
same reading of a reply that streams although it was not asked to, the same stream parsers
with the same per-read bounds (first token, then idle, always the whole deadline), the same
error mapping (the transports raise httpx's errors, which become outcomes in
`Exchange`), the same bound on the whole attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from functools import partial
from typing import TYPE_CHECKING

import httpx

from engine.providers import replies
from engine.providers.areply import PacedBody, PostTransport, finish, read_raw
from engine.providers.body import BodyReader
from engine.providers.exchange import Exchange
from engine.providers.framing import EventReader
from engine.providers.streamwire import deltas_of
from engine.types.completion import Completion
from engine.types.deltas import Delta
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

if TYPE_CHECKING:  # the provider these serve, as they see it
    from engine.providers.endpoint import HTTPEndpoint

__all__ = ["achat", "astream"]


async def achat(
    provider: HTTPEndpoint,
    transport: PostTransport,
    body: bytes,
    ends: float,
    timeout: float,
    model: str | None,
) -> Completion:
    """Send ``body`` and read the answer, within ``ends`` (``time.monotonic``); the
    provider's bulkhead slot is taken already (the exchange gives it back)."""
    with Exchange(provider, timeout) as exchange:
        left = ends - time.monotonic()
        # Connecting gets at most 90% of the attempt (as on the httpx path).
        connect = min(provider.connect_timeout, 0.9 * left)
        async with asyncio.timeout(left):
            response = await transport.post(provider.url, body, connect)
            status = exchange.status = response.status
            headers = response.headers
            exchange.phase = "body"
            try:
                reader = provider.body_reader(status, headers.get("content-encoding"))
                events = replies.event_reader(provider, status, headers)
                # Until the end marker or the bound: nothing more is read.
                await read_raw(response, partial(replies.fed, reader, events))
            finally:
                finish(response)
    if events is not None:
        return replies.read_event_body(provider, status, events, model)
    return provider.finish_reply(status, headers, reader.finish(), model, reader.unreadable)


async def astream(
    provider: HTTPEndpoint,
    transport: PostTransport,
    request: ChatRequest,
    timeouts: StreamTimeouts,
    model: str | None,
) -> AsyncGenerator[Delta | Completion, None]:
    """Stream the answer to ``request`` (see `engine.providers.http_stream.astream`)."""
    started = time.monotonic()
    first_by = started + timeouts.first_token
    ends = started + timeouts.total
    body = provider.request_body(request, model, stream=True)
    provider.check_configured()
    await provider.bulkhead.aacquire(timeouts.first_token)
    exchange = Exchange(provider, timeouts.total, timeouts)
    response = None
    try:
        with exchange:
            left = first_by - time.monotonic()
            connect = min(provider.connect_timeout, 0.9 * left)
            async with asyncio.timeout(max(left, 0)):
                response = await transport.post(provider.url, body, connect)
            status = exchange.status = response.status
            headers = response.headers
            exchange.phase = "body"
            reader = provider.body_reader(status, headers.get("content-encoding"))
            if status >= 300 or not replies.is_stream_reply(headers, provider.wire.name):
                async with asyncio.timeout(max(ends - time.monotonic(), 0)):
                    await read_raw(response, partial(_fill, reader))
                whole = provider.finish_reply(
                    status, headers, reader.finish(), model, reader.unreadable
                )
                for delta in deltas_of(whole):  # a server that answered all at once
                    yield delta
                yield whole
                return
            paced = PacedBody(response, reader.take, first_by)
            parser = replies._parser(provider.wire.name)
            events = EventReader(parser.framing, provider.name)
            try:
                async for delta in replies._aread_events(parser, events, paced):
                    exchange.delivered = True
                    yield delta
                    # see engine.providers.http_stream.stream: idle time starts when the
                    # caller is back for more
                    paced.at = min(time.monotonic() + timeouts.idle, ends)
            except (httpx.HTTPError, TimeoutError):
                if not parser.complete:  # the completion signal came: the answer is whole
                    raise
            yield provider.priced(replies._with_model(parser.finish(), model or provider.model))
    finally:
        if response is not None:
            finish(response)


def _fill(reader: BodyReader, chunk: bytes) -> bool:
    reader.feed(chunk)
    return reader.full
