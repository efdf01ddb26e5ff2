"""Health policies as data: a provider's circuit breaker and its retry budget, declared per
provider in providers.yaml (``breaker:``, ``retry_budget:``) and validated like the rest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerPolicy", "HealthBackend", "ProbePolicy", "RetryBudgetPolicy"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class BreakerPolicy(_Strict):
    """When a provider's breaker opens, for how long, and how it is probed."""

    enabled: bool = Field(default=True, description="Whether the provider has a breaker.")
    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open the breaker."
    )
    failure_rate: float = Field(
        default=0.5, gt=0, le=1, description="Share of failures in the window that opens it."
    )
    min_calls: int = Field(
        default=20, ge=1, description="Calls in the window before the failure rate counts."
    )
    window: float = Field(default=60.0, gt=0, description="Seconds of calls the rate looks at.")
    cooldown: float = Field(default=10.0, gt=0, description="Seconds open after a first opening.")
    cooldown_multiplier: float = Field(
        default=2.0, ge=1, description="Each consecutive opening stays open this much longer."
    )
    # 30 s: a provider back from an outage gets traffic again within 30 s of recovering,
    # while a dead one still costs at most one probe per 30 s.
    cooldown_max: float = Field(default=30.0, gt=0, description="Longest an opening lasts.")
    half_open_probes: int = Field(
        default=1, ge=1, description="Requests let through at once to probe a recovering provider."
    )


class ProbePolicy(_Strict):
    """Active health checks: while a provider's breaker is open, ask it a question that
    costs no tokens (its list of models) every ``interval`` seconds, and half-open the
    breaker as soon as it answers, so that a recovered provider gets traffic again without
    a user's request spent on finding out."""

    enabled: bool = Field(
        default=True, description="Whether the provider is probed while its breaker is open."
    )
    interval: float = Field(
        default=0.5, gt=0, le=3600, description="Seconds between two probes of an open breaker."
    )
    timeout: float = Field(default=2.0, gt=0, le=60, description="Seconds a probe may take.")
    path: str | None = Field(
        default=None,
        min_length=1,
        description="Path probed, after the base URL (default by wire: /models for OpenAI's, "
        "/v1/models for Anthropic's, /api/tags for Ollama's).",
    )


class RetryBudgetPolicy(_Strict):
    """Same-step retries allowed for a provider: at most ``ratio`` of its recent requests,
    plus ``min_per_second`` (Envoy's retry budget)."""

    ratio: float = Field(default=0.2, ge=0, le=1, description="Retries per request, at most.")
    min_per_second: float = Field(
        default=1.0, ge=0, description="Retries allowed per second whatever the traffic."
    )
    window: float = Field(default=10.0, gt=0, description="Seconds of traffic counted.")


class HealthBackend(BaseModel):
    """Where provider health (breakers, retry budgets) lives."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    backend: Literal["local", "redis", "off"] = Field(
        default="local", description="off: no breakers and no retry budget at all."
    )
    url: str | None = Field(default=None, min_length=1, description="redis://host:port/db")
    probes: bool = Field(
        default=True,
        description="Active health checks of providers whose breakers are open (each "
        "provider's health_check: in providers.yaml says how, or turns it off).",
    )
    namespace: str = Field(default="torq:health", min_length=1)
    cache_ttl: float = Field(default=0.05, ge=0, description="Seconds a read may be reused.")
    retry_interval: float = Field(
        default=1.0, ge=0, description="Seconds between tries while Redis is unreachable."
    )
    # 25 ms: far above a healthy Redis's reply (well under a millisecond on a LAN), and
    # above what a busy process's own threads can add (the GIL switches every 5 ms), so
    # only a Redis in trouble is taken for one.
    timeout: float = Field(
        default=0.025,
        gt=0,
        le=10,
        description="Seconds one health command may take, whole (connect, send, every read); "
        "past it the request goes on with local health.",
    )
