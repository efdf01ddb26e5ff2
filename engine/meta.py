"""Execution modes, the per-call metadata record, and the attempt record.

The metadata contract (see the README): ``provider_attempts`` always holds at least one
attempt; ``fallback_used`` is true exactly when more than one attempt was made;
``fallback_reason`` is set exactly then, from the first attempt; on success ``provider``,
``model`` and ``latency_ms`` describe the winning attempt and ``error`` is None; on failure
``error`` and ``error_category`` are set.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["ATTEMPT_KEYS", "ExecutionMode", "GenerationMeta", "fallback_reason", "iso_timestamp"]


class ExecutionMode(StrEnum):
    """How the application wants the prompt answered; each mode has its own chain."""

    DIRECT = "direct"
    RESEARCH = "research"
    CODE_GENERATION = "code_generation"
    COMPOSITION = "composition"
    HIERARCHICAL = "hierarchical"


#: Keys every attempt record carries (more keys are allowed).
ATTEMPT_KEYS = (
    "provider",
    "model",
    "status",
    "error_category",
    "error_code",
    "latency_ms",
    "timestamp",
    "tokens_in",
    "tokens_out",
    "tokens_total",
    "cost_usd_est",
)


def iso_timestamp(epoch_seconds: float) -> str:
    """UTC ISO 8601 with milliseconds, the format of every timestamp in metadata."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


def fallback_reason(attempts: list[dict[str, Any]]) -> str | None:
    """``"{error_category}:{error_code}"`` of the first attempt, or the category alone.

    None unless more than one attempt was made.
    """
    if len(attempts) < 2:
        return None
    first = attempts[0]
    category, code = first.get("error_category"), first.get("error_code")
    if category and code:
        return f"{category}:{code}"
    return str(category) if category else None


@dataclass
class GenerationMeta:
    """Everything known about one ``generate_response`` call. JSON-serialisable via ``to_dict``."""

    provider: str | None = None
    model: str | None = None
    mode: ExecutionMode = ExecutionMode.DIRECT
    latency_ms: int = 0
    timestamp: str = field(default_factory=lambda: iso_timestamp(time.time()))
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_total: int = 0
    cost_usd_est: float | None = None
    tools_used: list[str] = field(default_factory=list)
    tool_results: list[Any] = field(default_factory=list)
    cache_hit: bool = False
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    provider_attempts: list[dict[str, Any]] = field(default_factory=list)
    fallback_used: bool = False
    fallback_reason: str | None = None
    error: str | None = None
    error_category: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of JSON types (the mode as its string value)."""
        data = asdict(self)
        data["mode"] = self.mode.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationMeta:
        """Rebuild from ``to_dict`` output; unknown keys are an error, missing keys default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GenerationMeta.from_dict: unknown keys {unknown}")
        values = dict(data)
        if "mode" in values:
            values["mode"] = ExecutionMode(values["mode"])
        return cls(**values)
