"""Opening a connection for the asyncio transport (`engine.providers.h1`), so that
every socket it opens is closed on every path: cancelled while the name is looked up,
while connecting (one address or several, raced by happy eyeballs), during the TLS
handshake, or by the connect timeout.

asyncio's own ``create_connection`` with ``happy_eyeballs_delay`` can leave a socket behind
when it is cancelled at the moment one attempt connects (its staggered race returns the
socket to a caller that is gone). Here each attempt closes its own socket unless it is
handed over, the race closes every loser's, and TLS is started on a connection the caller
already holds, so that a cancel there aborts it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final

__all__ = ["HAPPY_EYEBALLS_DELAY", "open_connection"]

#: A host with IPv6 and IPv4 addresses: a dead family costs this, not a connect timeout
#: (as aiohttp's connector does it).
HAPPY_EYEBALLS_DELAY: Final = 0.25


async def _connect_one(loop: asyncio.AbstractEventLoop, info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()  # failed or cancelled: this attempt's socket goes with it
        raise
    return sock


def _interleave(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The addresses, alternating between families (first family first), as RFC 8305."""
    families: dict[int, list[tuple[Any, ...]]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    lists = list(families.values())
    out: list[tuple[Any, ...]] = []
    for index in range(max(len(group) for group in lists)):
        out.extend(group[index] for group in lists if index < len(group))
    return out


def _close_if_connected(task: asyncio.Task[socket.socket]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


async def _race(loop: asyncio.AbstractEventLoop, infos: list[tuple[Any, ...]]) -> socket.socket:
    """Happy eyeballs: a new attempt every `HAPPY_EYEBALLS_DELAY` until one connects;
    the others' sockets are closed, whatever ends the race."""
    tasks: list[asyncio.Task[socket.socket]] = []
    winner: asyncio.Task[socket.socket] | None = None
    errors: list[BaseException] = []
    try:
        queue = list(infos)
        while queue or any(not t.done() for t in tasks):
            if queue:
                tasks.append(loop.create_task(_connect_one(loop, queue.pop(0))))
            running = [t for t in tasks if not t.done()]
            if running:
                await asyncio.wait(
                    running,
                    timeout=HAPPY_EYEBALLS_DELAY if queue else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            for task in tasks:
                if task.done() and not task.cancelled():
                    error = task.exception()
                    if error is None:
                        winner = task
                        return task.result()
                    if error not in errors:
                        errors.append(error)
        raise errors[-1] if errors else OSError("no address to connect to")
    finally:
        for task in tasks:
            if task is winner:
                continue
            if task.done():
                _close_if_connected(task)
            else:  # cancelled now; if it connects before the cancel lands, closed then
                task.cancel()
                task.add_done_callback(_close_if_connected)


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    protocol: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """Connect to ``host:port`` (TLS when ``tls``); the transport and the protocol. Nothing
    is left open when it fails or is cancelled."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address found for {host}")
    ordered = _interleave(list(infos))
    sock = await (_connect_one(loop, ordered[0]) if len(ordered) == 1 else _race(loop, ordered))
    try:
        transport, made = await loop.create_connection(protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    if tls is None:
        return transport, made
    try:
        secure = await loop.start_tls(transport, made, tls, server_hostname=host)
    except BaseException:
        transport.abort()  # the handshake failed or was cancelled: the socket goes now
        raise
    if secure is None:  # the connection was closed during the handshake
        transport.abort()
        raise ConnectionResetError("the connection closed during the TLS handshake")
    return secure, made
