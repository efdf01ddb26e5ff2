"""What a manager is made of, built from its :class:`~engine.manager.environment.Settings`:
the providers, the health store and the request log; and closing them again.

Building opens no connection: HTTP clients, Redis connections and the log file are opened
on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from engine.health import (
    BreakerPolicy,
    HealthConfig,
    HealthStore,
    LocalHealthStore,
    QuotaPolicy,
    RetryBudgetPolicy,
    default_policies,
)
from engine.health.quota import QUOTA_PREFIX
from engine.manager.environment import Settings
from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import ProviderSettings

if TYPE_CHECKING:
    from engine.telemetry.jsonl import JsonlSink
    from engine.telemetry.otel import OpenTelemetrySink
    from engine.telemetry.prometheus import PrometheusSink

__all__ = [
    "aclose_all",
    "build_health_store",
    "build_log",
    "build_providers",
    "checked_provider",
    "close_all",
    "health_config",
    "otel_sink",
    "policies_of",
    "prometheus_sink",
]


def build_providers(settings: Settings) -> dict[str, HTTPProvider]:
    """The HTTP providers: the built-ins and those of ``providers.yaml``."""
    return {name: HTTPProvider(resolve(s)) for name, s in settings.providers.items()}


def build_health_store(settings: Settings) -> HealthStore:
    """Where breakers and retry budgets live: in the process, or in Redis."""
    backend = settings.health
    if backend is None or backend.backend in ("local", "off") or not backend.url:
        return LocalHealthStore()
    from engine.health.redis_store import RedisHealthStore  # only when Redis is asked for

    return RedisHealthStore(
        backend.url,
        namespace=backend.namespace,
        cache_ttl=backend.cache_ttl,
        retry_interval=backend.retry_interval,
        timeout=backend.timeout,
    )


def health_config(settings: Settings) -> HealthConfig:
    """Provider health as the settings ask: the store, each provider's breaker and retry
    budget policies (``providers.yaml``'s, or the defaults) and quotas."""
    providers = settings.providers
    return HealthConfig(
        build_health_store(settings),
        lambda name: policies_of(providers, name),
        lambda name: quota_of(providers, name),
    )


def build_log(settings: Settings) -> JsonlSink | None:
    """The JSONL request log, when the config or ``TORQ_TELEMETRY_PATH`` asks for one."""
    log = settings.telemetry
    if log is None:
        return None
    from engine.telemetry.jsonl import JsonlSink  # only when a log is asked for

    return JsonlSink(
        log.path, max_bytes=log.max_bytes, backups=log.backups, include_text=log.include_text
    )


def checked_provider(name: Any, provider: Any) -> Any:
    """``provider``, once it is known to be usable under ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"provider name must be a non-empty string, got {name!r}")
    if not callable(getattr(provider, "generate_response", None)):
        raise TypeError(
            f"provider {name!r} has no generate_response(prompt=..., timeout=...) method"
        )
    return provider


def policies_of(
    providers: Mapping[str, ProviderSettings], name: str
) -> tuple[BreakerPolicy, RetryBudgetPolicy]:
    """A provider's breaker and retry budget: its providers.yaml entry's, or the defaults."""
    found = providers.get(name)
    if found is None:
        return default_policies(name)
    return found.breaker, found.retry_budget


def quota_of(providers: Mapping[str, ProviderSettings], name: str) -> QuotaPolicy | None:
    """A provider's quota (rpm, tpm): its providers.yaml entry's, or None (unlimited)."""
    found = providers.get(name)
    return None if found is None else found.quota


def close_all(things: Iterable[Any]) -> None:
    """Close each thing that can be closed (providers, the store, sinks)."""
    for thing in things:
        close = getattr(thing, "close", None)
        if callable(close):
            close()


async def aclose_all(things: Iterable[Any]) -> None:
    """Close each thing, awaiting the ones that close asynchronously."""
    for thing in things:
        aclose = getattr(thing, "aclose", None)
        if inspect.iscoroutinefunction(aclose):
            await aclose()
        elif callable(getattr(thing, "close", None)):
            thing.close()


def otel_sink(providers: Mapping[str, Any], tracer_provider: Any = None) -> OpenTelemetrySink:
    """Spans per request and per attempt, naming each provider's endpoint."""
    from engine.telemetry.otel import OpenTelemetrySink  # an optional integration

    def endpoint(name: str) -> str | None:
        url = getattr(providers.get(name), "base_url", None)
        return url if isinstance(url, str) else None

    return OpenTelemetrySink(tracer_provider, endpoint)


def prometheus_sink(
    registry: Any, store: HealthStore, log: Callable[[], JsonlSink | None]
) -> PrometheusSink:
    """Request and attempt metrics, breaker states from ``store``, the log's dropped lines."""
    from engine.telemetry.prometheus import PrometheusSink  # an optional integration

    def breakers() -> dict[str, str]:
        # Quota records live in the same store; they are no breakers.
        return {
            key: h.state for key, h in store.snapshot().items() if not key.startswith(QUOTA_PREFIX)
        }

    def dropped() -> float:
        sink = log()
        return float(sink.dropped) if sink is not None else 0.0

    return PrometheusSink(registry, breakers, log_dropped=dropped)
