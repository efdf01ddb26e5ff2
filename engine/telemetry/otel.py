"""OpenTelemetry spans for each request (``pip install 'torq-fallback[otel]'``; the library
needs only ``opentelemetry-api``, the application brings the SDK and exporter).

One INTERNAL span per request, ``chain <name>``, with a CLIENT child span per attempt named
``chat <model>`` carrying the GenAI semantic-convention attributes
(``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``error.type``, ``server.address``, ``server.port``) and the engine's own under ``torq.``
(step, category, error_code, retry, next). Spans are made when the request finishes, with
the attempts' real start and end times, under whatever span was current for the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engine.telemetry.events import Event, RequestFinished

__all__ = ["OpenTelemetrySink"]


def _ns(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1_000_000_000)


class OpenTelemetrySink:
    """Spans through ``tracer_provider`` (default: the global one). ``endpoints`` maps a
    provider name to its base URL, for ``server.address`` / ``server.port``."""

    events = (RequestFinished,)

    def __init__(
        self,
        tracer_provider: Any = None,
        endpoints: Callable[[str], str | None] | None = None,
    ) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = trace.get_tracer("torq-fallback", tracer_provider=tracer_provider)
        self._endpoints = endpoints or (lambda name: None)

    def handle(self, event: Event) -> None:
        """Make the spans of a finished request (other events are ignored)."""
        if not isinstance(event, RequestFinished):
            return
        attempts: list[Mapping[str, Any]] = list(event.meta["provider_attempts"])
        if not attempts:
            return
        starts = [_ns(a["timestamp"]) for a in attempts]
        ends = [s + int(a["latency_ms"]) * 1_000_000 for s, a in zip(starts, attempts, strict=True)]
        kind = self._trace.SpanKind
        parent = self._tracer.start_span(
            f"chain {event.chain}",
            kind=kind.INTERNAL,
            start_time=min(starts),
            attributes={
                "torq.chain": event.chain,
                "torq.mode": event.mode,
                "torq.final_state": event.final_state,
                "torq.attempts": len(attempts),
            },
        )
        context = self._trace.set_span_in_context(parent)
        for attempt, start, end in zip(attempts, starts, ends, strict=True):
            self._attempt(attempt, start, end, context)
        if event.final_state != "succeeded":
            parent.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            parent.set_attribute("error.type", str(attempts[-1].get("error_code") or "error"))
        parent.end(end_time=max(ends))

    def _attempt(self, attempt: Mapping[str, Any], start: int, end: int, context: Any) -> None:
        model = attempt.get("model") or "unknown"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": str(attempt["provider"]),
            "gen_ai.request.model": str(model),
            "gen_ai.usage.input_tokens": int(attempt.get("tokens_in") or 0),
            "gen_ai.usage.output_tokens": int(attempt.get("tokens_out") or 0),
            "torq.step": str(attempt.get("state")),
            "torq.category": str(attempt.get("category")),
            "torq.retry": int(attempt.get("retry") or 0),
            "torq.next": str(attempt.get("next")),
            "torq.status": str(attempt.get("status")),
        }
        if attempt.get("status") == "success":
            attributes["gen_ai.response.model"] = str(model)
        if attempt.get("error_code"):
            attributes["error.type"] = str(attempt["error_code"])
            attributes["torq.error_code"] = str(attempt["error_code"])
        url = self._endpoints(str(attempt["provider"]))
        if url:
            parts = urlsplit(url)
            if parts.hostname:
                attributes["server.address"] = parts.hostname
                attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
        span = self._tracer.start_span(
            f"chat {model}",
            context=context,
            kind=self._trace.SpanKind.CLIENT,
            start_time=start,
            attributes=attributes,
        )
        if attempt.get("status") == "failed":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end(end_time=end)
