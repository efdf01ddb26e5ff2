"""A provider that speaks one wire protocol over HTTP, with httpx, sync and async.

One ``httpx.Client`` and one ``httpx.AsyncClient`` per provider, created on first use and
reused (connection pooling), closed by :meth:`HTTPProvider.close` / :meth:`aclose`. httpx
retries nothing (``retries=0``): the chain is the only retry layer.

Timeouts: every attempt ends within its timeout whatever the server does, in every phase
(connect, TLS, headers, body): async attempts under ``asyncio.timeout``, sync ones through a
network layer that gives each socket operation only the time left
(:mod:`engine.providers.network`). A cut-off attempt is named after where it was:
``connect_timeout`` (connecting), ``read_timeout`` (request sent, no complete reply head
yet), ``attempt_timeout`` (the reply started but did not finish).

Size: a reply is read raw and decoded under the provider's ``max_response_bytes``
(:mod:`engine.providers.body`); a larger one ends the attempt as ``response_too_large``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import httpx

from ..classify import Completion
from ..errors import AIResponseError, ProviderError
from ..request import ChatRequest
from .body import ACCEPT_ENCODING, ERROR_BODY_BYTES, BodyReader
from .bulkhead import Bulkhead
from .clients import LoopClients
from .framing import EventReader
from .mapping import attempt_timeout, error_for_event, error_for_status, error_for_transport
from .network import deadline, sync_transport
from .secrets import excerpt, install_log_filter
from .settings import Resolved
from .streamwire import STREAM_PARSERS, Delta, ErrorEvent, StreamParser, deltas_of
from .timeouts import StreamTimeouts, stream_timeout
from .wire import WIRES

__all__ = ["HTTPProvider"]


@functools.cache
def _tls() -> ssl.SSLContext:
    # Building a TLS context (loading the CA bundle) costs ~20 ms; every client shares one.
    # httpx's own helper keeps its defaults (certifi, SSL_CERT_FILE / SSL_CERT_DIR).
    return httpx.create_ssl_context()


def _in_memory(response: httpx.Response) -> bool:
    return response.is_stream_consumed


def _is_stream(response: httpx.Response, wire: str) -> bool:
    kind = response.headers.get("content-type", "")
    return "ndjson" in kind if wire == "ollama" else "text/event-stream" in kind


def _is_event_body(headers: httpx.Headers) -> bool:
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
    for data in chunks:
        yield from _feed_events(parser, events, data)
        if parser.ended:
            return
    yield from _close_events(parser, events)


async def _aread_events(
    parser: StreamParser, events: EventReader, chunks: AsyncIterator[bytes]
) -> AsyncIterator[Delta]:
    """The async twin of :func:`_read_events`."""
    async for data in chunks:
        for delta in _feed_events(parser, events, data):
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
    """The async twin of :class:`_Paced`."""

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


class HTTPProvider:
    """An LLM provider over HTTP. ``generate_response`` is sync, ``agenerate_response``
    async; both return a :class:`~engine.classify.Completion` or raise an outcome error.

    ``transport`` / ``async_transport`` replace httpx's network layer (for
    ``httpx.MockTransport`` in wire-format tests).
    """

    #: The provider enforces the attempt timeout itself, naming where it was cut off; the
    #: executor's outer bound leaves it a moment to do so.
    bounds_own_timeout = True

    def __init__(
        self,
        resolved: Resolved,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = resolved.settings
        self.name = settings.name
        self.kind = settings.kind
        self.model = settings.model
        self.base_url = resolved.base_url
        self.wire = WIRES[settings.kind]
        self.connect_timeout = settings.connect_timeout
        self.max_response_bytes = settings.max_response_bytes
        #: In-flight limit, in front of the connection pool (which is sized to match).
        self.bulkhead = Bulkhead(settings.name, settings.max_in_flight, settings.max_queue)
        self._limits = httpx.Limits(
            max_connections=settings.max_in_flight,
            max_keepalive_connections=settings.max_in_flight,
        )
        self._resolved = resolved
        # Parsed once: a request is built from these without re-reading strings.
        self._url = httpx.URL(resolved.base_url + self.wire.path)
        self._headers = httpx.Headers(
            {
                "accept": "application/json",
                "content-type": "application/json",
                "accept-encoding": ACCEPT_ENCODING,
                "user-agent": "torq-fallback",
                **self.wire.headers(resolved.api_key if resolved.unusable is None else None),
                **(resolved.headers if resolved.unusable is None else {}),
            }
        )
        self._secrets = resolved.secrets
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._aclients: LoopClients[httpx.AsyncBaseTransport] = LoopClients(
            self._new_async_transport
        )
        install_log_filter()

    def __repr__(self) -> str:
        return f"HTTPProvider({self.name!r}, kind={self.kind!r}, base_url={self.base_url!r})"

    @property
    def configured(self) -> bool:
        """Whether the provider has what it needs (a usable API key, when it uses one)."""
        if self._resolved.unusable is not None:
            return False
        return self._resolved.api_key is not None or self._resolved.settings.api_key_env is None

    def _check_configured(self) -> None:
        if self._resolved.unusable is not None:
            raise ProviderError(
                f"{self.name}: {self._resolved.unusable}; fix the variable",
                code="not_configured",
                provider=self.name,
            )
        if not self.configured:
            raise ProviderError(
                f"{self.name}: {self._resolved.settings.api_key_env} is not set",
                code="not_configured",
                provider=self.name,
            )

    def _request(self, body: bytes, timeout: float) -> httpx.Request:
        """The request both shells send."""
        # Connecting gets at most 90% of the attempt, so that a connection that never
        # completes ends as connect_timeout before the attempt's own bound fires.
        connect = min(self.connect_timeout, 0.9 * timeout)
        return httpx.Request(
            "POST",
            self._url,
            headers=self._headers,
            content=body,
            extensions={
                "timeout": {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
            },
        )

    def _body(self, request: ChatRequest, model: str | None, stream: bool = False) -> bytes:
        """The JSON body (raises ``unsupported_request`` for what the wire cannot say)."""
        try:
            data = self.wire.body(request, model or self.model)
        except ProviderError as exc:
            raise ProviderError(f"{self.name}: {exc}", code=exc.code, provider=self.name) from None
        field = self._resolved.settings.max_tokens_field
        if field != "max_tokens" and "max_tokens" in data and self.wire.name == "openai":
            data[field] = data.pop("max_tokens")
        if stream:
            data["stream"] = True
            if self.wire.name == "openai":  # the token counts come in a last chunk
                data["stream_options"] = {"include_usage": True}
        # Strict JSON: NaN and infinities are not JSON (the request was checked before its
        # first attempt; this only guards providers used directly).
        return json.dumps(data, allow_nan=False).encode()

    def _reader(self, response: httpx.Response) -> BodyReader:
        """A bounded reader for ``response``'s body (error bodies: only their start)."""
        # A response built in memory (httpx.MockTransport) arrives already read and decoded.
        encoding = None if _in_memory(response) else response.headers.get("content-encoding")
        if response.status_code >= 300:
            limit = min(self.max_response_bytes, ERROR_BODY_BYTES)
            return BodyReader(limit, encoding, self.name, truncate=True)
        return BodyReader(self.max_response_bytes, encoding, self.name)

    def _owned(self, exc: BaseException, status: int | None) -> BaseException:
        """An outcome raised while reading a reply, named after this provider and carrying
        the reply's status (error events mapped as the same error sent as a reply)."""
        if isinstance(exc, ErrorEvent):
            return error_for_event(exc.payload, self.wire, self.name, self._secrets, status)
        if isinstance(exc, ProviderError | AIResponseError):
            if exc.provider is None:
                return type(exc)(
                    f"{self.name}: {exc}", code=exc.code, provider=self.name, http_status=status
                )
            exc.http_status = status
        return exc

    def _event_body(self, response: httpx.Response) -> _EventBody | None:
        """A reader for a successful reply that is a stream of events, else None."""
        if response.status_code >= 300 or not _is_event_body(response.headers):
            return None
        return _EventBody(self.wire.name, self.name)

    def _read_event_body(
        self, status: int, body: _EventBody | bytes, model: str | None
    ) -> Completion:
        try:
            if isinstance(body, bytes):
                whole = _EventBody(self.wire.name, self.name)
                whole.feed(body)
                body = whole
            completion = body.close()
        except (ErrorEvent, ProviderError, AIResponseError) as exc:
            owned = self._owned(exc, status)
            if owned is exc:
                raise
            raise owned from None
        return self._priced(_with_model(completion, model or self.model))

    def _finish(
        self, status: int, headers: httpx.Headers, body: bytes, model: str | None
    ) -> Completion:
        if status >= 300:
            raise error_for_status(status, headers, body, self.wire, self.name, self._secrets)
        if _is_event_body(headers):
            return self._read_event_body(status, body, model)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
            text = excerpt(body[:400].decode("utf-8", "replace"), 80, self._secrets)
            raise ProviderError(
                f"{self.name}: reply is {why}: {text!r}",
                code="malformed_response",
                provider=self.name,
                http_status=status,
            ) from None
        try:
            completion = self.wire.completion(data)
        except (ProviderError, AIResponseError) as exc:
            raise type(exc)(
                f"{self.name}: {exc}", code=exc.code, provider=self.name, http_status=status
            ) from exc
        if not completion.model:
            completion = dataclasses.replace(completion, model=model or self.model)
        return self._priced(completion)

    def _priced(self, completion: Completion) -> Completion:
        """The completion with its estimated cost, when the model's price is known."""
        if completion.cost_usd is not None:
            return completion
        cost = self._resolved.settings.cost(
            completion.model,
            completion.tokens_in,
            completion.tokens_out,
            completion.cache_read_tokens,
            completion.cache_write_tokens,
            cache_in_input=self.wire.name != "anthropic",
        )
        return completion if cost is None else dataclasses.replace(completion, cost_usd=cost)

    # -- sync ------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:  # threads sharing a provider must share one client (one pool)
            if self._client is None:
                self._client = httpx.Client(
                    transport=self._transport or sync_transport(self._limits, _tls()),
                    verify=_tls(),
                    headers=self._headers,
                    follow_redirects=False,
                )
            return self._client

    def generate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer one prompt synchronously (see :meth:`chat`)."""
        return self.chat(request=ChatRequest.from_prompt(prompt), timeout=timeout, model=model)

    def chat(self, *, request: ChatRequest, timeout: float, model: str | None = None) -> Completion:
        """Answer a chat request synchronously; the attempt ends within ``timeout`` seconds,
        whatever the server does."""
        ends = time.monotonic() + timeout
        phase = "wait"  # then "body", once the reply has started
        client = self._sync_client()
        body = self._body(request, model)
        self._check_configured()  # before queueing: a missing key needs no slot
        self.bulkhead.acquire(timeout)  # the wait counts against the attempt's time
        try:
            request_out = self._request(body, ends - time.monotonic())
            with deadline(ends):
                response = client.send(request_out, stream=True)
                phase = "body"
                try:
                    reader = self._reader(response)
                    events = self._event_body(response)
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
                            raise attempt_timeout(self.name, timeout, phase)
                finally:
                    response.close()
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.name, phase, self._secrets) from exc
        except ProviderError as exc:
            exc.http_status = response.status_code
            raise
        except (ErrorEvent, AIResponseError) as exc:
            raise self._owned(exc, response.status_code) from None
        finally:
            self.bulkhead.release()
        if events is not None:
            return self._read_event_body(response.status_code, events, model)
        return self._finish(response.status_code, response.headers, reader.finish(), model)

    # -- async -----------------------------------------------------------------------------

    def _new_async_transport(self) -> httpx.AsyncBaseTransport:
        # Async requests go straight to the transport: httpx's client layer (auth, cookies,
        # redirects, hooks, header merging) would cost more than the engine itself, and the
        # engine needs none of it.
        if self._async_transport is not None:
            return self._async_transport
        if self._resolved.settings.async_transport == "aiohttp":
            from .aio import AiohttpTransport  # aiohttp loads only when async calls start

            return AiohttpTransport(self._limits, _tls())
        return httpx.AsyncHTTPTransport(
            retries=0, limits=self._limits, verify=_tls(), trust_env=True
        )

    async def agenerate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer one prompt asynchronously (see :meth:`achat`)."""
        return await self.achat(
            request=ChatRequest.from_prompt(prompt), timeout=timeout, model=model
        )

    async def achat(
        self, *, request: ChatRequest, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer a chat request asynchronously; the whole attempt ends within ``timeout``."""
        ends = time.monotonic() + timeout
        phase = "wait"  # then "body", once the reply has started
        transport = self._aclients.get()
        body = self._body(request, model)
        self._check_configured()  # before queueing: a missing key needs no slot
        await self.bulkhead.aacquire(timeout)  # the wait counts against the attempt's time
        try:
            left = ends - time.monotonic()
            request_out = self._request(body, left)
            async with asyncio.timeout(left):
                response = await transport.handle_async_request(request_out)
                phase = "body"
                try:
                    reader = self._reader(response)
                    events = self._event_body(response)
                    if _in_memory(response):
                        if events is not None:
                            events.feed(reader.take(response.content))
                        else:
                            reader.feed(response.content)
                    else:
                        async for chunk in response.aiter_raw():
                            if events is not None:
                                if events.feed(reader.take(chunk)):
                                    break  # the end marker: nothing after it is read
                                continue
                            reader.feed(chunk)
                            if reader.full:
                                break
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise attempt_timeout(self.name, timeout, phase) from exc
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.name, phase, self._secrets) from exc
        except ProviderError as exc:
            exc.http_status = response.status_code
            raise
        except (ErrorEvent, AIResponseError) as exc:
            raise self._owned(exc, response.status_code) from None
        finally:
            self.bulkhead.release()
        if events is not None:
            return self._read_event_body(response.status_code, events, model)
        return self._finish(response.status_code, response.headers, reader.finish(), model)

    # -- streaming -------------------------------------------------------------------------

    def _stream_failure(
        self, exc: BaseException, delivered: bool, timeouts: StreamTimeouts, phase: str
    ) -> Exception:
        """The outcome error of a stream that broke (a timeout is named by the gap it hit)."""
        if isinstance(exc, TimeoutError | httpx.TimeoutException) and not isinstance(
            exc, httpx.ConnectTimeout | httpx.PoolTimeout
        ):
            return stream_timeout(self.name, timeouts, delivered)
        if isinstance(exc, httpx.HTTPError):
            return error_for_transport(exc, self.name, phase, self._secrets)
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

    def stream(
        self, *, request: ChatRequest, timeouts: StreamTimeouts, model: str | None = None
    ) -> Iterator[Delta | Completion]:
        """Stream the answer to ``request`` synchronously: text and tool-call deltas as they
        arrive, then the whole :class:`Completion`. Every socket read is bounded: by the
        first-token deadline until the first delta, then by the idle timeout (and always by
        the stream's whole deadline). Closing the iterator closes the connection."""
        started = time.monotonic()
        first_by = started + timeouts.first_token
        ends = started + timeouts.total
        client = self._sync_client()
        body = self._body(request, model, stream=True)
        self._check_configured()
        self.bulkhead.acquire(timeouts.first_token)
        phase, delivered = "wait", False
        response: httpx.Response | None = None
        try:
            out = self._request(body, first_by - time.monotonic())
            with deadline(first_by):
                response = client.send(out, stream=True)
            phase = "body"
            reader = self._reader(response)
            if response.status_code >= 300 or not _is_stream(response, self.wire.name):
                with deadline(ends):
                    for chunk in response.iter_raw():
                        reader.feed(chunk)
                        if reader.full:
                            break
                whole = self._finish(response.status_code, response.headers, reader.finish(), model)
                yield from deltas_of(whole)  # a server that answered all at once
                yield whole
                return
            paced = _Paced(response, reader, first_by)
            parser = _parser(self.wire.name)
            events = EventReader(parser.framing, self.name)
            try:
                for delta in _read_events(parser, events, paced):
                    delivered = True
                    yield delta
                    # Idle time is time waiting on the network: it starts when the caller
                    # is back for more, not while it holds the chunk it was given.
                    paced.at = min(time.monotonic() + timeouts.idle, ends)
            except (httpx.HTTPError, TimeoutError):
                if not parser.complete:  # the completion signal came: the answer is whole
                    raise
            yield self._priced(_with_model(parser.finish(), model or self.model))
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._stream_failure(exc, delivered, timeouts, phase) from exc
        except (ErrorEvent, ProviderError, AIResponseError) as exc:
            owned = self._owned(exc, response.status_code if response is not None else None)
            if owned is exc:
                raise
            raise owned from None
        finally:
            if response is not None:
                response.close()
            self.bulkhead.release()

    async def astream(
        self, *, request: ChatRequest, timeouts: StreamTimeouts, model: str | None = None
    ) -> AsyncIterator[Delta | Completion]:
        """The async twin of :meth:`stream`."""
        started = time.monotonic()
        first_by = started + timeouts.first_token
        ends = started + timeouts.total
        transport = self._aclients.get()
        body = self._body(request, model, stream=True)
        self._check_configured()
        await self.bulkhead.aacquire(timeouts.first_token)
        phase, delivered = "wait", False
        response: httpx.Response | None = None
        try:
            out = self._request(body, first_by - time.monotonic())
            async with asyncio.timeout(max(first_by - time.monotonic(), 0)):
                response = await transport.handle_async_request(out)
            phase = "body"
            reader = self._reader(response)
            if response.status_code >= 300 or not _is_stream(response, self.wire.name):
                async with asyncio.timeout(max(ends - time.monotonic(), 0)):
                    if _in_memory(response):
                        reader.feed(response.content)
                    else:
                        async for chunk in response.aiter_raw():
                            reader.feed(chunk)
                            if reader.full:
                                break
                whole = self._finish(response.status_code, response.headers, reader.finish(), model)
                for delta in deltas_of(whole):
                    yield delta
                yield whole
                return
            paced = _APaced(response, reader, first_by)
            parser = _parser(self.wire.name)
            events = EventReader(parser.framing, self.name)
            try:
                async for delta in _aread_events(parser, events, aiter(paced)):
                    delivered = True
                    yield delta
                    paced.at = min(time.monotonic() + timeouts.idle, ends)  # see stream()
            except (httpx.HTTPError, TimeoutError):
                if not parser.complete:  # the completion signal came: the answer is whole
                    raise
            yield self._priced(_with_model(parser.finish(), model or self.model))
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._stream_failure(exc, delivered, timeouts, phase) from exc
        except (ErrorEvent, ProviderError, AIResponseError) as exc:
            owned = self._owned(exc, response.status_code if response is not None else None)
            if owned is exc:
                raise
            raise owned from None
        finally:
            if response is not None:
                await response.aclose()
            self.bulkhead.release()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client and every async one (each in its own event loop); works
        from any context."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._aclients.close()

    async def aclose(self) -> None:
        """Close every client, awaiting the running loop's."""
        if self._client is not None:
            self._client.close()
            self._client = None
        await self._aclients.aclose()
