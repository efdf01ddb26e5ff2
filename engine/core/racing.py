"""How the shells perform a hedged attempt's race (`engine.core.hedging` decides it):
launch copies, wait for the next to end (or, streamed, to have its first chunk), cancel the
losers, and hand over a streamed winner's chunks.

- `ThreadRace` (sync shells): each copy runs on a worker thread of the executor's
  small pool (joined by `FallbackExecutor.close`); a cancelled copy's socket is shut
  down (`Cancel`), so its thread ends at once and the
  server sees the connection closed. Nothing a cancelled copy does reaches the caller.
- `TaskRace` (async shells): each copy is a task; a cancelled one is awaited until
  it has closed its connection.

A streamed copy hands its chunks through a one-slot channel, so it reads no further ahead
of the caller than an unhedged stream does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Final, Protocol

from engine.core.actions import FIRST_CHUNK, Abandon, Await, Call, Follow, Launch, StreamDone
from engine.providers.base import acall, call
from engine.providers.network import Cancel, cancelling

__all__ = ["RACE_OPS", "SyncRace", "TaskRace", "ThreadRace", "Workers"]

#: The actions a race is made of.
RACE_OPS: Final = (Launch, Await, Abandon, Follow)
#: Most worker threads the sync shells' copies run on at once, per executor.
_MAX_WORKERS: Final = 64


class SyncRace(Protocol):
    """What a sync shell performs a race with (a `ThreadRace`, or ``simulate``'s
    race over virtual time)."""

    def do(self, action: Launch | Await | Abandon) -> Any:
        """Perform a race action other than `Follow`."""

    def follow(self, action: Follow) -> Generator[Any, None, StreamDone]:
        """Hand over the winning streamed copy's chunks until it ends."""

    def close(self) -> None:
        """The request is over: cancel whatever still runs."""


class Workers:
    """The executor's threads for sync races, started on first use and joined at close."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a worker thread."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    _MAX_WORKERS, thread_name_prefix="torq-fallback-hedge"
                )
            self._pool.submit(fn)

    def close(self) -> None:
        """Wait for every copy still running (cancelled ones end at once) and stop."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class _Channel:
    """A streamed copy's chunks, handed over one at a time; closing it ends the copy."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self.closed = False

    def put(self, item: Any) -> bool:
        """Hand ``item`` over once there is room; False when the channel was closed."""
        with self._cond:
            while self._items and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self) -> Any:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class ThreadRace:
    """One request's race in a sync shell (``stream``: the copies are streamed calls,
    performed by ``pump``, the stream shell's generator of one call)."""

    def __init__(
        self,
        workers: Workers,
        clock: Callable[[], float],
        pump: Callable[[Call], Generator[Any, None, StreamDone]] | None = None,
    ) -> None:
        self._workers = workers
        self._clock = clock
        self._pump = pump
        self._ended: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._cancels: dict[int, Cancel] = {}
        self._channels: dict[int, _Channel] = {}
        self._gone: set[int] = set()

    def do(self, action: Launch | Await | Abandon) -> Any:
        """Perform a race action (not `Follow`: see `follow`)."""
        if isinstance(action, Launch):
            self._launch(action)
            return None
        if isinstance(action, Await):
            return self._wait(action.until)
        self._abandon(action.copies)
        return None

    def _launch(self, action: Launch) -> None:
        number, cancel = action.copy, Cancel()
        self._cancels[number] = cancel
        pump = self._pump
        if pump is None:
            c = action.call

            def run() -> None:
                try:
                    with cancelling(cancel):
                        result = call(c.provider, c.request, c.timeout, c.model)
                except BaseException as exc:  # never leave the race waiting for it
                    result = (False, exc)
                self._ended.put((number, result))

        else:
            channel = self._channels[number] = _Channel()

            def run() -> None:
                try:
                    with cancelling(cancel):
                        self._relay(number, pump(action.call), channel)
                except BaseException as exc:  # never leave the race waiting for it
                    self._ended.put((number, StreamDone(False, exc)))

        self._workers.submit(run)

    def _relay(
        self, number: int, events: Generator[Any, None, StreamDone], channel: _Channel
    ) -> None:
        first = True
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as stop:
                    done: StreamDone = stop.value
                    if first:
                        self._ended.put((number, done))
                    else:
                        channel.put(done)
                    return
                if first:
                    first = False
                    self._ended.put((number, FIRST_CHUNK))
                if not channel.put(event):
                    return  # abandoned, or the caller stopped reading
        finally:
            events.close()  # closes the HTTP response

    def _wait(self, until: float | None) -> tuple[int, Any] | None:
        while True:
            timeout = None if until is None else max(until - self._clock(), 0.0)
            try:
                number, result = self._ended.get(timeout=timeout)
            except queue.Empty:
                return None
            if number not in self._gone:
                return number, result

    def _abandon(self, copies: tuple[int, ...]) -> None:
        for number in copies:
            self._gone.add(number)
            self._cancels.pop(number).cancel()
            channel = self._channels.pop(number, None)
            if channel is not None:
                channel.close()

    def follow(self, action: Follow) -> Generator[Any, None, StreamDone]:
        """Hand over the winning copy's chunks until it ends."""
        channel = self._channels[action.copy]
        while True:
            item = channel.get()
            if isinstance(item, StreamDone):
                self._cancels.pop(action.copy, None)
                self._channels.pop(action.copy, None)
                return item
            yield item

    def close(self) -> None:
        """The request is over: cancel whatever still runs."""
        self._abandon(tuple(self._cancels))


