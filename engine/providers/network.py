"""A sync network layer with a true deadline, and the transports built on it.

httpx's sync timeouts bound each socket operation, not the request: a server that sends its
status line one byte a second never trips a 3 s read timeout and keeps the caller forever.
Here every socket operation (connect, TLS handshake, each read, each write) is given the
time left until the attempt's deadline, never more, so a sync attempt ends within its
timeout in every phase whatever the server does. The deadline is set per attempt with
`deadline` (a context variable, so threads sharing one client do not mix theirs up).

A call made under `cancelling` can also be ended from another thread: a hedged copy
that lost its race has its socket shut down at once (`Cancel`), so that its thread
ends and the server sees the connection closed.

Async attempts need none of this: ``asyncio.timeout`` bounds them as a whole, and a
cancelled task closes its connection.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

__all__ = [
    "Cancel",
    "cancelling",
    "deadline",
    "proxy_for",
    "sync_transport",
    "tls_context",
]

_DEADLINE: ContextVar[float | None] = ContextVar("torq_fallback_deadline", default=None)
_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class deadline:  # named as the function it replaces: ``with deadline(at):``
    """Bound every socket operation in this block to end by ``at`` (``time.monotonic``).
    (A class, not a generator-based context manager: a stream enters one per chunk.)"""

    __slots__ = ("_at", "_token")

    def __init__(self, at: float) -> None:
        self._at = at

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(self._at)

    def __exit__(self, *exc: object) -> None:
        _DEADLINE.reset(self._token)


class Cancel:
    """Ends the calls made under it (`cancelling`) from any thread: the socket each is
    reading or writing is shut down, and no new socket operation starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.cancelled = False

    def watch(self, sock: socket.socket) -> None:
        """``sock`` is about to be used (raises once cancelled)."""
        with self._lock:
            if self.cancelled:
                raise httpcore.ReadError("the call was cancelled (a hedged copy that lost)")
            self._sockets.add(sock)

    def unwatch(self, sock: socket.socket) -> None:
        """``sock`` is no longer in use by the call."""
        with self._lock:
            self._sockets.discard(sock)

    def cancel(self) -> None:
        """End the calls now: their sockets are shut down (the blocked read returns)."""
        with self._lock:
            self.cancelled = True
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by its owner: nothing to end
                sock.shutdown(socket.SHUT_RDWR)


_CANCEL: ContextVar[Cancel | None] = ContextVar("torq_fallback_cancel", default=None)


@contextlib.contextmanager
def cancelling(cancel: Cancel) -> Iterator[None]:
    """Make the socket operations in this block endable by ``cancel.cancel()``."""
    token = _CANCEL.set(cancel)
    try:
        yield
    finally:
        _CANCEL.reset(token)


@contextlib.contextmanager
def _watched(sock: socket.socket) -> Iterator[None]:
    cancel = _CANCEL.get()
    if cancel is None:
        yield
        return
    cancel.watch(sock)
    try:
        yield
    finally:
        cancel.unwatch(sock)


def _left(timeout: float | None) -> float | None:
    """The timeout an operation gets: its own, capped by the time left before the deadline."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(SyncStream):
    """A socket stream whose every operation ends by the current deadline."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ReadTimeout("the attempt's deadline passed while reading")
        if _CANCEL.get() is None:
            data: bytes = super().read(max_bytes, left)
            return data
        with _watched(self._sock):
            data = super().read(max_bytes, left)
            return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # httpcore gives every send() the whole timeout again; here the sends share one.
        with _watched(self._sock):
            self._write(buffer, timeout)

    def _write(self, buffer: bytes, timeout: float | None) -> None:
        view = memoryview(buffer)
        while view:
            left = _left(timeout)
            if left is not None and left <= 0:
                raise httpcore.WriteTimeout("the attempt's deadline passed while writing")
            try:
                self._sock.settimeout(left)
                sent = self._sock.send(view)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
            except OSError as exc:
                raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc
            view = view[sent:]

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed before TLS")
        # The socket timeout bounds the whole handshake (CPython keeps one deadline for it).
        upgraded = super().start_tls(ssl_context, server_hostname, left)
        return _DeadlineStream(upgraded.get_extra_info("socket"))


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout)
        if left is not None and left <= 0:
            raise httpcore.ConnectTimeout("the attempt's deadline passed before connecting")
        cancel = _CANCEL.get()
        if cancel is not None and cancel.cancelled:
            raise httpcore.ConnectError("the call was cancelled (a hedged copy that lost)")
        stream = super().connect_tcp(host, port, left, local_address, socket_options)
        sock: socket.socket = stream.get_extra_info("socket")
        return _DeadlineStream(sock)


def sync_transport(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> httpx.HTTPTransport:
    """httpx's transport (its error mapping and streams), over the deadline-bound network."""
    transport = httpx.HTTPTransport(verify=ssl_context, limits=limits, retries=0)
    # httpx offers no way to pass a network backend; its pool is rebuilt with ours.
    pool: Any = httpcore.ConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        retries=0,
        network_backend=_DeadlineBackend(),
    )
    transport._pool = pool
    return transport


def proxy_for(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, minus ``NO_PROXY``),
    or None."""
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and urllib.request.proxy_bypass(url.host):
        return None
    return proxy or None


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Building a TLS context (loading the CA bundle) costs ~20 ms; every client shares one.
    # httpx's own helper keeps its defaults (certifi, SSL_CERT_FILE / SSL_CERT_DIR).
    return httpx.create_ssl_context()
