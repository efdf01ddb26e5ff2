"""Streaming through a chain: the sync and async shells that perform the decision core's
streamed calls, and the stream objects `LLMManager.stream` / ``astream`` return.

The rule: until the first chunk is handed to the caller, any failure (connect, status, an
error event, no first token within ``first_token_timeout``) falls back along the chain
exactly as a non-streaming call would, and the caller sees nothing of the failed attempts.
After the first chunk, the chain's ``on_midstream`` decides: ``fail`` raises
`StreamInterruptedError` (``meta.truncated`` is true), ``restart``
runs the next step from the beginning and first yields a `Reset`. Two providers'
output is never spliced into one answer, and a cut stream never ends as if complete.

Streaming providers implement ``stream(*, request, timeouts, model=None)`` (an iterator)
and/or ``astream(...)`` (an async iterator) yielding `TextDelta` /
`ToolCallDelta` and, last, the whole `Completion`. Any
other provider is called as usual and its answer handed over as one chunk.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from engine.core.actions import Call, Follow, StreamDone
from engine.core.classify import classify_result
from engine.core.executor import FallbackExecutor, as_request
from engine.core.machine import CompiledChain
from engine.core.racing import RACE_OPS, SyncRace, TaskRace
from engine.providers.base import acall, asked_model, call
from engine.types.completion import Completion
from engine.types.deltas import TextDelta, ToolCallDelta
from engine.types.meta import GenerationMeta
from engine.types.request import ChatRequest

__all__ = ["AsyncChatStream", "ChatStream", "Reset", "StreamEvent", "TextDelta", "ToolCallDelta"]


@dataclass(frozen=True, slots=True)
class Reset:
    """The stream restarts on another provider (``on_midstream: restart``): discard what
    was shown so far; what follows is a new answer from the beginning."""

    provider: str
    reason: str


StreamEvent: TypeAlias = TextDelta | ToolCallDelta | Reset
#: Told of a call's first chunk: the call, and the event (a Reset first after a restart).
Spoke: TypeAlias = Callable[[Call, Any], None]


class _Progress:
    """How far one streamed call got, shared by both pumps (which only do the I/O): the
    chunks handed over, the time to the first, the text, and the Reset to send first when
    the call restarts after a cut."""

    def __init__(self, action: Call, spoke: Spoke | None = None) -> None:
        self.action = action
        self.spoke = spoke
        self.started = time.monotonic()
        self.chunks = 0
        self.ttft: float | None = None
        self.texts: list[str] = []
        self.final: Any = None

    def _reset(self) -> list[StreamEvent]:
        if not self.action.reset:
            return []
        name = getattr(self.action.provider, "name", "") or type(self.action.provider).__name__
        return [Reset(str(name), "restarted after a cut")]

    def see(self, item: Any) -> list[StreamEvent]:
        """What to hand the caller for one item from the provider's stream."""
        if isinstance(item, Completion):
            self.final = item
            return []
        events: list[StreamEvent] = []
        if self.chunks == 0:
            self.ttft = time.monotonic() - self.started
            events = self._reset()
            if self.spoke is not None:
                self.spoke(self.action, events[0] if events else item)
        self.chunks += 1
        if isinstance(item, TextDelta):
            self.texts.append(item.text)
        events.append(item)
        return events

    def whole(self, ok: bool, value: Any) -> list[StreamEvent]:
        """A non-streaming provider's answer, as the chunks a stream would have given."""
        if not ok:
            return []
        outcome = classify_result(value, None, {})
        completion = outcome.completion
        if outcome.category != "success" or completion is None:
            return []
        deltas: list[TextDelta | ToolCallDelta] = (
            [TextDelta(completion.text)] if completion.text else []
        )
        deltas += [
            ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls)
        ]
        return [event for delta in deltas for event in self.see(delta)]

    def done(self, ok: bool, value: Any = None) -> StreamDone:
        """The call's result for the decision core."""
        text = "".join(self.texts)
        if ok and value is None:
            value = self.final if self.final is not None else Completion(text)
        return StreamDone(ok, value, self.chunks, self.ttft, text)


def _kwargs(action: Call) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"request": action.request, "timeouts": action.stream}
    model = asked_model(action.provider, action.model)
    if model is not None:
        kwargs["model"] = model
    return kwargs


def _pump(action: Call, spoke: Spoke | None = None) -> Generator[StreamEvent, None, StreamDone]:
    """Perform one streamed call: hand its chunks to the caller, return how it went
    (``spoke`` is told of its first chunk)."""
    progress = _Progress(action, spoke)
    method = getattr(action.provider, "stream", None)
    if not callable(method):
        ok, value = call(action.provider, action.request, action.timeout, action.model)
        yield from progress.whole(ok, value)
        return progress.done(ok, value)
    items: Iterator[Any] | None = None
    try:
        items = iter(method(**_kwargs(action)))
        for item in items:
            if progress.chunks and type(item) is TextDelta:  # the usual: what see() does
                progress.chunks += 1
                progress.texts.append(item.text)
                yield item
            else:
                yield from progress.see(item)
    except Exception as exc:  # classified by the decision core
        return progress.done(False, exc)
    finally:
        close = getattr(items, "close", None)
        if callable(close):
            close()  # a consumer that stopped early closes the HTTP response here
    return progress.done(True)


