"""One async client per event loop, closed when its loop shuts down or when its
provider is closed, whichever comes first.

An async client's connections belong to the loop that opened them, so a provider used from
several loops (``asyncio.run`` called repeatedly, threads with loops of their own) needs one
client per loop. Each client is watched by a small task in its loop: ``asyncio.run`` (and
``asyncio.Runner``) cancel every task when the loop shuts down, and the watcher closes the
client then, inside the loop, before it is gone. ``close()`` works from any context: it
closes each client in its own loop (waiting for a loop that runs in another thread, running
one that is idle, scheduling on the current one).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["LoopClients"]


class _Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=_Closable)

_CLOSE_WAIT = 5.0  # seconds to wait for a loop in another thread to close its client


def _is_current(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class LoopClients(Generic[C]):
    """The async clients of one provider, by event loop."""

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[asyncio.AbstractEventLoop, tuple[C, asyncio.Task[None]]] = {}
        # Closing tasks scheduled by close() on a running loop (kept so they are not lost).
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def get(self) -> C:
        """The running loop's client, created (and watched) on first use."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None:
            return entry[0]
        with self._lock:
            entry = self._clients.get(loop)
            if entry is None:
                client = self._factory()
                watcher = loop.create_task(self._watch(loop, client), name="torq-fallback-client")
                entry = (client, watcher)
                self._clients[loop] = entry
            return entry[0]

    async def _watch(self, loop: asyncio.AbstractEventLoop, client: C) -> None:
        try:
            await loop.create_future()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            with self._lock:
                mine = self._clients.get(loop, (None,))[0] is client
                if mine:
                    del self._clients[loop]
            if mine:
                await client.aclose()
            raise

    def _take(self, loop: asyncio.AbstractEventLoop) -> C | None:
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is None:
            return None
        client, watcher = entry
        # The watcher then finds the client gone and leaves closing it to the caller.
        if loop.is_closed():
            pass
        elif loop.is_running() and not _is_current(loop):
            loop.call_soon_threadsafe(watcher.cancel)  # Task.cancel is not thread-safe
        else:
            watcher.cancel()
        return client

    async def aclose(self) -> None:
        """Close every client: the running loop's here, the others in their own loops."""
        loop = asyncio.get_running_loop()
        client = self._take(loop)
        if client is not None:
            await client.aclose()
        self.close()

    def close(self) -> None:
        """Close every client, each in its own loop, from any context."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop in list(self._clients):
            client = self._take(loop)
            if client is None:
                continue
            if loop.is_closed():
                continue  # its shutdown already cancelled the watcher, which closed it
            if loop is current:
                task = loop.create_task(client.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                with contextlib.suppress(TimeoutError):
                    future.result(_CLOSE_WAIT)
            else:
                loop.run_until_complete(client.aclose())
