"""The gateway's Prometheus metrics (``GET /metrics``): the engine's collectors (requests,
attempts, latency, breakers, probes) and the gateway's own, labelled by ``api`` (openai,
anthropic) and ``key`` (a keys file's names, or ``-`` without keys: bounded, as every
label here is; never a key itself).

Each worker serves its own registry: with ``--workers N`` behind one port, a scrape sees one
worker (run one worker per pod, or sum what each reports).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayMetrics", "metrics_for"]


class GatewayMetrics:
    """Requests by API, key and status; their duration; requests in flight."""

    def __init__(self, registry: Any) -> None:
        import prometheus_client as prom

        self.registry = registry
        self.requests = prom.Counter(
            "gateway_requests",
            "Gateway requests by API, key and HTTP status (499: the client hung up).",
            ["api", "key", "status"],
            namespace="torq",
            registry=registry,
        )
        self.duration = prom.Histogram(
            "gateway_request_seconds",
            "Gateway request duration, whole (streams: to the end).",
            ["api"],
            namespace="torq",
            registry=registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.in_flight = prom.Gauge(
            "gateway_in_flight",
            "Requests this worker is answering now.",
            namespace="torq",
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def count(self, api: str, key: str, status: int, seconds: float) -> None:
        """One request ended."""
        children = self._children.get((api, key, status))
        if children is None:  # labels() takes a lock and builds a tuple: once per label set
            if len(self._children) > 10_000:  # keys come from the keys file: only a guard
                self._children.clear()
            children = self._children[(api, key, status)] = (
                self.requests.labels(api, key, str(status)),
                self.duration.labels(api),
            )
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format a scrape reads."""
        import prometheus_client as prom

        return bytes(prom.generate_latest(self.registry))


def metrics_for(manager: Any) -> GatewayMetrics | None:
    """A registry of the gateway's own with the engine's collectors in it, or None when
    prometheus_client is not installed (``pip install 'torq-fallback[serve]'`` has it)."""
    try:
        import prometheus_client as prom
    except ImportError:
        return None
    registry = prom.CollectorRegistry()
    manager.enable_prometheus(registry)
    return GatewayMetrics(registry)
