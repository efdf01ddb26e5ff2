"""The gateway's ASGI application: routes, and one request's way through them.

A chat request (either API) is, in order: its headers bounded, its key checked, its body
read (bounded) and parsed, its ``model`` routed to a chain, the key's right to that chain
and its limits checked, a place among the worker's requests in flight taken, and the chain
run: whole, or streamed. Every step that refuses answers in the caller's API's error
format with one line saying why. While the chain runs, a client that hangs up cancels it:
every attempt in flight is cancelled and its connection closed, so the provider sees the
hang-up too; the request is logged ``cancelled``.

A stream's head (200) is sent with its first chunk, so that a chain that fails before it
answers with the failure's own status; after it, a failure ends the stream with the API's
error event, never a clean end. A restart (``on_midstream: restart``) cannot be shown to
a client that already holds the first provider's text, so it ends the stream the same way.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from dataclasses import dataclass
from typing import Any

from engine.core.records import ended, finished
from engine.core.streaming import AsyncChatStream, Reset
from engine.core.tokens import estimate_tokens
from engine.errors import StreamInterruptedError, TorqError
from engine.gateway.admission import Admission
from engine.gateway.anthropic_api import AnthropicDialect
from engine.gateway.asgi import (
    Receive,
    Send,
    check_headers,
    header_value,
    read_json,
    reply,
    start,
    until_hangup,
)
from engine.gateway.board import Board
from engine.gateway.dashboard import Dashboard
from engine.gateway.dialect import Dialect, Parsed, torq_record
from engine.gateway.failures import GatewayError, from_failure
from engine.gateway.keys import GatewayKey, KeyRing
from engine.gateway.metrics import GatewayMetrics, metrics_for
from engine.gateway.openai_api import OpenAIDialect
from engine.gateway.service import Service
from engine.gateway.shared_board import shared_board
from engine.manager.llm import LLMManager
from engine.manager.options import ChatPlan
from engine.types.completion import Completion

__all__ = ["Gateway", "GatewaySettings", "create_app"]


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway allows: its keys (None: no authentication), and its bounds."""

    keys: KeyRing | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    #: Requests one worker answers at once; beyond, a 503 with Retry-After.
    max_in_flight: int = 1024
    metrics: bool = True


def create_app(
    manager: LLMManager | None = None,
    *,
    settings: GatewaySettings | None = None,
    config: dict[str, Any] | None = None,
) -> Gateway:
    """The gateway on ``manager`` (or on a manager made from ``config``)."""
    return Gateway(manager if manager is not None else LLMManager(config), settings)


_OPENAI = OpenAIDialect()
_ANTHROPIC = AnthropicDialect()


