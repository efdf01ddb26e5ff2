"""Provider quotas: requests and tokens per minute (``quota: {rpm, tpm}`` in providers.yaml),
kept so that no call goes beyond them.

A provider's use is counted per second over the last minute, in a record of the health store
(in process, or shared through Redis with the same compare-and-set as the breakers), under
the key ``quota:<provider>``. A call takes one request and its estimated tokens before it
goes; its reported usage corrects the estimate afterwards. The window is counted
conservatively (61 one-second buckets, never fewer), so a provider that limits a sliding
minute is never sent more than it allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from engine.health.breaker import Health

__all__ = [
    "LEDGER_PREFIX",
    "QUOTA_PREFIX",
    "QuotaGrant",
    "QuotaPolicy",
    "day_of",
    "quota_key",
    "settle",
    "take",
    "usage",
]

#: Seconds a quota counts (rpm, tpm: a minute); buckets of one second.
WINDOW: Final = 60
#: Key prefix of quota records in the health store.
QUOTA_PREFIX: Final = "quota:"
#: Key prefix of day-long ledgers (a gateway key's daily budget): the same records and
#: operations, counted at `day_of` the time, so that a whole UTC day is one bucket (the
#: next day's first take drops the last day's). Kept two days, whatever the store's TTL.
LEDGER_PREFIX: Final = "quota:day:"
LEDGER_TTL_MS: Final = 2 * 86_400 * 1000


def day_of(now: float) -> float:
    """The start of ``now``'s UTC day: the time a day ledger is counted at."""
    return float(int(now // 86_400) * 86_400)


class QuotaPolicy(BaseModel):
    """A provider's limits: requests and tokens (input plus output) per minute."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, at most.")
    tpm: int | None = Field(
        default=None, ge=1, description="Tokens per minute (input and output), at most."
    )


@dataclass(slots=True)
class QuotaGrant:
    """Whether a call fits its provider's quota now; when not, ``wait`` seconds until it
    would, and what is in use (requests, tokens in the window)."""

    allowed: bool
    wait: float = 0.0
    requests: int = 0
    tokens: int = 0


def quota_key(provider: str) -> str:
    """The health store key of a provider's quota record."""
    return QUOTA_PREFIX + provider


def _recent(health: Health, now: float) -> dict[int, list[int]]:
    horizon = int(now) - WINDOW
    for old in [k for k in health.usage if k < horizon]:
        del health.usage[old]
    return health.usage


def usage(health: Health | None, now: float) -> tuple[int, int]:
    """Requests and tokens counted in the window at ``now``."""
    if health is None:
        return 0, 0
    horizon = int(now) - WINDOW
    buckets = [b for k, b in health.usage.items() if k >= horizon]
    return sum(b[0] for b in buckets), max(sum(b[1] for b in buckets), 0)


def _wait(buckets: dict[int, list[int]], index: int, over: int, now: float) -> float:
    """Seconds until the oldest buckets leave the window and free ``over`` of column
    ``index``."""
    freed = 0
    for second in sorted(buckets):
        freed += buckets[second][index]
        if freed >= over:
            return max(second + WINDOW + 1 - now, 0.0)
    return float(WINDOW + 1)


def take(health: Health, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
    """Take one request and ``tokens`` from the quota, or refuse (changing nothing) with the
    wait until they would fit."""
    buckets = _recent(health, now)
    requests, used = usage(health, now)
    waits: list[float] = []
    if policy.rpm is not None and requests + 1 > policy.rpm:
        waits.append(_wait(buckets, 0, requests + 1 - policy.rpm, now))
    if policy.tpm is not None and used + tokens > policy.tpm:
        if tokens > policy.tpm:  # more than a whole minute allows: it never fits
            return QuotaGrant(False, float("inf"), requests, used)
        waits.append(_wait(buckets, 1, used + tokens - policy.tpm, now))
    if waits:
        return QuotaGrant(False, max(waits), requests, used)
    bucket = buckets.setdefault(int(now), [0, 0])
    bucket[0] += 1
    bucket[1] += tokens
    return QuotaGrant(True, 0.0, requests + 1, used + tokens)


def settle(health: Health, now: float, tokens: int) -> None:
    """Correct the tokens counted for a call by ``tokens`` (its reported usage minus the
    estimate taken; negative gives tokens back)."""
    if tokens:
        bucket = _recent(health, now).setdefault(int(now), [0, 0])
        bucket[1] += tokens
