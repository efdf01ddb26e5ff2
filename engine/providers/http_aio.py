"""The async hot path of an HTTP provider: a call that is not streamed, sent straight
through aiohttp (the default async transport), with no httpx request or response built.

It reads exactly as the httpx path does (:meth:`HTTPProvider.achat`): the same bounded,
decoding body reader, the same reading of a reply that streams although it was not asked
to, the same error mapping (aiohttp's errors become httpx's, then outcomes, in
:class:`~engine.providers.exchange.Exchange`), the same bound on the whole attempt.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING

import httpx

from engine.providers import replies
from engine.providers.aio import AiohttpTransport, finish, read_raw
from engine.providers.exchange import Exchange
from engine.types.completion import Completion

if TYPE_CHECKING:
    from engine.providers.http import HTTPProvider

__all__ = ["achat"]


async def achat(
    provider: HTTPProvider,
    transport: httpx.AsyncBaseTransport,
    body: bytes,
    ends: float,
    timeout: float,
    model: str | None,
) -> Completion:
    """Send ``body`` and read the answer, within ``ends`` (``time.monotonic``); the
    provider's bulkhead slot is taken already (the exchange gives it back)."""
    assert isinstance(transport, AiohttpTransport)
    with Exchange(provider, timeout) as exchange:
        left = ends - time.monotonic()
        # Connecting gets at most 90% of the attempt (as on the httpx path).
        connect = min(provider.connect_timeout, 0.9 * left)
        async with asyncio.timeout(left):
            response = await transport.post(provider._url, body, connect)
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
    return provider._finish(status, headers, reader.finish(), model)
