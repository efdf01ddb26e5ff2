"""A provider that speaks one wire protocol over HTTP, with httpx, sync and async.

One ``httpx.Client`` and one ``httpx.AsyncClient`` per provider, created on first use and
reused (connection pooling), closed by :meth:`HTTPProvider.close` / :meth:`aclose`. httpx
retries nothing (``retries=0``): the chain is the only retry layer.

Timeouts: httpx bounds connecting and each read; the whole attempt is bounded by the
attempt's timeout too, so a server trickling its reply byte by byte is cut off. A cut-off
attempt is named after where it was: ``connect_timeout`` (connecting), ``read_timeout``
(request sent, no reply yet), ``attempt_timeout`` (the reply started but did not finish).
Async attempts end exactly at the timeout; sync ones check it as each piece of the reply
arrives, so a server that stalls completely mid-reply is cut off by the read timeout, up
to one timeout later.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import threading
import time

import httpx

from ..classify import Completion
from ..errors import AIResponseError, ProviderError
from .mapping import attempt_timeout, error_for_status, error_for_transport, redact
from .settings import Resolved
from .wire import WIRES

__all__ = ["HTTPProvider"]

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


@functools.cache
def _tls() -> ssl.SSLContext:
    # Building a TLS context (loading the CA bundle) costs ~20 ms; every client shares one.
    # httpx's own helper keeps its defaults (certifi, SSL_CERT_FILE / SSL_CERT_DIR).
    return httpx.create_ssl_context()


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
        self._resolved = resolved
        self._url = resolved.base_url + self.wire.path
        self._headers = {
            "content-type": "application/json",
            **self.wire.headers(resolved.api_key),
            **resolved.headers,
        }
        self._secrets = resolved.secrets
        self._transport = transport
        self._async_transport = async_transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._aclient: httpx.AsyncClient | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"HTTPProvider({self.name!r}, kind={self.kind!r}, base_url={self.base_url!r})"

    @property
    def configured(self) -> bool:
        """Whether the provider has what it needs (its API key, when it uses one)."""
        return self._resolved.api_key is not None or self._resolved.settings.api_key_env is None

    def _check_configured(self) -> None:
        if not self.configured:
            raise ProviderError(
                f"{self.name}: {self._resolved.settings.api_key_env} is not set",
                code="not_configured",
                provider=self.name,
            )

    def _request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        prompt: str,
        model: str | None,
        timeout: float,
    ) -> httpx.Request:
        """The request both shells send (raises ``not_configured`` before building it)."""
        self._check_configured()
        return client.build_request(
            "POST", self._url, content=self._body(prompt, model), timeout=self._timeout(timeout)
        )

    def _timeout(self, seconds: float) -> httpx.Timeout:
        # Connecting gets at most 90% of the attempt, so that a connection that never
        # completes ends as connect_timeout before the attempt's own bound fires.
        return httpx.Timeout(seconds, connect=min(self.connect_timeout, 0.9 * seconds))

    def _body(self, prompt: str, model: str | None) -> bytes:
        return json.dumps(self.wire.body(prompt, model or self.model)).encode()

    def _finish(
        self, status: int, headers: httpx.Headers, body: bytes, model: str | None
    ) -> Completion:
        if status >= 300:
            raise error_for_status(status, headers, body, self.wire, self.name, self._secrets)
        try:
            data = json.loads(body)
        except ValueError:
            text = redact(body[:80].decode("utf-8", "replace"), self._secrets)
            raise ProviderError(
                f"{self.name}: reply is not JSON: {text!r}",
                code="malformed_response",
                provider=self.name,
            ) from None
        try:
            completion = self.wire.completion(data)
        except (ProviderError, AIResponseError) as exc:
            raise type(exc)(f"{self.name}: {exc}", code=exc.code, provider=self.name) from exc
        if completion.model:
            return completion
        return Completion(
            completion.text,
            model or self.model,
            completion.tokens_in,
            completion.tokens_out,
            completion.cost_usd,
        )

    # -- sync ------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is not None:
            return client
        with self._lock:  # threads sharing a provider must share one client (one pool)
            if self._client is None:
                self._client = httpx.Client(
                    transport=self._transport
                    or httpx.HTTPTransport(retries=0, limits=_LIMITS, verify=_tls()),
                    verify=_tls(),
                    headers=self._headers,
                    follow_redirects=False,
                )
            return self._client

    def generate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Ask the provider synchronously; the attempt ends within ``timeout`` seconds
        (a server that stalls mid-reply is cut off by the read timeout)."""
        deadline = time.monotonic() + timeout
        phase = "wait"  # then "body", once the reply has started
        client = self._sync_client()
        request = self._request(client, prompt, model, timeout)
        try:
            response = client.send(request, stream=True)
            phase = "body"
            try:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise attempt_timeout(self.name, timeout, phase)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.name, phase, self._secrets) from exc
        return self._finish(response.status_code, response.headers, b"".join(chunks), model)

    # -- async -----------------------------------------------------------------------------

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            # A client's connections belong to the loop that opened them.
            self._aclient = httpx.AsyncClient(
                transport=self._async_transport
                or httpx.AsyncHTTPTransport(retries=0, limits=_LIMITS, verify=_tls()),
                verify=_tls(),
                headers=self._headers,
                follow_redirects=False,
            )
            self._aloop = loop
        return self._aclient

    async def agenerate_response(
        self, *, prompt: str, timeout: float, model: str | None = None
    ) -> Completion:
        """Ask the provider asynchronously; the whole attempt ends within ``timeout``."""
        phase = "wait"  # then "body", once the reply has started
        client = self._async_client()
        request = self._request(client, prompt, model, timeout)
        try:
            async with asyncio.timeout(timeout):
                response = await client.send(request, stream=True)
                phase = "body"
                try:
                    body = b"".join([chunk async for chunk in response.aiter_bytes()])
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise attempt_timeout(self.name, timeout, phase) from exc
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, self.name, phase, self._secrets) from exc
        return self._finish(response.status_code, response.headers, body, model)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client (and forget the async one, whose loop may be gone)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both clients."""
        self.close()
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
            self._aloop = None
