"""The async transport over aiohttp, for async calls under heavy concurrency.

httpx's own async pool re-scans every connection for every waiting request: at 50 and more
concurrent requests its bookkeeping costs milliseconds of CPU per request, and throughput
falls to a few hundred requests a second on loopback. aiohttp's connector does the same job
in constant time (measured with ``benchmarks/load.py``: see the README's performance
section). The provider's async calls, plain and streamed, go straight through it
(:mod:`engine.providers.http_aio`: no httpx request or response is built); the one place
that maps transport errors onto outcomes stays the same.

aiohttp's exceptions are converted here to the httpx exceptions that mean the same thing,
so every wire fault is classified exactly as with httpx's transport:

==================================  ===========================  =======================
aiohttp                             httpx                        outcome code
==================================  ===========================  =======================
``ConnectionTimeoutError``          ``ConnectTimeout``           ``connect_timeout``
``ServerTimeoutError`` (reading)    ``ReadTimeout``              read / attempt timeout
``ClientConnectorError`` (refused)  ``ConnectError``             ``connect_error``
``ServerDisconnectedError``         ``RemoteProtocolError``      ``truncated_response``
``ClientPayloadError``              ``ReadError``                ``truncated_response``
``ClientResponseError`` (bad HTTP)  ``RemoteProtocolError``      ``truncated_response``
other connection errors             ``ReadError``                ``truncated_response``
==================================  ===========================  =======================

Bodies arrive raw (``auto_decompress=False``): the provider decodes them under its size
bound. No cookies are kept and no redirect followed; ``HTTP(S)_PROXY`` / ``NO_PROXY`` are
honoured as httpx honours them (``~/.netrc`` is not read).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections.abc import Callable

import aiohttp
import httpx
import yarl

__all__ = ["AiohttpTransport", "PacedBody", "finish", "read_raw"]


def _mapped(exc: BaseException) -> httpx.TransportError:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text)
    return httpx.ReadError(text)


async def read_raw(response: aiohttp.ClientResponse, feed: Callable[[bytes], bool]) -> None:
    """Hand a reply's raw bytes to ``feed`` as they arrive, until it returns True or the
    body ends; aiohttp's errors mapped as everywhere else. (A plain loop: an async
    generator per reply costs the event loop's generator hooks on every call.)"""
    content = response.content
    try:
        while chunk := await content.readany():
            if feed(chunk):
                return
    except aiohttp.ClientError as exc:
        raise _mapped(exc) from exc


class PacedBody:
    """A reply's raw bytes as they arrive, each read bounded by ``at`` (a
    ``time.monotonic`` deadline its reader moves as deltas are handed over), each chunk
    passed through ``take`` (decoding, the size bound) and skipped when that leaves nothing;
    aiohttp's errors mapped. A class, not an async generator: it runs once per chunk."""

    def __init__(
        self, response: aiohttp.ClientResponse, take: Callable[[bytes], bytes], at: float
    ) -> None:
        self._content = response.content
        self._take = take
        self.at = at

    def __aiter__(self) -> PacedBody:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                async with asyncio.timeout(max(self.at - time.monotonic(), 0)):
                    chunk = await self._content.readany()
            except aiohttp.ClientError as exc:
                raise _mapped(exc) from exc
            if not chunk:
                raise StopAsyncIteration
            data = self._take(chunk)
            if data:
                return data


def finish(response: aiohttp.ClientResponse) -> None:
    """Let a reply go: its connection is reused when the body was read to the end."""
    if response.content.is_eof():
        response.release()
    else:
        response.close()  # abandoned midway: the connection cannot be reused


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends a provider's requests through one ``aiohttp.ClientSession`` (made in the loop
    of the first request; close the client in that loop) with :meth:`post`. It stands where
    an httpx async transport would (one per event loop, closed by ``aclose``), but httpx's
    ``handle_async_request`` is not offered: nothing sends httpx requests through it."""

    def __init__(
        self,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self._limits = limits
        self._ssl = ssl_context
        #: Sent with every request (the provider's own headers: set once, not per request).
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None
        self._proxies = urllib.request.getproxies()
        self._proxy_for: dict[tuple[str, str], str | None] = {}
        self._targets: dict[int, tuple[httpx.URL, yarl.URL]] = {}

    def _proxy(self, url: httpx.URL) -> str | None:
        """The proxy the environment names for ``url`` (decided once per scheme and host)."""
        key = (url.scheme, url.host)
        if key not in self._proxy_for:
            proxy = self._proxies.get(url.scheme)
            if proxy and urllib.request.proxy_bypass(url.host):
                proxy = None
            self._proxy_for[key] = proxy or None
        return self._proxy_for[key]

    def _open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
                ssl=self._ssl,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=self._headers,
                auto_decompress=False,
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
            self._session = session
        return session

    async def post(self, url: httpx.URL, body: bytes, connect: float) -> aiohttp.ClientResponse:
        """POST ``body`` straight through aiohttp, with no httpx request or response built
        (the provider's non-streamed async calls: the hot path); errors mapped as above.
        Only connecting has a timer of its own: the caller bounds the whole exchange; the
        headers are the session's."""
        try:
            return await self._open().request(
                "POST",
                self._target(url),
                data=body,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect),
                allow_redirects=False,
                proxy=self._proxy(url) if self._proxies else None,
            )
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc

    def _target(self, url: httpx.URL) -> yarl.URL:
        # Parsed once per URL object (a provider keeps its one): aiohttp takes a parsed URL
        # as it is, where a string is parsed again on every request.
        found = self._targets.get(id(url))
        if found is None or found[0] is not url:
            if len(self._targets) >= 64:
                self._targets.clear()
            found = self._targets[id(url)] = (url, yarl.URL(str(url)))
        return found[1]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