class Gateway:
    """An ASGI application (``app.mount("/llm", gateway)`` in FastAPI or Starlette)."""

    def __init__(self, manager: LLMManager, settings: GatewaySettings | None = None) -> None:
        self.manager = manager
        self.settings = settings or GatewaySettings()
        self.admission = Admission(
            self.settings.keys, manager.health.store, self.settings.max_in_flight
        )
        self.metrics: GatewayMetrics | None = (
            metrics_for(manager) if self.settings.metrics else None
        )
        self.service = Service(manager, self.admission, self.metrics)
        #: What the dashboard shows: a sink that queues each finished request (one append).
        self.board = Board()
        manager.add_sink(self.board)
        self.dashboard = Dashboard(
            manager, self.board, self.admission, shared_board(manager, self.board)
        )

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.dashboard.end_on_exit_signals()
                if self.dashboard.shared is not None:  # this worker's traffic, for every page
                    self.dashboard.shared.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.dashboard.shared is not None:
                    await asyncio.to_thread(self.dashboard.shared.stop)
                await self.manager.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Any, receive: Receive, send: Send) -> None:
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):  # mounted: the path below the mount point
            path = path[len(root) :] or "/"
        method = scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(_OPENAI, scope, receive, send)
        elif path == "/v1/messages" and method == "POST":
            await self._chat(_ANTHROPIC, scope, receive, send)
        elif method == "GET" and path in self.service.pages:
            await self.service.page(path, scope, send)
        elif method == "GET" and path in ("/dashboard", "/dashboard/", "/dashboard/events"):
            await self.dashboard.serve(path, scope, receive, send)
        else:
            known = ("/v1/chat/completions", "/v1/messages", *self.service.pages, "/dashboard")
            status = 405 if path in known else 404
            what = "method not allowed here" if status == 405 else "no such endpoint"
            error = GatewayError(
                status, "not_found", f"{method} {path[:200]}: {what}; endpoints: {', '.join(known)}"
            )
            await reply(send, status, _OPENAI.error_body(error))

    # -- chat -------------------------------------------------------------------------------

    async def _chat(self, dialect: Dialect, scope: Any, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        key: GatewayKey | None = None
        placed = False
        try:
            headers = check_headers(scope, self.settings.max_header_bytes)
            key = self.admission.authenticate(headers)
            body = await read_json(
                receive, self.settings.max_body_bytes, headers.get(b"content-length")
            )
            parsed = dialect.parse(body)
            mode = self._mode(parsed.model, key)
            self.admission.permit(key, parsed.model, mode)
            plan = self._plan(dialect, parsed, mode, key)
            self.admission.slot()
            placed = True
            tokens = _tokens(plan) if key is not None and key.tpm is not None else 0
            await self.admission.take(key, tokens)
        except GatewayError as error:
            if placed:
                self.admission.release()
            await reply(send, error.status, dialect.error_body(error), error.headers)
            self._count(dialect, key, error.status, began)
            return
        except asyncio.CancelledError:  # the client left before its request was read
            if placed:
                self.admission.release()
            self._count(dialect, key, 499, began)
            return
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        status = 500
        try:
            run = self._stream if parsed.stream else self._whole
            hung, outcome = await until_hangup(receive, run(dialect, parsed, plan, send, began))
            if hung:
                status, answer = 499, None
                self._hung_up(plan, began)
            else:
                assert outcome is not None
                status, answer = outcome
            await self.admission.settle(key, tokens, answer)
        finally:
            self.admission.release()
            if self.metrics is not None:
                self.metrics.in_flight.dec()
            self._count(dialect, key, status, began)

    def _mode(self, model: str, key: GatewayKey | None) -> str:
        mode = self.manager.chainset.model(model)
        if mode is not None:
            return mode
        models = [name for name, _ in self.service.models(key)]
        close = difflib.get_close_matches(model, models, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GatewayError(
            404,
            "model_not_found",
            f"model '{model[:100]}' names no chain here{hint}; models: {', '.join(models)}",
            param="model",
        )

    def _plan(
        self, dialect: Dialect, parsed: Parsed, mode: str, key: GatewayKey | None
    ) -> ChatPlan:
        options = dict(parsed.options)
        tags = {
            "gateway.api": dialect.name,
            "gateway.key": key.name if key else "-",
            "gateway.stream": "true" if parsed.stream else "false",
            **options.pop("tags", {}),
        }
        deadline = self.manager.chain_for(mode).chain.deadline
        try:
            return self.manager.chat_plan(
                parsed.messages, mode=mode, timeout=deadline, tags=tags, **options
            )
        except (TypeError, ValueError) as exc:
            message = " ".join(str(exc).split())
            param = message.split(":", 1)[0] if ":" in message[:80] else None
            raise GatewayError(400, "invalid_request", message, param=param) from None

    async def _whole(
        self, dialect: Dialect, parsed: Parsed, plan: ChatPlan, send: Send, began: float
    ) -> tuple[int, Completion | None]:
        try:
            answer = await self.manager.executor.aexecute(
                plan.chain, plan.request, plan.meta, plan.seconds
            )
        except (TypeError, ValueError, TorqError) as exc:  # no answer: say why
            return await self._failed(dialect, plan, send, began, exc), None
        torq = torq_record(plan.meta, plan.chain.chain.name)
        body = dialect.answer(answer, plan.meta, torq)
        await reply(send, 200, body, self._torq_headers(plan, began, answer.model))
        return 200, answer

    async def _failed(
        self, dialect: Dialect, plan: ChatPlan, send: Send, began: float, exc: Exception
    ) -> int:
        """Reply for a request that got no answer: a 400 for what no provider could be sent
        (a TypeError or ValueError), else the chain's failure with its record; the status."""
        if isinstance(exc, TypeError | ValueError):  # a ChainConfigError among them
            error = GatewayError(400, "invalid_request", " ".join(str(exc).split()))
            await reply(send, 400, dialect.error_body(error))
            return 400
        error = from_failure(exc, torq_record(plan.meta, plan.chain.chain.name))
        heads = [*error.headers, *self._torq_headers(plan, began, None)]
        await reply(send, error.status, dialect.error_body(error), heads)
        return error.status

    async def _stream(
        self, dialect: Dialect, parsed: Parsed, plan: ChatPlan, send: Send, began: float
    ) -> tuple[int, Completion | None]:
        stream = AsyncChatStream(
            self.manager.executor, plan.chain, plan.request, plan.meta, plan.seconds
        )
        events = aiter(stream)
        try:
            first: Any = await anext(events)
        except StopAsyncIteration:
            first = None
        except (TypeError, ValueError, TorqError) as exc:  # no first event: say why
            return await self._failed(dialect, plan, send, began, exc), None
        provider, model = stream.source or (plan.meta.provider, plan.meta.model)
        shown = model or plan.chain.chain.name
        writer = dialect.writer(plan.meta, shown, parsed.include_usage)
        await start(send, self._torq_headers(plan, began, model, provider, streaming=True))
        try:
            if first is not None:
                await _body(send, writer.event(first))
            async for event in events:
                if type(event) is Reset:
                    await stream.aclose()
                    raise GatewayError(
                        502,
                        "stream_interrupted",
                        "the answer was cut and "
                        "restarted on another provider; a client holding the "
                        "first answer's text cannot be given a second",
                    )
                data = writer.event(event)
                if data:
                    await _body(send, data)
        except (StreamInterruptedError, TorqError, GatewayError) as exc:
            torq = torq_record(plan.meta, plan.chain.chain.name)
            error = exc if isinstance(exc, GatewayError) else from_failure(exc, torq)
            error.torq = torq
            await send({"type": "http.response.body", "body": writer.error(error)})
            return error.status, None
        torq = torq_record(plan.meta, plan.chain.chain.name)
        await send({"type": "http.response.body", "body": writer.end(stream.completion, torq)})
        return 200, stream.completion

    def _torq_headers(
        self,
        plan: ChatPlan,
        began: float,
        model: str | None,
        provider: str | None = None,
        streaming: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """What the client learns in the head: the chain, who answered (a stream: who is
        answering), the attempts, why it fell back, the request id and the time taken."""
        meta = plan.meta
        attempts = meta.provider_attempts
        reason = meta.fallback_reason
        if reason is None and attempts and attempts[0].get("status") != "success":
            first = attempts[0]  # a stream's head goes before its record is complete
            reason = f"{first.get('error_category')}:{first.get('error_code')}"
        rows = [
            (b"x-torq-chain", plan.chain.chain.name),
            (b"x-torq-provider", provider or meta.provider or ""),
            (b"x-torq-model", model or meta.model or ""),
            (b"x-torq-attempts", len(attempts) + (1 if streaming else 0)),
            (b"x-torq-fallback-reason", reason or ""),
            (b"x-torq-request-id", meta.request_id),
            (b"x-torq-duration-ms", int((time.perf_counter() - began) * 1000)),
        ]
        return [(name, header_value(value)) for name, value in rows]

    def _hung_up(self, plan: ChatPlan, began: float) -> None:
        """Log a request whose client hung up: its attempts so far, ``cancelled``."""
        meta = plan.meta
        meta.tags["gateway.client"] = "hung_up"
        ended(meta, meta.provider_attempts, int((time.perf_counter() - began) * 1000))
        finished(
            self.manager.executor.sinks,
            plan.chain.chain.name,
            "cancelled",
            meta,
            time.time(),
            plan.request,
            None,
        )

    def _count(self, dialect: Dialect, key: GatewayKey | None, status: int, began: float) -> None:
        if self.metrics is not None:
            self.metrics.count(
                dialect.name, key.name if key else "-", status, time.perf_counter() - began
            )


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


def _tokens(plan: ChatPlan) -> int:
    return estimate_tokens(plan.request) + (plan.request.max_tokens or 0)