class TaskRace:
    """One request's race in an async shell (``pump``: the stream shell's async generator
    of one call, for streamed copies)."""

    def __init__(
        self,
        clock: Callable[[], float],
        pump: Callable[[Call, list[Any]], AsyncGenerator[Any, None]] | None = None,
    ) -> None:
        self._clock = clock
        self._pump = pump
        self._ended: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._channels: dict[int, asyncio.Queue[Any]] = {}
        self._gone: set[int] = set()

    async def do(self, action: Launch | Await | Abandon) -> Any:
        """Perform a race action (not `Follow`: see `follow`)."""
        if isinstance(action, Launch):
            self._launch(action)
            return None
        if isinstance(action, Await):
            return await self._wait(action.until)
        await self._abandon(action.copies)
        return None

    def _launch(self, action: Launch) -> None:
        number, c, pump = action.copy, action.call, self._pump
        if pump is None:

            async def run() -> None:
                result = await acall(c.provider, c.request, c.timeout, c.model)
                self._ended.put_nowait((number, result))

        else:
            channel: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
            self._channels[number] = channel

            async def run() -> None:
                box: list[Any] = []
                events = pump(c, box)
                first = True
                try:
                    async for event in events:
                        if first:
                            first = False
                            self._ended.put_nowait((number, FIRST_CHUNK))
                        await channel.put(event)
                except Exception as exc:  # never leave the race waiting for it
                    box[:] = [StreamDone(False, exc)]
                finally:
                    await events.aclose()  # closes the HTTP response
                if first:
                    self._ended.put_nowait((number, box[0]))
                else:
                    await channel.put(box[0])

        self._tasks[number] = asyncio.get_running_loop().create_task(run())

    async def _wait(self, until: float | None) -> tuple[int, Any] | None:
        while True:
            try:
                if until is None:
                    number, result = await self._ended.get()
                else:
                    async with asyncio.timeout(max(until - self._clock(), 0.0)):
                        number, result = await self._ended.get()
            except TimeoutError:
                return None
            if number not in self._gone:
                return number, result

    async def _abandon(self, copies: tuple[int, ...]) -> None:
        tasks = []
        for number in copies:
            self._gone.add(number)
            self._channels.pop(number, None)
            task = self._tasks.pop(number, None)
            if task is not None:
                task.cancel()
                tasks.append(task)
        if tasks:  # each closes its connection before the race goes on
            await asyncio.gather(*tasks, return_exceptions=True)

    async def follow(self, action: Follow) -> AsyncGenerator[Any, None]:
        """Hand over the winning copy's chunks; its StreamDone comes last."""
        channel = self._channels[action.copy]
        while True:
            item = await channel.get()
            yield item
            if isinstance(item, StreamDone):
                self._tasks.pop(action.copy, None)
                self._channels.pop(action.copy, None)
                return

    async def aclose(self) -> None:
        """The request is over (or its caller went away): cancel whatever still runs."""
        await self._abandon(tuple(self._tasks))
