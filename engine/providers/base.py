"""The provider protocol and the two ways of calling a provider (from sync and async code).

The provider protocol, in one place. A provider is any object with one of:

``generate_response(*, prompt, timeout, model=None)``  (plain; sync or ``async def``)
    The seed's interface: answers one user message. It is given plain requests only; a
    request it cannot express (a system prompt, a conversation, tools, a response_format,
    sampling parameters) ends its attempt as ``retryable:unsupported_request`` without a
    call, and the chain moves on to a provider that can.
``chat(*, request, timeout, model=None)``  (chat; sync or ``async def``)
    Takes the whole `ChatRequest`. Preferred over
    ``generate_response`` when both exist. (A ``chat`` without a ``request`` parameter is
    not this protocol and is ignored.)
``agenerate_response`` / ``achat``  (same arguments, ``async def``)
    Used from async code when present (the built-in HTTP providers have all four).

Each returns a ``str`` or a completion (an object with a ``text`` str; ``model``, token
usage, ``tool_calls`` and ``finish_reason`` optional; `Completion`
is one). When a chain step names a model other than the provider's own ``model``, it is
passed as ``model=``. Failures are raised
as `ProviderError`, `AITimeoutError` or
`AIResponseError` with a ``code``; anything else raised is recorded
as an ``exception`` outcome. Streaming providers are described in
`engine.core.streaming`.

Both calling functions return ``(True, value)`` or ``(False, exception)``: the executor
classifies either, so nothing a provider raises is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from collections.abc import Awaitable
from typing import Any, Protocol, TypeAlias, runtime_checkable

from engine.errors import AITimeoutError, ProviderError
from engine.types.request import ChatRequest

__all__ = [
    "AsyncProvider",
    "CallResult",
    "Provider",
    "SyncProvider",
    "acall",
    "asked_model",
    "call",
    "run_to_completion",
]

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


_TAKES_REQUEST: dict[Any, bool] = {}


def _takes_request(method: Any) -> bool:
    """Whether ``method`` is this protocol's ``chat(*, request, timeout, ...)``."""
    func = getattr(method, "__func__", method)
    known = _TAKES_REQUEST.get(func)
    if known is None:
        try:
            known = "request" in inspect.signature(method).parameters
        except (TypeError, ValueError):
            known = False
        if len(_TAKES_REQUEST) < 1024:  # keyed by function, so this stays small
            _TAKES_REQUEST[func] = known
    return known


_COROUTINE: dict[Any, bool] = {}


def _is_coroutine(method: Any) -> bool:
    """``inspect.iscoroutinefunction``, remembered per function (asked on every call)."""
    func = getattr(method, "__func__", method)
    try:
        known = _COROUTINE.get(func)
    except TypeError:  # an unhashable callable: ask each time
        return inspect.iscoroutinefunction(method)
    if known is None:
        known = inspect.iscoroutinefunction(method)
        if len(_COROUTINE) < 1024:  # keyed by function, so this stays small
            _COROUTINE[func] = known
    return known


