"""The async transport over aiohttp (``async_transport: aiohttp``, and the hosts the
environment routes through a proxy when the default, `engine.providers.h1`, is chosen).

httpx's own async pool re-scans every connection for every waiting request: at 50 and more
concurrent requests its bookkeeping costs milliseconds of CPU per request, and throughput
falls to a few hundred requests a second on loopback. aiohttp's connector does the same job
in constant time (measured with ``benchmarks/load.py``). The provider's async calls, plain
and streamed, go straight through it (`engine.providers.http_aio`: no httpx request or
response is built); the one place that maps transport errors onto outcomes stays the same.

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

import ssl
import urllib.request
from collections.abc import Mapping

import aiohttp
import httpx
import yarl

from engine.providers.leftover import announces_a_body
from engine.providers.network import proxy_for

__all__ = ["AioReply", "AiohttpTransport"]


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


class _Content:
    """aiohttp's body reader, its errors mapped."""

    __slots__ = ("_stream",)

    def __init__(self, stream: aiohttp.StreamReader) -> None:
        self._stream = stream

    async def readany(self) -> bytes:
        try:
            return await self._stream.readany()
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc

    def is_eof(self) -> bool:
        return self._stream.is_eof()


class AioReply:
    """An aiohttp reply as an `AsyncReply`."""

    __slots__ = ("_response", "content", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content = _Content(response.content)

    def release(self) -> None:
        if announces_a_body(self.status, self.headers):  # the bytes may still come
            self._response.close()
        else:
            self._response.release()

    def close(self) -> None:
        self._response.close()


class AiohttpTransport:
    """Posts a provider's requests through one ``aiohttp.ClientSession`` (made in the loop
    of the first request; close the transport in that loop):
    a `PostTransport`, one per event loop."""

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
            self._proxy_for[key] = proxy_for(url)
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

    async def post(self, url: httpx.URL, body: bytes, connect: float) -> AioReply:
        """POST ``body`` straight through aiohttp, with no httpx request or response built
        (plain and streamed calls); errors mapped as above. Only connecting has a timer of
        its own: the caller bounds the whole exchange; the headers are the session's."""
        try:
            response = await self._open().request(
                "POST",
                self._target(url),
                data=body,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect),
                allow_redirects=False,
                proxy=self._proxy(url) if self._proxies else None,
            )
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc
        if response.status < 100:  # no such status: aiohttp would read it as a reply
            response.close()
            raise httpx.RemoteProtocolError(
                f"malformed reply: no such status {response.status:03d}"
            )
        return AioReply(response)

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
