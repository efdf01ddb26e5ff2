"""Every provider's health as people and tools read it (``torq-fallback health`` and the
gateway's ``GET /v1/torq/health``): each breaker's state, why it is in it, when it lets a
call through and when the next active health check is due, and each quota's use.

The reason is told from the record: a Retry-After alone (a *held* opening: "the provider
said when to come back"), failures in a row at or over the threshold, or the failure rate
over the window; a closed breaker says how many failures in a row it has seen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from engine.health.breaker import Health
from engine.health.quota import LEDGER_PREFIX, QUOTA_PREFIX, usage
from engine.manager.llm import LLMManager

__all__ = ["health_report", "health_source"]


def health_source(store: Any) -> str:
    """Where health records live, in words (never a Redis URL's password)."""
    from urllib.parse import urlsplit

    from engine.health.redis_store import RedisHealthStore
    from engine.health.store import LocalHealthStore

    if isinstance(store, LocalHealthStore):
        return "local"
    if not isinstance(store, RedisHealthStore):  # a store of the application's own
        return type(store).__name__
    url = urlsplit(store.url)
    state = "" if store.shared else "; unreachable now, so this process's own view"
    return (
        f"shared through Redis at {url.hostname or 'localhost'}:{url.port or 6379}"
        f"{url.path or '/0'}, keys {store.namespace}:*{state}"
    )


def _why(health: Health | None, threshold: int, now: float) -> str:
    if health is None:
        return "no call yet"
    calls = sum(b[0] for b in health.calls.values())
    failures = sum(b[1] for b in health.calls.values())
    if health.state == "closed":
        return f"{health.consecutive} failures in a row, {failures}/{calls} in the window"
    if health.held:
        left = max(health.retry_until - now, 0.0)
        return f"the provider said to come back later (Retry-After; {left:.1f} s left)"
    if health.consecutive >= threshold:
        return f"{health.consecutive} failures in a row (threshold {threshold})"
    return f"{failures} of {calls} calls failed in the window"


def health_report(manager: LLMManager, now: float | None = None) -> dict[str, Any]:
    """``{source, providers: [...], quotas: [...]}`` (the JSON of ``health --json``)."""
    wall = time.time() if now is None else now
    store = manager.health.store
    records = store.snapshot()
    breakers = {k: v for k, v in records.items() if not k.startswith(QUOTA_PREFIX)}
    rows: list[dict[str, Any]] = []
    probes = {t.provider: t.probe for t in manager.prober.targets()}
    for name in sorted(set(manager.provider_settings) | set(breakers)):
        health = records.get(name)
        provider = name.split(":", 1)[0]  # a breaker key is provider, or provider:model
        policy, _ = manager.health_policies(provider)
        state = health.state if health else "closed"
        wait = max((health.open_until - wall) if health else 0.0, 0.0)
        if state == "open" and wait <= 0:
            state = "half_open"  # its cooldown is over: the next call is a probe
        probe = probes.get(provider)
        due = None
        if state == "open" and probe is not None and health is not None:
            last = health.probed_at or wall
            due = round(max(last + probe.interval - wall, 0.0), 1)
        rows.append({
            "provider": name,
            "state": state,
            "why": _why(health, policy.failure_threshold, wall),
            "consecutive_failures": health.consecutive if health else 0,
            "calls": sum(b[0] for b in health.calls.values()) if health else 0,
            "failures": sum(b[1] for b in health.calls.values()) if health else 0,
            "half_open_in_s": round(wait, 1) if state == "open" else None,
            "next_probe_in_s": due,
            # the last active health check (probes run while a breaker is open)
            "probed_s_ago": round(wall - health.probed_at, 1) if health and health.probed_at
            else None,
            "probe_answered": health.probe_answered if health and health.probed_at else None,
        })  # fmt: skip
    return {
        "source": health_source(store),
        "providers": rows,
        "quotas": quota_rows(manager, records, wall),
    }


def quota_rows(manager: LLMManager, records: Mapping[str, Health], now: float) -> list[Any]:
    """Each quota's use in the last minute against its limits (providers with a quota, and
    any quota record the store holds: a gateway key's among them)."""
    limited = {n for n, s in manager.provider_settings.items() if s.quota is not None}
    found = {
        k.removeprefix(QUOTA_PREFIX)
        for k in records
        if k.startswith(QUOTA_PREFIX) and not k.startswith(LEDGER_PREFIX)
    }
    rows = []
    for name in sorted(limited | found):
        setting = manager.provider_settings.get(name)
        policy = setting.quota if setting is not None else None
        requests, tokens = usage(records.get(QUOTA_PREFIX + name), now)
        rows.append({
            "provider": name, "requests": requests, "tokens": tokens,
            "requests_limit": policy.rpm if policy else None,
            "tokens_limit": policy.tpm if policy else None,
        })  # fmt: skip
    return rows
