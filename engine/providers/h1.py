"""The default async transport: HTTP/1.1 on asyncio's own connections.

A provider's async calls are all alike: a POST of a JSON body to one URL, with the same
headers every time, and a reply read to its end. This transport does just that, and no
more: the request's head is written once per URL and reused, the reply is parsed by
llhttp (through ``httptools``, the parser uvicorn uses), and connections are kept alive in
a small pool per event loop. A general client (aiohttp, httpx) builds request and reply
objects, header multidicts, timers, trace hooks and cookie jars for every request; here a
call costs a fraction of that (``benchmarks/load.py``).

What it does:

- keep-alive connections, reused last-in first-out; one is dropped when the server closes
  it, when it has been idle ``keepalive_expiry`` seconds, when the reply said
  ``Connection: close``, or when a reply was abandoned midway;
- at most ``max_connections`` connections open at once (requests wait for one, in order);
- replies framed by ``Content-Length``, chunked, or by the end of the connection; a
  reply's head bounded to `MAX_HEAD_BYTES` (its body is bounded by the provider's
  reader, and reading pauses while a quarter MiB waits unread);
- TLS with the engine's TLS context (certificates checked, SNI sent);
- every fault raised as the httpx exception that means the same thing, so outcomes are
  the same as on the other transports:

  ===============================================  ================================
  fault                                            httpx exception
  ===============================================  ================================
  connecting took longer than ``connect``          ``ConnectTimeout``
  refused, unreachable, DNS, TLS handshake         ``ConnectError``
  closed before the reply's head, or malformed     ``RemoteProtocolError``
  closed midway through the body                   ``RemoteProtocolError``
  reset while reading                              ``ReadError``
  ===============================================  ================================

What it leaves to aiohttp: proxies. A provider whose host the environment routes through a
proxy (``HTTP(S)_PROXY`` / ``NO_PROXY``) is carried by the aiohttp transport instead
(`engine.providers.http.HTTPProvider._new_async_transport`).

Bodies arrive raw (the provider decodes them under its size bound); no cookies are kept and
no redirect followed, as on the other transports.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import cast

import httpx

from engine.providers.h1_connect import open_connection
from engine.providers.h1_connection import MAX_HEAD_BYTES, H1Reply, _Connection

__all__ = ["MAX_HEAD_BYTES", "H1Reply", "H1Transport"]


class _Pool:
    """The connections to one origin, in one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        limit: int | None,
        keep: int | None,
        expiry: float,
    ) -> None:
        self.loop = loop
        self._host = host
        self._port = port
        self._tls = tls
        self._limit = limit
        self._keep = keep
        self._expiry = expiry
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, connect: float) -> _Connection:
        """A connection: an idle one (the most recent), or a new one."""
        idle = self._idle
        while True:
            while idle:
                conn = idle.pop()
                if (
                    self.loop.time() - conn.idle_since < self._expiry
                    and not conn.closed
                    and conn.transport is not None
                    and not conn.transport.is_closing()
                ):
                    return conn
                conn.abort()
            if self._limit is None or len(self._all) + self._opening < self._limit:
                return await self._connect(connect)
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and gone: the next in line takes the turn
                else:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self, timeout: float) -> _Connection:
        self._opening += 1
        try:
            conn = await self._open(timeout)
        except BaseException:
            self._opening -= 1
            self._wake()  # the place it held is free: the next in line may connect
            raise
        self._opening -= 1
        self._all.add(conn)
        return conn

    async def _open(self, timeout: float) -> _Connection:
        try:
            async with asyncio.timeout(timeout) as bound:
                transport, made = await open_connection(
                    self.loop, lambda: _Connection(self), self._host, self._port, self._tls
                )
        except TimeoutError:
            if bound.expired():
                raise httpx.ConnectTimeout(
                    f"connecting to {self._host}:{self._port} took over {timeout:g}s"
                ) from None
            raise
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
        conn = cast(_Connection, made)
        conn.transport = cast(asyncio.Transport, transport)  # the TLS one, when TLS
        return conn

    def give_back(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        if self._keep is not None and len(self._idle) >= self._keep:
            conn.abort()
            return
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._expiry, self._drop_stale)
        self._wake()

    def forget(self, conn: _Connection) -> None:
        """A connection closed (by either side)."""
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _drop_stale(self) -> None:
        self._sweep = None
        now = self.loop.time()
        for conn in [c for c in self._idle if now - c.idle_since >= self._expiry]:
            conn.abort()
        if self._idle:
            oldest = min(c.idle_since for c in self._idle)
            self._sweep = self.loop.call_later(oldest + self._expiry - now, self._drop_stale)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.abort()


class _Target:
    """A URL's pool and the head of every request to it, written once."""

    __slots__ = ("head", "pool", "url")

    def __init__(self, url: httpx.URL, pool: _Pool, head: bytes) -> None:
        self.url = url
        self.pool = pool
        self.head = head


class H1Transport:
    """Posts a provider's requests over HTTP/1.1 (`PostTransport`);
    one per event loop, closed by ``aclose``.

    ``headers`` are sent with every request (the provider's own: set once, not per
    request); ``Host`` and ``Content-Length`` are added. URLs come without credentials:
    the provider moves them to its ``Authorization`` header
    (`engine.providers.resolved`)."""

    def __init__(
        self,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self._limits = limits
        # Only HTTP/1.1 is spoken: a server must not pick another protocol by ALPN (the
        # engine's clients share this context and none offers another).
        ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl = ssl_context
        self._lines = b"".join(_header_line(n, v) for n, v in headers or [])
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[int, _Target] = {}

    async def post(self, url: httpx.URL, body: bytes, connect: float) -> H1Reply:
        """POST ``body`` to ``url``; the reply once its head has come."""
        target = self._targets.get(id(url))
        if target is None or target.url is not url:
            target = self._target(url)
        conn = await target.pool.acquire(connect)
        try:
            return await conn.send(b"%s%d\r\n\r\n%s" % (target.head, len(body), body))
        except BaseException:
            conn.done_with(False)  # no head (an error, a timeout, a cancel): not reusable
            raise

    def _target(self, url: httpx.URL) -> _Target:
        # Made once per URL object (a provider keeps its one).
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        tls = url.scheme == "https"
        port = url.port or (443 if tls else 80)
        key = (url.scheme, url.host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(
                asyncio.get_running_loop(),
                url.host,
                port,
                self._ssl if tls else None,
                self._limits.max_connections,
                self._limits.max_keepalive_connections,
                self._limits.keepalive_expiry or 5.0,
            )
        head = b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: " % (
            url.raw_path,
            url.netloc,
            self._lines,
        )
        if len(self._targets) >= 64:
            self._targets.clear()
        target = self._targets[id(url)] = _Target(url, pool, head)
        return target

    async def aclose(self) -> None:
        """Close every connection."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()


def _header_line(name: str, value: str) -> bytes:
    if any(c in name or c in value for c in "\r\n\0") or not name:
        # Said without the value: it may be a key.
        raise ValueError(f"header {name!r}: a header cannot contain a line break")
    return f"{name}: {value}\r\n".encode("latin-1")