def _chat_method(provider: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        method = getattr(provider, name, None)
        if callable(method) and _takes_request(method):
            return method
    return None


def asked_model(provider: Any, model: str | None) -> str | None:
    """The ``model=`` to pass a provider: the model asked for, unless it is the provider's
    own ``model`` (a provider answers with its own model without being told, and one whose
    ``generate_response`` takes no ``model`` works as long as nobody asks it for another)."""
    if model is None:
        return None
    try:
        own = getattr(provider, "model", None)
    except Exception:  # a provider whose attributes misbehave: say what is asked
        return model
    return None if own == model else model


def _plain_kwargs(
    provider: Any, request: ChatRequest, timeout: float, model: str | None
) -> dict[str, Any]:
    prompt = request.plain_prompt
    if prompt is None:
        name = getattr(provider, "name", None) or type(provider).__name__
        raise ProviderError(
            f"{name} only answers a plain prompt; this request has "
            + ", ".join(request.unsupported_by_plain()),
            code="unsupported_request",
        )
    kwargs: dict[str, Any] = {"prompt": prompt, "timeout": timeout}
    model = asked_model(provider, model)
    if model is not None:
        kwargs["model"] = model
    return kwargs


def _chat_kwargs(
    provider: Any, request: ChatRequest, timeout: float, model: str | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"request": request, "timeout": timeout}
    model = asked_model(provider, model)
    if model is not None:
        kwargs["model"] = model
    return kwargs


def _attempt_timeout(timeout: float) -> AITimeoutError:
    return AITimeoutError(f"no answer within {timeout:g}s", code="attempt_timeout")


async def _bounded(awaitable: Awaitable[Any], limit: float, timeout: float) -> Any:
    """``awaitable``, cut off after ``limit`` seconds as an attempt that was given
    ``timeout``. A ``TimeoutError`` the provider raises itself before then is its own (its
    code, its duration), never taken for the engine's cut."""
    cut = False
    try:
        # asyncio.timeout, unlike wait_for, runs the awaitable in this task: no task per call.
        async with asyncio.timeout(limit) as scope:
            try:
                return await awaitable
            finally:
                cut = scope.expired()
    except TimeoutError as exc:
        if not cut:
            raise  # the provider's own timeout: recorded as its own
        raise _attempt_timeout(timeout) from exc


def run_to_completion(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Run an async provider's awaitable from synchronous code, bounded by ``timeout``."""

    async def bounded() -> Any:
        return await _bounded(awaitable, timeout, timeout)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    # Called from inside a running loop (sync API used from async code): that loop cannot
    # be re-entered, so the coroutine gets a loop of its own on a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1, "torq-fallback-sync") as pool:
        return pool.submit(asyncio.run, bounded()).result()


def call(provider: Any, request: ChatRequest, timeout: float, model: str | None) -> CallResult:
    """Call ``provider`` from synchronous code. Async providers run to completion, bounded
    by ``timeout``; sync providers are trusted to honour the ``timeout`` they are given."""
    try:
        chat = _chat_method(provider, ("chat",))
        if chat is not None:
            value = chat(**_chat_kwargs(provider, request, timeout, model))
        else:
            value = provider.generate_response(**_plain_kwargs(provider, request, timeout, model))
        if type(value) is not str and inspect.isawaitable(value):  # text: the usual answer
            value = run_to_completion(value, timeout)
        return True, value
    except Exception as exc:  # classified and recorded by the executor
        return False, exc


async def acall(
    provider: Any, request: ChatRequest, timeout: float, model: str | None
) -> CallResult:
    """Call ``provider`` from async code, bounded by ``timeout``. Sync providers run on a
    worker thread so that they never block the event loop."""
    # A provider that enforces the timeout itself (naming where it was cut off; its async
    # calls run under their own asyncio.timeout) is awaited as it is: a second timer per
    # call would only cost. Its sync calls, on a worker thread, get a moment more, so that
    # its own, more precise, outcome is the one recorded.
    own = getattr(provider, "bounds_own_timeout", False) is True
    limit = timeout + _GRACE if own else timeout
    try:
        chat = _chat_method(provider, ("achat", "chat"))
        if chat is not None:
            kwargs = _chat_kwargs(provider, request, timeout, model)
            method = chat
        else:
            kwargs = _plain_kwargs(provider, request, timeout, model)
            native = getattr(provider, "agenerate_response", None)
            method = native if _is_coroutine(native) else provider.generate_response
        if _is_coroutine(method):
            value = await (method(**kwargs) if own else _bounded(method(**kwargs), limit, timeout))
        else:
            value = await _bounded(asyncio.to_thread(method, **kwargs), limit, timeout)
            if inspect.isawaitable(value):
                value = await _bounded(value, limit, timeout)
        return True, value
    except Exception as exc:  # classified and recorded by the executor
        return False, exc
