"""Whether a request may go: its key (authentication, the chains it may use), the key's
rpm/tpm and daily budget, and the worker's concurrency limit.

A key's limits live in the manager's health store, as the providers' quotas do (in
process, or in Redis shared by every worker and host): requests and tokens per minute
under ``quota:key:<name>``, the day's estimated spend, in micro-dollars, in a day ledger
``quota:day:key:<name>``. A request is refused once the day's spend has reached the
budget; the request that crosses it completes (its cost is known only after).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.gateway.failures import GatewayError
from engine.gateway.keys import GatewayKey, KeyRing
from engine.health import QuotaPolicy
from engine.health.quota import LEDGER_PREFIX, day_of, quota_key
from engine.types.completion import Completion

__all__ = ["Admission", "presented_key"]

_MICRO = 1_000_000  # a ledger counts micro-dollars: whole numbers, as token counts are


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY`` (OpenAI's clients) or
    ``x-api-key: KEY`` (Anthropic's)."""
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() or None if key is not None else None


class Admission:
    """The gateway's checks before a chain runs, and what it counts after."""

    def __init__(
        self,
        ring: KeyRing | None,
        store: Any,
        max_in_flight: int,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ring = ring
        self.store = store
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._wall = wall

    def authenticate(self, headers: dict[bytes, bytes]) -> GatewayKey | None:
        """The request's key (None when the gateway runs without keys); a 401 otherwise.
        The message never repeats what was presented."""
        if self.ring is None:
            return None
        presented = presented_key(headers)
        if presented is None:
            raise GatewayError(
                401,
                "missing_api_key",
                "no API key: send Authorization: Bearer KEY or x-api-key: KEY",
            )
        key = self.ring.find(presented)
        if key is None:
            raise GatewayError(401, "invalid_api_key", "the API key is not one of this gateway's")
        return key

    @staticmethod
    def permit(key: GatewayKey | None, model: str, mode: str) -> None:
        """A 403 unless the key may use this chain (named by its mode or by the alias)."""
        if key is None or key.chains is None or model in key.chains or mode in key.chains:
            return
        raise GatewayError(
            403,
            "chain_not_allowed",
            f"key '{key.name}' may not use '{model}'; it may use: {', '.join(key.chains)}",
        )

    def slot(self) -> None:
        """Take one of the worker's in-flight places, or a 503 with Retry-After."""
        if self.in_flight >= self.max_in_flight:
            raise GatewayError(
                503,
                "overloaded",
                f"this worker has {self.max_in_flight} requests in flight, its limit",
                retry_after=1,
            )
        self.in_flight += 1

    def release(self) -> None:
        """Give the place back (always, however the request ended)."""
        self.in_flight -= 1

    async def take(self, key: GatewayKey | None, tokens: int) -> None:
        """Count the request against its key's limits, or a 429 with Retry-After."""
        if key is None:
            return
        now = self._wall()
        if key.rpm is not None or key.tpm is not None:
            policy = QuotaPolicy(rpm=key.rpm, tpm=key.tpm)
            grant = await self.store.atake_quota(
                quota_key(f"key:{key.name}"), policy, now, tokens if key.tpm else 0
            )
            if not grant.allowed:
                raise GatewayError(
                    429,
                    "rate_limit_exceeded",
                    f"key '{key.name}' is over its limits (rpm {key.rpm}, tpm {key.tpm})",
                    retry_after=min(grant.wait, 61.0),
                )
        if key.daily_usd is not None:
            budget = QuotaPolicy(tpm=int(key.daily_usd * _MICRO))
            grant = await self.store.atake_quota(_ledger(key), budget, day_of(now), 1)
            if not grant.allowed:
                until_midnight = day_of(now) + 86_400 - now
                raise GatewayError(
                    429,
                    "budget_exceeded",
                    f"key '{key.name}' has spent its daily budget of ${key.daily_usd:g}",
                    retry_after=until_midnight,
                )

    async def settle(self, key: GatewayKey | None, tokens: int, answer: Completion | None) -> None:
        """Correct the key's counts by what the answer used and cost (failed attempts are
        not billed: only the answer's usage and cost count)."""
        if key is None:
            return
        now = self._wall()
        if key.tpm is not None and answer is not None and answer.tokens_total:
            delta = answer.tokens_total - tokens
            if delta:
                await self.store.asettle_quota(quota_key(f"key:{key.name}"), now, delta)
        if key.daily_usd is not None:
            spent = round((answer.cost_usd or 0.0) * _MICRO) if answer is not None else 0
            if spent != 1:  # one micro-dollar was taken up front
                await self.store.asettle_quota(_ledger(key), day_of(now), spent - 1)


def _ledger(key: GatewayKey) -> str:
    return f"{LEDGER_PREFIX}key:{key.name}"
