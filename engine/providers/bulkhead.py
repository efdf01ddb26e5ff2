"""A bulkhead per provider: at most ``max_in_flight`` requests in flight, the rest waiting
in line (at most ``max_queue`` of them), before anything reaches the connection pool.

Under heavy concurrency httpx's pool spends its time re-scanning every waiting request for a
free connection (tens of milliseconds of CPU per request at 1,000 concurrent requests), and
requests time out waiting for it. A bulkhead in front keeps the pool small and busy: waiting
is a cheap FIFO line, the wait counts against the attempt's (and so the chain's) deadline,
and a line that is already too long refuses at once so that the chain falls back instead of
piling up.

One bulkhead serves the provider's sync calls (threads) and async calls (any event loop)
alike: slots are counted under a lock, and a slot freed is handed straight to the next in
line, woken in its own thread or loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Final

from engine.errors import AITimeoutError, ProviderError

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "DEFAULT_MAX_QUEUE", "Bulkhead"]

#: In-flight requests per provider unless providers.yaml says otherwise. On loopback the
#: throughput is the same from 16 to 256 (benchmarks/load.py); real LLM calls take seconds,
#: and in-flight = throughput x latency, so the default leaves room for ~50 req/s per
#: provider and process at 5 s per answer.
DEFAULT_MAX_IN_FLIGHT: Final = 256
#: Requests allowed to wait for a slot per provider; one more is refused as ``overloaded``.
DEFAULT_MAX_QUEUE: Final = 1000


class _Waiter:
    __slots__ = ("abandoned", "event", "future", "granted", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[None] | None,
        event: threading.Event | None,
    ) -> None:
        self.loop = loop
        self.future = future
        self.event = event
        self.granted = False
        self.abandoned = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """The in-flight limit of one provider (``name`` is used in messages)."""

    def __init__(self, name: str, max_in_flight: int, max_queue: int) -> None:
        if max_in_flight < 1 or max_queue < 0:
            raise ValueError("max_in_flight must be at least 1 and max_queue at least 0")
        self.name = name
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._active = 0
        self._waiting = 0
        self._line: deque[_Waiter] = deque()

    @property
    def in_flight(self) -> int:
        """Slots taken right now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot right now."""
        return self._waiting

    def _overloaded(self) -> ProviderError:
        return ProviderError(
            f"{self.name}: {self._waiting} requests already wait for one of "
            f"{self.max_in_flight} slots (max_queue {self.max_queue})",
            code="overloaded",
            provider=self.name,
        )

    def _queue_timeout(self, seconds: float) -> AITimeoutError:
        return AITimeoutError(
            f"{self.name}: no free slot within {seconds:g}s "
            f"({self.max_in_flight} requests in flight)",
            code="queue_timeout",
            provider=self.name,
        )

    def _enter(self, waiter: _Waiter) -> bool:
        """Take a slot now (True), or join the line (False); raise when the line is full."""
        with self._lock:
            if self._active < self.max_in_flight and not self._waiting:
                self._active += 1
                return True
            if self._waiting >= self.max_queue:
                raise self._overloaded()
            self._waiting += 1
            self._line.append(waiter)
            return False

    def _leave_line(self, waiter: _Waiter) -> bool:
        """A waiter gives up; True when a slot was handed to it meanwhile (it must release)."""
        with self._lock:
            if waiter.granted:
                return True
            waiter.abandoned = True
            self._waiting -= 1
            return False

    def acquire(self, timeout: float) -> None:
        """Take a slot, waiting at most ``timeout`` seconds (sync)."""
        waiter = _Waiter(None, None, threading.Event())
        if self._enter(waiter):
            return
        assert waiter.event is not None
        if waiter.event.wait(max(timeout, 0.0)) or self._leave_line(waiter):
            return
        raise self._queue_timeout(timeout)

    async def aacquire(self, timeout: float) -> None:
        """Take a slot, waiting at most ``timeout`` seconds (async; cancellable)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future(), None)
        if self._enter(waiter):
            return
        assert waiter.future is not None
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await waiter.future
        except TimeoutError:
            if self._leave_line(waiter):
                return
            raise self._queue_timeout(timeout) from None
        except BaseException:  # cancelled: free the place, and the slot if one came
            if self._leave_line(waiter):
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the first in line, or to the pool of free slots."""
        with self._lock:
            while self._line:
                waiter = self._line.popleft()
                if waiter.abandoned:
                    continue
                if waiter.loop is not None and waiter.loop.is_closed():
                    self._waiting -= 1  # nobody is left there to take the slot
                    continue
                waiter.granted = True
                self._waiting -= 1
                break
            else:
                self._active -= 1
                return
        if waiter.event is not None:
            waiter.event.set()
            return
        assert waiter.loop is not None and waiter.future is not None
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is waiter.loop:
            _resolve(waiter.future)
        elif not waiter.loop.is_closed():
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