async def _apump(
    action: Call, out: list[Any], spoke: Spoke | None = None
) -> AsyncGenerator[StreamEvent, None]:
    """The async twin of `_pump`; its result is appended to ``out`` as a StreamDone
    (async generators cannot return values)."""
    progress = _Progress(action, spoke)
    method = getattr(action.provider, "astream", None) or getattr(action.provider, "stream", None)
    if not callable(method) or not inspect.isasyncgenfunction(method):
        ok, value = await acall(action.provider, action.request, action.timeout, action.model)
        for event in progress.whole(ok, value):
            yield event
        out.append(progress.done(ok, value))
        return
    items = method(**_kwargs(action))
    try:
        async for item in items:
            if progress.chunks and type(item) is TextDelta:  # the usual: what see() does
                progress.chunks += 1
                progress.texts.append(item.text)
                yield item
            else:
                for event in progress.see(item):
                    yield event
    except Exception as exc:  # classified by the decision core
        out.append(progress.done(False, exc))
        return
    finally:
        await items.aclose()  # a consumer that stopped early closes the HTTP response here
    out.append(progress.done(True))


class _Streamed:
    """What both stream shells share: the record, the answer, and how the answer lands."""

    meta: GenerationMeta
    completion: Completion | None
    #: (provider, model) of the call whose chunks are being handed over: set by its first
    #: chunk, changed by a restart (before its `Reset`); None until a chunk came.
    source: tuple[str, str | None] | None = None

    def __init__(
        self,
        executor: FallbackExecutor,
        chain: CompiledChain,
        request: ChatRequest | str,
        meta: GenerationMeta,
        timeout: float,
    ) -> None:
        self.meta = meta
        self.completion = None
        self.source = None
        self._events = self._run(executor, chain, as_request(request), timeout)

    def _spoke(self, action: Call, event: StreamEvent) -> None:
        """A call's first chunk: it is the stream's source now (a hedged race's first
        speaker wins it; a restart's Reset announces a new one)."""
        if self.source is None or type(event) is Reset:
            self.source = (action.name, action.model)

    def _run(
        self, executor: FallbackExecutor, chain: CompiledChain, request: ChatRequest, timeout: float
    ) -> Any:
        raise NotImplementedError

    def _ended(self, answer: Completion) -> None:
        self.completion = answer
        self.meta.tools_used = [c.name for c in answer.tool_calls]

    @property
    def text(self) -> str:
        """The whole answer's text, once the stream has ended."""
        return self.completion.text if self.completion is not None else ""


class ChatStream(_Streamed):
    """A streamed answer: iterate it for `TextDelta`, `ToolCallDelta` and
    (with ``on_midstream: restart``) `Reset` events.

    ``meta`` fills in as the stream goes (each attempt's record when it ends) and is
    complete when the iteration ends; ``completion`` is the whole answer then. Failures
    are raised from the iteration: ``ChainExhaustedError`` / ``ChainAbortedError`` when no
    provider answered, ``StreamInterruptedError`` when an answer was cut mid-way. Closing
    the stream (``close()``, ``break`` out of a ``for``, a ``with`` block) closes the HTTP
    response at once.
    """

    _events: Generator[StreamEvent, None, None]

    def _run(
        self, executor: FallbackExecutor, chain: CompiledChain, request: ChatRequest, timeout: float
    ) -> Generator[StreamEvent, None, None]:
        decisions = executor.decide(chain, request, self.meta, timeout, stream=True)
        result: Any = None
        racing: SyncRace | None = None
        try:
            while True:
                action = decisions.send(result)
                if isinstance(action, Call):
                    result = yield from _pump(action, self._spoke)
                elif isinstance(action, RACE_OPS):
                    if racing is None:
                        racing = executor.thread_race(lambda a: _pump(a, self._spoke))
                    if isinstance(action, Follow):
                        result = yield from racing.follow(action)
                    else:
                        result = racing.do(action)
                else:
                    result = executor.perform(action)
        except StopIteration as done:
            self._ended(done.value)
        finally:
            if racing is not None:
                racing.close()
            decisions.close()

    def __iter__(self) -> Iterator[StreamEvent]:
        return self._events

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop the stream now (the HTTP response is closed)."""
        self._events.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChatStream(_Streamed):
    """The async twin of `ChatStream`: ``async for event in stream``."""

    _events: AsyncGenerator[StreamEvent, None]

    async def _run(
        self, executor: FallbackExecutor, chain: CompiledChain, request: ChatRequest, timeout: float
    ) -> AsyncGenerator[StreamEvent, None]:
        decisions = executor.decide(chain, request, self.meta, timeout, stream=True)
        result: Any = None
        racing: TaskRace | None = None
        try:
            while True:
                action = decisions.send(result)
                if isinstance(action, RACE_OPS):
                    if racing is None:
                        racing = TaskRace(
                            executor.runtime.monotonic, lambda a, out: _apump(a, out, self._spoke)
                        )
                    if isinstance(action, Follow):
                        async for event in racing.follow(action):
                            if isinstance(event, StreamDone):
                                result = event
                            else:
                                yield event
                    else:
                        result = await racing.do(action)
                    continue
                if not isinstance(action, Call):
                    result = await executor.aperform(action)
                    continue
                box: list[Any] = []
                pump = _apump(action, box, self._spoke)
                try:
                    async for event in pump:
                        yield event
                finally:
                    await pump.aclose()
                result = box[0]
        except StopIteration as done:
            self._ended(done.value)
        finally:
            if racing is not None:
                await racing.aclose()
            decisions.close()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def __anext__(self) -> StreamEvent:
        return await anext(self._events)

    async def aclose(self) -> None:
        """Stop the stream now (the HTTP response is closed)."""
        await self._events.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
