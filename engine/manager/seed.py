"""The seed guide's names, for a host that embeds the engine in its own ``LLMManager``:
`ProviderChainConfig`, `ProviderAttempt`, `AttemptStatus`,
`ErrorCategory` and `RATE_LIMIT_DELAY_MS`; the executor itself is
`ProviderFallbackExecutor`.

They keep the shapes of TORQ Console's own module (``torq_console.llm.provider_fallback``),
so that the host's change is one import line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Final

__all__ = [
    "CHAIN_FIELDS",
    "RATE_LIMIT_DELAY_MS",
    "AttemptStatus",
    "ErrorCategory",
    "ProviderAttempt",
    "ProviderChainConfig",
    "StepEntry",
]

#: The pause after a rate limit (a 429) before the next provider, in milliseconds: the
#: chains of `ProviderFallbackExecutor` have ``rate_limit_pause: 0.25`` unless they
#: say otherwise, so that one rate limit does not cascade across providers.
RATE_LIMIT_DELAY_MS: Final = 250

#: One step of a `ProviderChainConfig` list: a provider name, or a step written as
#: in a chain file (``{"provider": "openai", "model": "gpt-4o-mini", "retries": 1}``).
StepEntry = str | Mapping[str, Any]


class AttemptStatus(StrEnum):
    """How one attempt ended (``provider_attempts[i]["status"]``)."""

    SUCCESS = "success"
    FAILED = "failed"
    #: No call was made: the provider's breaker was open, or its quota used up.
    SKIPPED = "skipped"
    #: A hedged copy another copy beat.
    CANCELLED = "cancelled"


class ErrorCategory(StrEnum):
    """TORQ Console's failure categories (``error_category`` of an attempt or a call)."""

    TIMEOUT = "timeout"
    PROVIDER_ERROR = "provider_error"
    AI_ERROR = "ai_error"
    EXCEPTION = "exception"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _as(kind: type[StrEnum], value: Any) -> Any:
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        return None


@dataclass
class ProviderAttempt:
    """One attempt's record, typed: the keys every ``meta.provider_attempts`` dict has.
    `from_dict` reads one of those dicts (extra keys are ignored)."""

    provider: str
    model: str = "unknown"
    status: AttemptStatus = AttemptStatus.FAILED
    error_category: ErrorCategory | None = None
    error_code: str | None = None
    latency_ms: int = 0
    timestamp: str = field(default_factory=_now)
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_total: int | None = None
    cost_usd_est: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict of JSON types (the enums as their values)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("status", "error_category"):
            if isinstance(data[key], Enum):
                data[key] = data[key].value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderAttempt:
        """A record from an attempt dict (an unknown status reads as failed, an unknown
        category as None, as TORQ Console's own class reads them)."""
        return cls(
            provider=str(data.get("provider", "unknown")),
            model=str(data.get("model") or "unknown"),
            status=_as(AttemptStatus, data.get("status", "failed")) or AttemptStatus.FAILED,
            error_category=_as(ErrorCategory, data.get("error_category")),
            error_code=data.get("error_code"),
            latency_ms=int(data.get("latency_ms") or 0),
            timestamp=str(data.get("timestamp") or _now()),
            tokens_in=data.get("tokens_in"),
            tokens_out=data.get("tokens_out"),
            tokens_total=data.get("tokens_total"),
            cost_usd_est=data.get("cost_usd_est"),
        )


#: mode value -> the field of `ProviderChainConfig` holding its list
CHAIN_FIELDS: Final[Mapping[str, str]] = {
    "direct": "direct_chain",
    "research": "research_chain",
    "code_generation": "code_generation_chain",
    "default": "default_chain",
}


def _mode_name(mode: Any) -> str:
    value = mode.value if isinstance(mode, Enum) else mode
    return str(value)


@dataclass
class ProviderChainConfig:
    """Each mode's provider order, for the chains built in memory when the chains directory
    has no file for the mode (`ProviderFallbackExecutor`).

    Each list holds provider names, or steps written as in a chain file; it is validated
    like a file, with the same messages. Modes without a list of their own (composition,
    hierarchical) use ``default_chain``.
    """

    direct_chain: list[StepEntry] = field(default_factory=lambda: ["deepseek", "claude", "ollama"])
    research_chain: list[StepEntry] = field(
        default_factory=lambda: ["claude", "deepseek", "ollama"]
    )
    code_generation_chain: list[StepEntry] = field(default_factory=lambda: ["claude", "deepseek"])
    default_chain: list[StepEntry] = field(default_factory=lambda: ["deepseek", "claude"])

    def get_chain_for_mode(self, mode: Any) -> list[StepEntry]:
        """The list of a mode (an ``ExecutionMode`` of the engine's or the host's, or its
        value); ``default_chain`` for a mode without one of its own."""
        name = CHAIN_FIELDS.get(_mode_name(mode), "default_chain")
        chain: list[StepEntry] = getattr(self, name)
        return chain
