"""Prometheus metrics (``pip install 'torq-fallback[prometheus]'``): requests and attempts by
chain, provider, category and code, attempt latency, breaker state and active health
checks. Label values come
only from the chains, the providers and the taxonomy's codes (bounded; no free text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.telemetry.events import AttemptFinished, Event, ProbeFinished, RequestFinished

__all__ = ["PrometheusSink"]

_STATES = {"closed": 0, "half_open": 1, "open": 2}


class PrometheusSink:
    """Metrics registered in ``registry`` (default: prometheus_client's global one).
    ``breakers`` returns each breaker key's state, and ``log_dropped`` the request log's
    dropped lines, read when the gauges are collected."""

    events = (AttemptFinished, RequestFinished, ProbeFinished)

    def __init__(
        self,
        registry: Any = None,
        breakers: Callable[[], dict[str, str]] | None = None,
        namespace: str = "torq",
        log_dropped: Callable[[], float] | None = None,
    ) -> None:
        import prometheus_client as prom

        kwargs: dict[str, Any] = {"namespace": namespace}
        if registry is not None:
            kwargs["registry"] = registry
        self.requests = prom.Counter(
            "requests", "Requests by chain and final state.", ["chain", "final_state"], **kwargs
        )
        self.attempts = prom.Counter(
            "attempts",
            "Attempts by chain, provider, status, category and error code.",
            ["chain", "provider", "status", "category", "code"],
            **kwargs,
        )
        self.hedges = prom.Counter(
            "hedges",
            "Hedged copies sent (a step's attempt slower than its hedge delay), by chain, "
            "provider and how each ended: won, lost (cancelled) or failed.",
            ["chain", "provider", "result"],
            **kwargs,
        )
        self.probes = prom.Counter(
            "health_probes",
            "Active health checks of providers whose breakers were open (never requests), "
            "by provider and result: answered or not.",
            ["provider", "result"],
            **kwargs,
        )
        self.latency = prom.Histogram(
            "attempt_latency_seconds",
            "Attempt latency (skipped attempts are not observed).",
            ["provider"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            **kwargs,
        )
        if log_dropped is not None:
            dropped = prom.Gauge(
                "log_lines_dropped",
                "Requests the JSONL log could not write (queue full, file unwritable).",
                **kwargs,
            )
            dropped.set_function(log_dropped)
        self._breakers = breakers
        if breakers is not None:
            gauge = prom.Gauge(
                "breaker_state",
                "Breaker state per provider: 0 closed, 1 half_open, 2 open.",
                ["breaker"],
                **kwargs,
            )
            self._gauge = gauge

    def handle(self, event: Event) -> None:
        """Count one event."""
        if isinstance(event, AttemptFinished):
            a = event.attempt
            self.attempts.labels(
                event.chain, str(a["provider"]), str(a["status"]), str(a.get("category")),
                str(a.get("error_code") or ""),
            ).inc()  # fmt: skip
            if a.get("hedge"):  # a copy sent after the attempt itself
                result = {"success": "won", "cancelled": "lost"}.get(str(a["status"]), "failed")
                self.hedges.labels(event.chain, str(a["provider"]), result).inc()
            if a["status"] != "skipped":
                self.latency.labels(str(a["provider"])).observe(int(a["latency_ms"]) / 1000)
        elif isinstance(event, ProbeFinished):
            self.probes.labels(event.provider, "answered" if event.answered else "not").inc()
        elif isinstance(event, RequestFinished):
            self.requests.labels(event.chain, event.final_state).inc()
            if self._breakers is not None:
                for key, state in self._breakers().items():
                    self._gauge.labels(key).set(_STATES.get(state, 0))
