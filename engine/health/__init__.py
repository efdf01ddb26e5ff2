"""Provider health: circuit breakers, the retry budget, and the stores that keep them."""

from collections.abc import Callable
from dataclasses import dataclass

from engine.health.breaker import BREAKER_STATES, BREAKER_TRANSITIONS, Admission, Health
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.store import HealthStore, LocalHealthStore


@dataclass(frozen=True)
class HealthConfig:
    """What the executor needs for health: the store, and each provider's policies."""

    store: HealthStore
    policies: Callable[[str], tuple[BreakerPolicy, RetryBudgetPolicy]]


def default_policies(name: str) -> tuple[BreakerPolicy, RetryBudgetPolicy]:
    """The engine's defaults, for a provider that declares none."""
    return _DEFAULTS


_DEFAULTS = (BreakerPolicy(), RetryBudgetPolicy())

__all__ = [
    "BREAKER_STATES",
    "BREAKER_TRANSITIONS",
    "Admission",
    "BreakerPolicy",
    "Health",
    "HealthConfig",
    "HealthStore",
    "LocalHealthStore",
    "RetryBudgetPolicy",
    "default_policies",
]
