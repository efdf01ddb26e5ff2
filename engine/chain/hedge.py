"""Hedged requests, as written and as resolved: when a step's attempt has not answered (for a
stream: produced its first token) within ``after``, the same request also goes to another
member of the step's pool, or to the same provider again, and the first success wins.

    - id: gpt
      pool: [openai_east, openai_west]
      hedge: {after: 0.8, max: 1}      # seconds, or p90 / p95 / p99 of recent latencies
    - id: claude
      provider: claude
      hedge: {after: p95, floor: 0.5}  # 0.5 s until the step has enough latencies

`engine.core.hedging` runs the race.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_FLOOR",
    "MAX_HEDGES",
    "MIN_SAMPLES",
    "PERCENTILES",
    "Hedge",
    "HedgeSpec",
    "resolve_hedge",
]

Percentile = Literal["p50", "p75", "p90", "p95", "p99"]
#: The percentiles ``after`` may name, and the quantile each stands for.
PERCENTILES: Final = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
#: Most extra copies one attempt may have in flight.
MAX_HEDGES: Final = 3
#: Seconds a percentile ``after`` waits until the step has `MIN_SAMPLES` latencies.
DEFAULT_FLOOR: Final = 1.0
#: Latencies a step needs before its percentile replaces the floor.
MIN_SAMPLES: Final = 20


class HedgeSpec(BaseModel):
    """``hedge:`` on a step, as written."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    after: float | Percentile = Field(
        description="Seconds without an answer (a stream: its first token) before a copy "
        "goes out, or p50/p75/p90/p95/p99 of the step's recent latencies.",
    )
    floor: float | None = Field(
        default=None,
        gt=0,
        description="With a percentile after: the seconds waited until the step has seen "
        f"{MIN_SAMPLES} answers (default {DEFAULT_FLOOR:g}).",
    )
    max: int = Field(
        default=1, ge=1, le=MAX_HEDGES, description="Extra copies that may be in flight."
    )

    @field_validator("after", mode="before")
    @classmethod
    def _known_percentile(cls, value: object) -> object:
        # One clear message for a misspelt percentile, not one per member of the union.
        if isinstance(value, str) and value not in PERCENTILES:
            close = difflib.get_close_matches(value[:20], list(PERCENTILES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"after is seconds or one of {', '.join(PERCENTILES)}, not {value[:20]!r}{hint}"
            )
        return value


@dataclass(frozen=True, slots=True)
class Hedge:
    """A step's hedging, resolved: a fixed delay (``quantile`` None), or a quantile of the
    step's recent latencies with ``seconds`` as the delay until there are enough."""

    seconds: float
    quantile: float | None = None
    max: int = 1

    def describe(self) -> str:
        """``after 0.8s, up to 1 copy`` / ``after p95 (0.5s until 20 answers), ...``."""
        copies = f"up to {self.max} extra cop{'y' if self.max == 1 else 'ies'}"
        if self.quantile is None:
            return f"after {self.seconds:g}s, {copies}"
        name = next(k for k, v in PERCENTILES.items() if v == self.quantile)
        return f"after {name} ({self.seconds:g}s until {MIN_SAMPLES} answers), {copies}"


def resolve_hedge(spec: HedgeSpec | None) -> Hedge | None:
    """A step's ``hedge:`` resolved (None: the step does not hedge)."""
    if spec is None:
        return None
    if isinstance(spec.after, str):
        floor = DEFAULT_FLOOR if spec.floor is None else spec.floor
        return Hedge(floor, PERCENTILES[spec.after], spec.max)
    return Hedge(float(spec.after), None, spec.max)
