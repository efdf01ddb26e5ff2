"""The host's own metadata record and execution modes (not the engine's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ExecutionMode(str, Enum):  # noqa: UP042 - the host's own shape (not a StrEnum)
    DIRECT = "direct"
    RESEARCH = "research"
    CODE_GENERATION = "code_generation"
    COMPOSITION = "composition"
    HIERARCHICAL = "hierarchical"


@dataclass
class GenerationMeta:
    provider: str = "unknown"
    model: str = "unknown"
    mode: ExecutionMode = ExecutionMode.DIRECT
    latency_ms: int = 0
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_total: int | None = None
    cost_usd_est: float | None = None
    tools_used: list[str] = field(default_factory=list)
    provider_attempts: list[dict[str, Any]] = field(default_factory=list)
    fallback_used: bool = False
    fallback_reason: str | None = None
    error: str | None = None
    error_category: str | None = None
