"""Provider health: circuit breakers, the retry budget, and the stores that keep them."""

from collections.abc import Callable
from dataclasses import dataclass

from engine.health.breaker import BREAKER_STATES, BREAKER_TRANSITIONS, Admission, Health
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.quota import QuotaGrant, QuotaPolicy
from engine.health.store import HealthStore, LocalHealthStore


def _no_quota(name: str) -> QuotaPolicy | None:
    return None


@dataclass(frozen=True)
class HealthConfig:
    """What the executor needs for health: the store, each provider's policies, and each
    provider's quota (None: unlimited)."""

    store: HealthStore
    policies: Callable[[str], tuple[BreakerPolicy, RetryBudgetPolicy]]
    quotas: Callable[[str], QuotaPolicy | None] = _no_quota


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
    "QuotaGrant",
    "QuotaPolicy",
    "RetryBudgetPolicy",
    "default_policies",
]
