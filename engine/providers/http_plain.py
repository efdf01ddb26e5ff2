"""A whole reply over httpx, for `HTTPProvider`: the sync path
(its one ``httpx.Client``, every socket read bounded by the attempt's deadline) and the
async path over httpx's own pool (``async_transport: httpx``). The async transports that
post directly (asyncio, aiohttp) are `engine.providers.http_aio`'s; streams are
`engine.providers.http_stream`'s. Every path reads the body as it arrives, up to its
bound or its end marker, and nothing after it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httpx

from engine.providers import replies
from engine.providers.exchange import Exchange
from engine.providers.leftover import aclose_if_leftover, close_if_leftover
from engine.providers.mapping import attempt_timeout
from engine.providers.network import deadline
from engine.providers.replies import _in_memory
from engine.types.completion import Completion
from engine.types.request import ChatRequest

if TYPE_CHECKING:  # the provider these serve, as they see it
    from engine.providers.endpoint import HTTPEndpoint

__all__ = ["achat", "chat"]


def chat(
    provider: HTTPEndpoint, request: ChatRequest, timeout: float, model: str | None
) -> Completion:
    """Answer ``request`` synchronously; the attempt ends within ``timeout`` seconds,
    whatever the server does."""
    ends = time.monotonic() + timeout
    client = provider.sync_client()
    body = provider.request_body(request, model)
    provider.check_configured()  # before queueing: a missing key needs no slot
    provider.bulkhead.acquire(timeout)  # the wait counts against the attempt's time
    with Exchange(provider, timeout) as exchange:
        request_out = provider.httpx_request(body, ends - time.monotonic())
        with deadline(ends):
            response = exchange.response = client.send(request_out, stream=True)
            exchange.phase = "body"
            try:
                reader = provider.reader_for(response)
                events = replies.event_body(provider, response)
                chunks = [response.content] if _in_memory(response) else response.iter_raw()
                for chunk in chunks:
                    if events is not None:
                        if events.feed(reader.take(chunk)):
                            break  # the end marker: nothing after it is read
                        continue
                    reader.feed(chunk)
                    if reader.full:
                        break
                    if time.monotonic() > ends:  # for transports without our network
                        raise attempt_timeout(provider.name, timeout, exchange.phase)
            finally:
                response.close()
                close_if_leftover(response)
    if events is not None:
        return replies.read_event_body(provider, response.status_code, events, model)
    return provider.finish_reply(
        response.status_code, response.headers, reader.finish(), model, reader.unreadable
    )


async def achat(
    provider: HTTPEndpoint,
    transport: httpx.AsyncBaseTransport,
    body: bytes,
    ends: float,
    timeout: float,
    model: str | None,
) -> Completion:
    """Post ``body`` over httpx's async ``transport`` (the bulkhead slot already taken)."""
    with Exchange(provider, timeout) as exchange:
        left = ends - time.monotonic()
        request_out = provider.httpx_request(body, left)
        async with asyncio.timeout(left):
            response = exchange.response = await transport.handle_async_request(request_out)
            exchange.phase = "body"
            try:
                reader = provider.reader_for(response)
                events = replies.event_body(provider, response)
                if _in_memory(response):
                    if events is not None:
                        events.feed(reader.take(response.content))
                    else:
                        reader.feed(response.content)
                else:
                    async for chunk in response.aiter_raw():
                        if replies.fed(reader, events, chunk):
                            break  # the end marker or the bound: nothing more is read
            finally:
                await response.aclose()
                await aclose_if_leftover(response)
    if events is not None:
        return replies.read_event_body(provider, response.status_code, events, model)
    return provider.finish_reply(
        response.status_code, response.headers, reader.finish(), model, reader.unreadable
    )
