"""The providers file's format (``providers.yaml``): pydantic models, validated with
file:line by `engine.providers.settings.check_providers_file`."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.health.policy import BreakerPolicy, HealthBackend, ProbePolicy, RetryBudgetPolicy
from engine.health.quota import QuotaPolicy
from engine.providers.catalogue import ModelInfo

__all__ = [
    "MAX_RESPONSE_BYTES_CAP",
    "AsyncTransport",
    "Kind",
    "MaxTokensField",
    "Price",
    "ProbeSpec",
    "ProviderEntry",
    "ProvidersFile",
]

Kind = Literal["openai", "anthropic", "ollama"]
AsyncTransport = Literal["asyncio", "aiohttp", "httpx"]
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]
#: Largest ``max_response_bytes`` a providers file may set (1 GiB).
MAX_RESPONSE_BYTES_CAP: Final = 1 << 30
#: A provider's active health check, as written (``health_check:``).
ProbeSpec = ProbePolicy


class Price(BaseModel):
    """A model's price, in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True, defer_build=True)

    input: float = Field(ge=0, description="USD per million input tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")
    cache_read: float | None = Field(
        default=None,
        ge=0,
        description="USD per million prompt tokens read from the provider's prompt cache "
        "(default: the input price).",
    )
    cache_write: float | None = Field(
        default=None,
        ge=0,
        description="USD per million prompt tokens written to the prompt cache (Anthropic; "
        "default: the input price).",
    )


class ProviderEntry(BaseModel):
    """One provider in a providers file. For a built-in name every key is optional."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    kind: Kind | None = Field(default=None, description="Wire protocol.")
    base_url: str | None = Field(default=None, min_length=1, description="Endpoint base URL.")
    base_url_env: str | None = Field(
        default=None, min_length=1, description="Variable that overrides base_url when set."
    )
    api_key_env: str | None = Field(
        default=None, min_length=1, description="Variable holding the API key."
    )
    model: str | None = Field(default=None, min_length=1, description="Default model.")
    headers: dict[str, str] = Field(
        default_factory=dict, description='Extra headers; "${VAR}" reads the environment.'
    )
    connect_timeout: float | None = Field(
        default=None, gt=0, description="Seconds to establish a connection (capped by the step)."
    )
    max_response_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=MAX_RESPONSE_BYTES_CAP,
        description="Largest reply accepted, decoded, in bytes; a larger one ends the attempt "
        "as response_too_large.",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Most requests in flight to this provider at once (also its connection "
        "pool size); the rest wait in line, within their attempt's timeout.",
    )
    max_queue: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Most requests waiting for a slot; one more is refused at once as "
        "overloaded (retryable), so the chain falls back.",
    )
    breaker: BreakerPolicy | None = Field(
        default=None, description="The provider's circuit breaker (engine defaults otherwise)."
    )
    retry_budget: RetryBudgetPolicy | None = Field(
        default=None, description="How many same-step retries the provider may get."
    )
    health_check: ProbePolicy | None = Field(
        default=None,
        description="Active health checks while the breaker is open: {enabled, interval, "
        "timeout, path}; on by default.",
    )
    quota: QuotaPolicy | None = Field(
        default=None,
        description="Requests and tokens per minute this provider (key, deployment) allows: "
        "{rpm, tpm}; calls beyond are not made.",
    )
    models: dict[str, ModelInfo] | None = Field(
        default=None,
        description="Model -> {context, max_output} in tokens: what a model can hold "
        "(added to the built-in catalogue).",
    )
    prices: dict[str, Price] | None = Field(
        default=None,
        description="Model -> {input, output} USD per million tokens (cost_usd_est).",
    )
    async_transport: AsyncTransport | None = Field(
        default=None,
        description="What carries async calls: asyncio (default: HTTP/1.1 on asyncio's own "
        "connections, the lightest; a proxied host goes through aiohttp), aiohttp, or httpx "
        "(its own pool).",
    )
    max_tokens_field: MaxTokensField | None = Field(
        default=None,
        description="How an OpenAI-wire request names its output limit: "
        "max_completion_tokens (OpenAI itself; its reasoning models refuse max_tokens) or "
        "max_tokens (the default for other OpenAI-compatible endpoints, which often know "
        "only that one).",
    )


class ProvidersFile(BaseModel):
    """A providers file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    providers: dict[str, ProviderEntry] = Field(default_factory=dict)
    health: HealthBackend | None = Field(
        default=None, description="Where provider health lives: {backend: redis, url: ...}."
    )
