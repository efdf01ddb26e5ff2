"""A provider that speaks one wire protocol over HTTP, with httpx, sync and async.

One ``httpx.Client`` (sync calls) and one async transport per event loop (HTTP/1.1 on
asyncio, the default: `engine.providers.h1`, through `engine.providers.http_aio`;
aiohttp's; or httpx's pool) per provider, created on first use and reused (connection
pooling), closed by `HTTPProvider.close` / `aclose`. Nothing is retried below
the chain (httpx's ``retries=0``, none in the async transports): the chain is the only
retry layer.

Timeouts: every attempt ends within its timeout whatever the server does, in every phase
(connect, TLS, headers, body): async attempts under ``asyncio.timeout``, sync ones through a
network layer that gives each socket operation only the time left
(`engine.providers.network`). A cut-off attempt is named after where it was:
``connect_timeout`` (connecting), ``read_timeout`` (request sent, no complete reply head
yet), ``attempt_timeout`` (the reply started but did not finish).

Size: a reply is read raw and decoded under the provider's ``max_response_bytes``
(`engine.providers.body`); a larger one ends the attempt as ``response_too_large``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping

import httpx

from engine.errors import AIResponseError, ProviderError
from engine.providers import http_plain, http_stream, replies
from engine.providers.areply import PostTransport
from engine.providers.body import ACCEPT_ENCODING, ERROR_BODY_BYTES, BodyReader
from engine.providers.bulkhead import Bulkhead
from engine.providers.catalogue import ModelWindow, window_of
from engine.providers.mapping import (
    error_for_status,
)
from engine.providers.network import deadline, proxy_for, sync_transport, tls_context
from engine.providers.replies import (
    _in_memory,
    _is_event_body,
)
from engine.providers.resolved import Resolved
from engine.providers.secrets import excerpt, install_log_filter
from engine.providers.wire import WIRES
from engine.support.loops import LoopClients
from engine.types.completion import Completion
from engine.types.deltas import Delta
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = ["HTTPProvider"]


class HTTPProvider:
    """An LLM provider over HTTP. ``generate_response`` is sync, ``agenerate_response``
    async; both return a `Completion` or raise an outcome error.

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
        self.url = httpx.URL(resolved.base_url + self.wire.path)
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
        #: The same headers as pairs, for the async transports (written once per provider).
        self.header_items = list(self._headers.items())
        self.secrets = resolved.secrets
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.async_transports: LoopClients[httpx.AsyncBaseTransport | PostTransport] = LoopClients(
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

    def check_configured(self) -> None:
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

    def httpx_request(self, body: bytes, timeout: float) -> httpx.Request:
        """The request both shells send."""
        # Connecting gets at most 90% of the attempt, so that a connection that never
        # completes ends as connect_timeout before the attempt's own bound fires.
        connect = min(self.connect_timeout, 0.9 * timeout)
        return httpx.Request(
            "POST",
            self.url,
            headers=self._headers,
            content=body,
            extensions={
                "timeout": {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
            },
        )

    def request_body(self, request: ChatRequest, model: str | None, stream: bool = False) -> bytes:
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

    def reader_for(self, response: httpx.Response) -> BodyReader:
        """A bounded reader for ``response``'s body (error bodies: only their start)."""
        # A response built in memory (httpx.MockTransport) arrives already read and decoded.
        encoding = None if _in_memory(response) else response.headers.get("content-encoding")
        return self.body_reader(response.status_code, encoding)

    def body_reader(self, status: int, encoding: str | None) -> BodyReader:
        """A bounded reader for a reply's body, ``encoding`` its Content-Encoding (error
        bodies: only their start)."""
        if status >= 300:
            limit = min(self.max_response_bytes, ERROR_BODY_BYTES)
            return BodyReader(limit, encoding, self.name, truncate=True)
        return BodyReader(self.max_response_bytes, encoding, self.name)

    def finish_reply(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        model: str | None,
        unreadable: str | None = None,
    ) -> Completion:
        if status >= 300:
            raise error_for_status(
                status, headers, body, self.wire, self.name, self.secrets, unreadable
            )
        if _is_event_body(headers):
            return replies.read_event_body(self, status, body, model)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
            text = excerpt(body[:400].decode("utf-8", "replace"), 80, self.secrets)
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
        return self.priced(completion)

    def health_check(self, timeout: float = 2.0) -> bool:
        """Whether the provider answers a question that costs no tokens (``GET`` its model
        list, or the ``health_check: path`` of providers.yaml): True on a 2xx reply. Never
        a request: active health checks ask it while the breaker is open."""
        if not self.configured:
            return False
        path = self._resolved.settings.health_check.path or self.wire.probe_path
        ends = time.monotonic() + timeout
        with deadline(ends):
            reply = self.sync_client().get(self.base_url + path, timeout=timeout)
        reply.close()
        return 200 <= reply.status_code < 300

    def estimate_cost(self, model: str | None, tokens_in: int, tokens_out: int) -> float | None:
        """What a reply of these token counts would cost (USD, by the price table), or None
        when the model's price is unknown (pools' ``cost`` strategy)."""
        return self._resolved.settings.cost(model or self.model, tokens_in, tokens_out)

    def context_window(self, model: str | None) -> ModelWindow | None:
        """The model's (context window, longest output) in tokens, from the catalogue, or
        None when unknown."""
        return window_of(self._resolved.settings.models, model or self.model)

    def priced(self, completion: Completion) -> Completion:
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
        return completion if cost is None else completion.with_cost(cost)

    # -- sync ------------------------------------------------------------------------------

    def sync_client(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:  # threads sharing a provider must share one client (one pool)
            if self._client is None:
                self._client = httpx.Client(
                    transport=self._transport or sync_transport(self._limits, tls_context()),
                    verify=tls_context(),
                    headers=self._headers,
                    follow_redirects=False,
                )
            return self._client

    def generate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer one prompt synchronously (see `chat`)."""
        return self.chat(request=ChatRequest.from_prompt(prompt), timeout=timeout, model=model)

    def chat(self, *, request: ChatRequest, timeout: float, model: str | None = None) -> Completion:
        """Answer a chat request synchronously; the attempt ends within ``timeout`` seconds,
        whatever the server does."""
        return http_plain.chat(self, request, timeout, model)

    # -- async -----------------------------------------------------------------------------

    def _new_async_transport(self) -> httpx.AsyncBaseTransport | PostTransport:
        # Async requests go straight to the transport: httpx's client layer (auth, cookies,
        # redirects, hooks, header merging) would cost more than the engine itself, and the
        # engine needs none of it.
        if self._async_transport is not None:
            return self._async_transport
        chosen = self._resolved.settings.async_transport
        if chosen == "asyncio" and proxy_for(self.url) is None:
            from engine.providers.h1 import H1Transport  # loads when async calls start

            return H1Transport(self._limits, tls_context(), self.header_items)
        if chosen in ("asyncio", "aiohttp"):  # the asyncio transport leaves proxies to aiohttp
            from engine.providers.aio import AiohttpTransport

            return AiohttpTransport(self._limits, tls_context(), self.header_items)
        return httpx.AsyncHTTPTransport(
            retries=0, limits=self._limits, verify=tls_context(), trust_env=True
        )

    async def agenerate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer one prompt asynchronously (see `achat`)."""
        return await self.achat(
            request=ChatRequest.from_prompt(prompt), timeout=timeout, model=model
        )

    async def achat(
        self, *, request: ChatRequest, timeout: float, model: str | None = None
    ) -> Completion:
        """Answer a chat request asynchronously; the whole attempt ends within ``timeout``."""
        ends = time.monotonic() + timeout
        transport = self.async_transports.get()
        body = self.request_body(request, model)
        self.check_configured()  # before queueing: a missing key needs no slot
        await self.bulkhead.aacquire(timeout)  # the wait counts against the attempt's time
        if hasattr(transport, "post"):  # asyncio (the default), aiohttp: no httpx objects
            return await _posting_achat()(self, transport, body, ends, timeout, model)
        return await http_plain.achat(self, transport, body, ends, timeout, model)

    # -- streaming -------------------------------------------------------------------------

    def stream(
        self, *, request: ChatRequest, timeouts: StreamTimeouts, model: str | None = None
    ) -> Iterator[Delta | Completion]:
        """Stream the answer to ``request`` synchronously: text, tool-call and reasoning
        deltas as they arrive, then the whole `Completion`. Every socket read is
        bounded (first token, then idle, and the whole deadline); closing the iterator
        closes the connection."""
        yield from http_stream.stream(self, request=request, timeouts=timeouts, model=model)

    async def astream(
        self, *, request: ChatRequest, timeouts: StreamTimeouts, model: str | None = None
    ) -> AsyncIterator[Delta | Completion]:
        """The async twin of `stream`."""
        events = http_stream.astream(self, request=request, timeouts=timeouts, model=model)
        try:
            async for item in events:
                yield item
        finally:  # a caller that stops early closes the connection now, not at collection
            await events.aclose()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client and every async one (each in its own event loop); works
        from any context."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.async_transports.close()

    async def aclose(self) -> None:
        """Close every client, awaiting the running loop's."""
        if self._client is not None:
            self._client.close()
            self._client = None
        await self.async_transports.aclose()


@functools.cache
def _posting_achat() -> Callable[..., Awaitable[Completion]]:
    """`engine.providers.http_aio.achat`, imported on the first async call (not by
    an import statement on every call)."""
    from engine.providers.http_aio import achat

    return achat
