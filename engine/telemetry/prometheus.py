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
        if breakers is not None:  # read when scraped, not on every request
            (registry if registry is not None else prom.REGISTRY).register(
                _BreakerStates(f"{namespace}_breaker_state", breakers)
            )
        # Each label set's child, kept: labels() takes a lock and builds a tuple per call.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 100_000:  # bounded labels; this only guards memory
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child

    def handle(self, event: Event) -> None:
        """Count one event."""
        if isinstance(event, AttemptFinished):
            a = event.attempt
            provider, status = str(a["provider"]), str(a["status"])
            self._child(
                self.attempts, event.chain, provider, status, str(a.get("category")),
                str(a.get("error_code") or ""),
            ).inc()  # fmt: skip
            if a.get("hedge"):  # a copy sent after the attempt itself
                result = {"success": "won", "cancelled": "lost"}.get(status, "failed")
                self._child(self.hedges, event.chain, provider, result).inc()
            if status != "skipped":
                self._child(self.latency, provider).observe(int(a["latency_ms"]) / 1000)
        elif isinstance(event, ProbeFinished):
            result = "answered" if event.answered else "not"
            self._child(self.probes, event.provider, result).inc()
        elif isinstance(event, RequestFinished):
            self._child(self.requests, event.chain, event.final_state).inc()


class _BreakerStates:
    """The breaker-state gauge, read from the breakers when scraped."""

    def __init__(self, name: str, breakers: Callable[[], dict[str, str]]) -> None:
        self._name = name
        self._breakers = breakers

    def describe(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(self._name, _BREAKER_HELP, labels=["breaker"])]

    def collect(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(self._name, _BREAKER_HELP, labels=["breaker"])
        for key, state in sorted(self._breakers().items()):
            family.add_metric([key], float(_STATES.get(state, 0)))
        return [family]


_BREAKER_HELP = "Breaker state per provider: 0 closed, 1 half_open, 2 open."
