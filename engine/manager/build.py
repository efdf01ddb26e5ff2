"""What a manager is made of, built from its `Settings`:
the providers, the health store and the request log; and closing them again.

Building opens no connection: HTTP clients, Redis connections and the log file are opened
on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.chain.loader import CHAIN_SUFFIXES, default_chains_dir, load_chains
from engine.chain.spec import Chain
from engine.core.machine import CompiledChain
from engine.health import (
    BreakerPolicy,
    HealthConfig,
    HealthStore,
    LocalHealthStore,
    QuotaPolicy,
    RetryBudgetPolicy,
    default_policies,
)
from engine.health.policy import ProbePolicy
from engine.health.prober import Prober, ProbeTarget
from engine.health.quota import QUOTA_PREFIX
from engine.manager.chainset import DEFAULT_CHAIN
from engine.manager.environment import Settings
from engine.providers.base import run_to_completion
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
    "object_check",
    "otel_sink",
    "policies_of",
    "probe_targets",
    "prober_for",
    "prometheus_sink",
    "shipped_layer",
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


def object_check(provider: Any) -> Callable[[float], bool] | None:
    """The check of a registered provider object that offers ``health_check()`` (defined
    on its class: a mock's made-up attribute does not count), or None. It may be sync or
    ``async``; it answers when it returns without raising, unless it returns False, None
    counting as an answer, or a dict whose ``status`` is not ok/healthy/up."""
    if not callable(getattr(type(provider), "health_check", None)):
        return None

    def check(timeout: float) -> bool:
        result = provider.health_check()
        if inspect.isawaitable(result):
            result = run_to_completion(result, timeout)
        if isinstance(result, dict):
            return str(result.get("status", "ok")).lower() in ("ok", "healthy", "up")
        return result is None or bool(result)

    return check


def probe_targets(
    chains: Iterable[CompiledChain],
    providers: Mapping[str, Any],
    settings: Mapping[str, ProviderSettings],
) -> list[ProbeTarget]:
    """What active health checks may probe: every provider a chain names, with the breaker
    keys its steps use, its policies and its check (its own ``health_check``)."""
    keys: dict[str, set[str]] = {}
    for compiled in chains:
        for step in compiled.chain.steps:
            for member in step.members:
                keys.setdefault(member.provider, set()).add(member.key)
    targets = []
    for name, found in sorted(keys.items()):
        provider = providers.get(name)
        if isinstance(provider, HTTPProvider):
            check: Callable[[float], bool] | None = provider.health_check
        else:
            check = object_check(provider) if provider is not None else None
        if check is None:
            continue
        own = settings.get(name)
        probe = own.health_check if own is not None else ProbePolicy()
        targets.append(
            ProbeTarget(name, tuple(sorted(found)), policies_of(settings, name)[0], probe, check)
        )
    return targets


def prober_for(
    settings: Settings,
    health: HealthConfig,
    targets: Callable[[], list[ProbeTarget]],
    wall: Callable[[], float],
    emit: Callable[[Any], None],
    *,
    automatic: bool,
) -> Prober:
    """The manager's prober. ``automatic``: it starts on its own (on the first breaker
    opening; at once when health is shared through Redis, where another process opens
    them), unless health is off or ``health: {probes: false}``."""
    prober = Prober(health.store, targets, wall, emit)
    on = settings.health is None or (settings.health.probes and not settings.health_off)
    if automatic and on:
        if isinstance(health.store, LocalHealthStore):
            health.store.on_open = prober.wake
        else:
            prober.wake()
    return prober


def shipped_layer(folder: Path) -> dict[str, Chain]:
    """The chains under an application's chains folder: none when it holds a
    ``default.yaml`` (it stands alone: modes without a file of their own run its default),
    else the engine's shipped chains (modes without a file of their own run the shipped
    chain of that mode, or the shipped default)."""
    shipped = default_chains_dir()
    if not folder.is_dir() or folder.resolve() == shipped.resolve():
        return {}
    if any((folder / f"{DEFAULT_CHAIN}{suffix}").is_file() for suffix in CHAIN_SUFFIXES):
        return {}
    return load_chains(shipped)


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
