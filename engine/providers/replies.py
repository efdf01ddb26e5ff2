"""Reading a reply's body as it arrives: each raw read bounded by a deadline that moves as
deltas arrive, streams split into events and parsed up to their end marker and never past
it, and a whole reply that is a stream of events read the same way."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import httpx

from engine.errors import AIResponseError, ProviderError
from engine.providers.body import BodyReader
from engine.providers.framing import EventReader
from engine.providers.mapping import error_for_event
from engine.providers.network import deadline
from engine.providers.streamwire import STREAM_PARSERS, ErrorEvent, StreamParser
from engine.types.completion import Completion
from engine.types.deltas import Delta

if TYPE_CHECKING:  # the provider these serve, as they see it
    from engine.providers.endpoint import HTTPEndpoint


def _in_memory(response: httpx.Response) -> bool:
    return response.is_stream_consumed


def _is_stream(response: httpx.Response, wire: str) -> bool:
    return is_stream_reply(response.headers, wire)


def is_stream_reply(headers: Mapping[str, str], wire: str) -> bool:
    """Whether a reply to a streamed request is the stream ``wire`` sends (its type)."""
    kind = headers.get("content-type", "")
    return "ndjson" in kind if wire == "ollama" else "text/event-stream" in kind


def _is_event_body(headers: Mapping[str, str]) -> bool:
    """Whether a whole reply is a stream of events (a server that streams although it was
    not asked to): it is then read by the stream parser, to the same answer."""
    kind = headers.get("content-type", "")
    return "text/event-stream" in kind or "ndjson" in kind


def _parser(wire: str) -> StreamParser:
    return STREAM_PARSERS[wire]()


def _feed_events(parser: StreamParser, events: EventReader, data: bytes) -> Iterator[Delta]:
    """The deltas of the next piece of a stream's body, up to its end marker."""
    for event, payload in events.feed(data):
        yield from parser.feed(event, payload)
        if parser.ended:
            return


def _close_events(parser: StreamParser, events: EventReader) -> Iterator[Delta]:
    """The deltas of what was pending when the body ended."""
    for event, payload in events.close():
        yield from parser.feed(event, payload)
        if parser.ended:
            return


def _read_events(
    parser: StreamParser, events: EventReader, chunks: Iterable[bytes]
) -> Iterator[Delta]:
    """The deltas of a stream's body, read up to its end marker and never past it."""
    # Each chunk's events are walked here, not by _feed_events: one generator less per
    # streamed chunk.
    for data in chunks:
        for event, payload in events.feed(data):
            yield from parser.feed(event, payload)
            if parser.ended:
                return
    yield from _close_events(parser, events)


async def _aread_events(
    parser: StreamParser, events: EventReader, chunks: AsyncIterator[bytes]
) -> AsyncIterator[Delta]:
    """The async twin of `_read_events`."""
    async for data in chunks:
        for event, payload in events.feed(data):
            for delta in parser.feed(event, payload):
                yield delta
            if parser.ended:
                return
    for delta in _close_events(parser, events):
        yield delta


def _with_model(completion: Completion, model: str | None) -> Completion:
    return completion if completion.model else dataclasses.replace(completion, model=model)


class _Paced(httpx.SyncByteStream):
    """A reply's decoded bytes, each raw read bounded by ``at`` (moved as deltas arrive)."""

    def __init__(self, response: httpx.Response, reader: BodyReader, at: float) -> None:
        self.response, self.reader, self.at = response, reader, at

    def __iter__(self) -> Iterator[bytes]:
        if _in_memory(self.response):
            yield self.reader.take(self.response.content)
            return
        raw = self.response.iter_raw()
        while True:
            with deadline(self.at):
                chunk = next(raw, None)
            if chunk is None:
                return
            data = self.reader.take(chunk)
            if data:
                yield data


class _APaced(httpx.AsyncByteStream):
    """The async twin of `_Paced`."""

    def __init__(self, response: httpx.Response, reader: BodyReader, at: float) -> None:
        self.response, self.reader, self.at = response, reader, at

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if _in_memory(self.response):
            yield self.reader.take(self.response.content)
            return
        raw = self.response.aiter_raw()
        while True:
            async with asyncio.timeout(max(self.at - time.monotonic(), 0)):
                chunk = await anext(raw, None)
            if chunk is None:
                return
            data = self.reader.take(chunk)
            if data:
                yield data


class _EventBody:
    """A whole reply that is a stream of events, read as it arrives and only up to its end
    marker (a server may hold the connection open after it)."""

    def __init__(self, wire: str, provider: str) -> None:
        self.parser = _parser(wire)
        self.events = EventReader(self.parser.framing, provider)

    def feed(self, data: bytes) -> bool:
        """Read the next decoded bytes; true once the end marker was read."""
        for _ in _feed_events(self.parser, self.events, data):
            pass
        return self.parser.ended

    def close(self) -> Completion:
        """The answer (the body ended, or its end marker was read)."""
        if not self.parser.ended:
            for _ in _close_events(self.parser, self.events):
                pass
        return self.parser.finish()


def owned(provider: HTTPEndpoint, exc: BaseException, status: int | None) -> BaseException:
    """An outcome raised while reading a reply, named after this provider and carrying
    the reply's status (error events mapped as the same error sent as a reply)."""
    if isinstance(exc, ErrorEvent):
        return error_for_event(exc.payload, provider.wire, provider.name, provider.secrets, status)
    if isinstance(exc, ProviderError | AIResponseError):
        if exc.provider is None:
            return type(exc)(
                f"{provider.name}: {exc}", code=exc.code, provider=provider.name, http_status=status
            )
        exc.http_status = status
    return exc


def fed(reader: BodyReader, events: _EventBody | None, chunk: bytes) -> bool:
    """Feed one chunk of a reply's body (through ``events`` when the reply is a stream of
    events); True when nothing more is to be read: the events' end marker, or the body's
    size bound."""
    if events is not None:
        return events.feed(reader.take(chunk))
    reader.feed(chunk)
    return reader.full


def event_body(provider: HTTPEndpoint, response: httpx.Response) -> _EventBody | None:
    """A reader for a successful reply that is a stream of events, else None."""
    return event_reader(provider, response.status_code, response.headers)


def event_reader(
    provider: HTTPEndpoint, status: int, headers: Mapping[str, str]
) -> _EventBody | None:
    """A reader for a successful reply (``status``, ``headers``) that is a stream of
    events, else None."""
    if status >= 300 or not _is_event_body(headers):
        return None
    return _EventBody(provider.wire.name, provider.name)


def read_event_body(
    provider: HTTPEndpoint, status: int, body: _EventBody | bytes, model: str | None
) -> Completion:
    try:
        if isinstance(body, bytes):
            whole = _EventBody(provider.wire.name, provider.name)
            whole.feed(body)
            body = whole
        completion = body.close()
    except (ErrorEvent, ProviderError, AIResponseError) as exc:
        found = owned(provider, exc, status)
        if found is exc:
            raise
        raise found from None
    return provider.priced(_with_model(completion, model or provider.model))
