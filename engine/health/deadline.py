"""One deadline per health command, whole: connecting, sending and every read of the reply.

A socket timeout bounds each read, not a command: a Redis that drips its reply a byte at a
time (or a frozen one, reachable but silent) holds a command for as many timeouts as it
likes. Here a sync command runs under an absolute deadline (`command_deadline`), and
the sockets of the Redis client's connections give each operation only the time left
before it (`deadline_connection`); async commands run under ``asyncio.timeout``.

The deadline is the store's per-command ``timeout`` (a few milliseconds), and never more
than what is left of the attempt that asks (`HEALTH_BUDGET`, set by the executor).
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Final

__all__ = ["HEALTH_BUDGET", "command_deadline", "command_seconds", "deadline_connection"]

#: Seconds left of the attempt asking the health store (None: no attempt is asking).
HEALTH_BUDGET: Final[ContextVar[float | None]] = ContextVar("torq_health_budget", default=None)

_local = threading.local()


def command_seconds(timeout: float) -> float:
    """The time one command may take: the store's timeout, within the attempt's budget."""
    budget = HEALTH_BUDGET.get()
    return timeout if budget is None else max(min(timeout, budget), 0.0)


@contextlib.contextmanager
def command_deadline(seconds: float) -> Iterator[None]:
    """Run the sync Redis command(s) inside under one deadline ``seconds`` from now."""
    previous = getattr(_local, "at", None)
    _local.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.at = previous


class _DeadlineSocket:
    """A connected socket whose every operation gets only the time left before the
    thread's command deadline (and runs as usual when no deadline is set)."""

    __slots__ = ("_base", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._base = sock.gettimeout()

    def _bound(self) -> None:
        at = getattr(_local, "at", None)
        if at is None:
            self._sock.settimeout(self._base)
            return
        left = at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the health command ran out of time")
        # A shorter timeout the client set itself (0: a non-blocking look for pending data)
        # stays: the deadline only ever shortens a wait.
        base = self._base
        self._sock.settimeout(left if base is None else min(left, base))

    def recv(self, *args: Any) -> Any:
        self._bound()
        return self._sock.recv(*args)

    def recv_into(self, *args: Any) -> Any:
        self._bound()
        return self._sock.recv_into(*args)

    def send(self, *args: Any) -> Any:
        self._bound()
        return self._sock.send(*args)

    def sendall(self, *args: Any) -> Any:
        self._bound()
        return self._sock.sendall(*args)

    def settimeout(self, value: float | None) -> None:
        self._base = value
        self._sock.settimeout(value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@functools.cache
def deadline_connection(base: type) -> type:
    """``base`` (a redis-py connection class: TCP, TLS or Unix socket) whose sockets obey
    the thread's command deadline, connecting included."""

    def _connect(self: Any) -> Any:
        at = getattr(_local, "at", None)
        if at is not None:  # connecting is part of the command
            left = max(at - time.monotonic(), 0.001)
            self.socket_connect_timeout = min(self.socket_connect_timeout or left, left)
        sock = base._connect(self)  # type: ignore[attr-defined]
        if isinstance(sock, socket.socket) or hasattr(sock, "recv_into"):
            return _DeadlineSocket(sock)
        return sock

    return type(f"Deadline{base.__name__}", (base,), {"_connect": _connect})
