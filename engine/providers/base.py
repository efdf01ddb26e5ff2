"""The provider protocol and the two ways of calling a provider (from sync and async code).

A provider is any object with ``generate_response(prompt=..., timeout=...)``, sync or
``async def`` (an object with both a sync ``generate_response`` and an async
``agenerate_response`` gets the async one from async code), returning a ``str`` or a
completion (an object with a ``text`` str; ``model`` and token usage optional). When a
chain step names a model, it is passed as ``model=``. Failures are raised as
:class:`~engine.errors.ProviderError`, :class:`~engine.errors.AITimeoutError` or
:class:`~engine.errors.AIResponseError` with a ``code``; anything else raised is recorded
as an ``exception`` outcome.

Both calling functions return ``(True, value)`` or ``(False, exception)``: the executor
classifies either, so nothing a provider raises is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Awaitable
from typing import Any, Protocol, TypeAlias, runtime_checkable

from ..errors import AITimeoutError

__all__ = ["AsyncProvider", "CallResult", "Provider", "SyncProvider", "acall", "call"]

CallResult: TypeAlias = tuple[bool, Any]
_GRACE = 1.0


@runtime_checkable
class SyncProvider(Protocol):
    """A provider answering synchronously."""

    def generate_response(self, *, prompt: str, timeout: float) -> Any:
        """Answer ``prompt`` within ``timeout`` seconds (``model=`` may also be passed)."""
        ...


@runtime_checkable
class AsyncProvider(Protocol):
    """A provider answering asynchronously."""

    async def generate_response(self, *, prompt: str, timeout: float) -> Any:
        """Answer ``prompt`` within ``timeout`` seconds (``model=`` may also be passed)."""
        ...


Provider: TypeAlias = SyncProvider | AsyncProvider


def _kwargs(prompt: str, timeout: float, model: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"prompt": prompt, "timeout": timeout}
    if model is not None:
        kwargs["model"] = model
    return kwargs


def _attempt_timeout(timeout: float) -> AITimeoutError:
    return AITimeoutError(f"no answer within {timeout:g}s", code="attempt_timeout")


async def _bounded(awaitable: Awaitable[Any], timeout: float) -> Any:
    try:
        # asyncio.timeout, unlike wait_for, runs the awaitable in this task: no task per call.
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError as exc:
        raise _attempt_timeout(timeout) from exc


def _run_to_completion(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Run an async provider's awaitable from synchronous code."""

    async def bounded() -> Any:
        return await _bounded(awaitable, timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    # Called from inside a running loop (sync API used from async code): that loop cannot
    # be re-entered, so the coroutine gets a loop of its own on a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1, "torq-fallback-sync") as pool:
        return pool.submit(asyncio.run, bounded()).result()


def call(provider: Any, prompt: str, timeout: float, model: str | None) -> CallResult:
    """Call ``provider`` from synchronous code. Async providers run to completion, bounded
    by ``timeout``; sync providers are trusted to honour the ``timeout`` they are given."""
    try:
        value = provider.generate_response(**_kwargs(prompt, timeout, model))
        if inspect.isawaitable(value):
            value = _run_to_completion(value, timeout)
        return True, value
    except Exception as exc:  # classified and recorded by the executor
        return False, exc


async def acall(provider: Any, prompt: str, timeout: float, model: str | None) -> CallResult:
    """Call ``provider`` from async code, bounded by ``timeout``. Sync providers run on a
    worker thread so that they never block the event loop."""
    # A provider that enforces the timeout itself (naming where it was cut off) gets a
    # moment more, so that its own, more precise, outcome is the one recorded.
    limit = timeout + _GRACE if getattr(provider, "bounds_own_timeout", False) else timeout
    try:
        kwargs = _kwargs(prompt, timeout, model)
        native = getattr(provider, "agenerate_response", None)
        method = native if inspect.iscoroutinefunction(native) else provider.generate_response
        if inspect.iscoroutinefunction(method):
            value = await _bounded(method(**kwargs), limit)
        else:
            value = await _bounded(asyncio.to_thread(method, **kwargs), limit)
            if inspect.isawaitable(value):
                value = await _bounded(value, limit)
        return True, value
    except Exception as exc:  # classified and recorded by the executor
        return False, exc
