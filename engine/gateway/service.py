"""The gateway's pages besides chat: the models (``GET /v1/models``), liveness and
readiness (``/healthz``, ``/readyz``), metrics (``/metrics``) and every provider's health
(``/v1/torq/health``).

``/readyz`` is 200 when the chains are loaded and, where health is shared through Redis,
Redis answers; its body says which health this worker uses (``local``: each worker keeps
its own breakers, budgets and quotas), which worker answered (its pid) and how many models
(chain names and aliases) it serves now, which a chain reloaded in every worker changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any

from engine.gateway.admission import Admission
from engine.gateway.asgi import Send, check_headers, reply
from engine.gateway.failures import GatewayError
from engine.gateway.keys import GatewayKey
from engine.gateway.metrics import GatewayMetrics
from engine.gateway.openai_api import OpenAIDialect
from engine.manager.llm import LLMManager
from engine.tools.health_view import health_report, health_source

__all__ = ["Service"]

_EPOCH = "1970-01-01T00:00:00Z"


class Service:
    """The GET pages of one gateway."""

    def __init__(
        self, manager: LLMManager, admission: Admission, metrics: GatewayMetrics | None
    ) -> None:
        self.manager = manager
        self.admission = admission
        self.metrics = metrics
        self.pages: dict[str, Callable[[Any, Send], Coroutine[Any, Any, None]]] = {
            "/v1/models": self._models,
            "/healthz": self._alive,
            "/readyz": self._ready,
            "/metrics": self._metrics,
            "/v1/torq/health": self._health,
        }

    async def page(self, path: str, scope: Any, send: Send) -> None:
        """Answer ``GET path``."""
        try:
            await self.pages[path](scope, send)
        except GatewayError as error:
            await reply(send, error.status, OpenAIDialect().error_body(error), error.headers)

    def models(self, key: GatewayKey | None) -> list[tuple[str, str]]:
        """(model, mode) for every chain name and alias this key may use."""
        chainset = self.manager.chainset
        rows = [(mode, mode) for mode in chainset.mode_names()]
        rows += sorted(chainset.aliases.items())
        if key is None or key.chains is None:
            return rows
        return [(m, mode) for m, mode in rows if m in key.chains or mode in key.chains]

    def _key(self, scope: Any) -> GatewayKey | None:
        return self.admission.authenticate(check_headers(scope, 64 * 1024))

    async def _models(self, scope: Any, send: Send) -> None:
        rows = self.models(self._key(scope))
        data = [
            {
                "id": model,
                "object": "model",
                "type": "model",
                "created": 0,
                "created_at": _EPOCH,
                "owned_by": "torq-fallback",
                "display_name": model,
                "torq": {"mode": mode, "chain": self.manager.chain_for(mode).chain.name},
            }
            for model, mode in rows
        ]
        await reply(
            send,
            200,
            {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
        )

    async def _alive(self, scope: Any, send: Send) -> None:
        await reply(send, 200, {"status": "alive"})

    async def _ready(self, scope: Any, send: Send) -> None:
        store = self.manager.health.store
        shared = hasattr(store, "shared")
        # Asked now, past the store's read cache (bounded by the store's own deadline).
        reachable = bool(await store.aping()) if hasattr(store, "aping") else True
        chains = len(self.manager.chains)
        ready = chains > 0 and reachable
        health = health_source(store)
        if health == "local":
            health = "local: each worker keeps its own breakers, retry budgets and quotas"
        await reply(
            send,
            200 if ready else 503,
            {
                "ready": ready,
                "worker": os.getpid(),  # which process answered (behind --workers N)
                "chains": chains,
                "models": len(self.models(None)),  # chain names and aliases, as now loaded
                "health": health,
                "redis": ("reachable" if reachable else "unreachable") if shared else None,
            },
        )

    async def _metrics(self, scope: Any, send: Send) -> None:
        if self.metrics is None:
            raise GatewayError(
                404,
                "not_found",
                "metrics need prometheus_client: pip install 'torq-fallback[serve]'",
            )
        data = self.metrics.exposition()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _health(self, scope: Any, send: Send) -> None:
        self._key(scope)
        await reply(send, 200, health_report(self.manager))
