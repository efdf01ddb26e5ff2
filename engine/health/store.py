"""Where provider health lives: one interface, and the in-process store (the default).

A store keeps one `Health` record per breaker key
(``provider`` or ``provider:model``) and applies the breaker's rules to it atomically. The
executor's decision core asks for these operations as actions (health is I/O when it lives
in Redis); the shells perform them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from engine.health.breaker import (
    Admission,
    Health,
    admit,
    peek,
    probed,
    record_call,
    retry_allowed,
)
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.quota import QuotaGrant, QuotaPolicy, settle, take

__all__ = ["HealthStore", "LocalHealthStore"]


class HealthStore(Protocol):
    """What the engine asks of a health store (the in-process one, or Redis)."""

    def peek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        """Would each key admit a call now? (Changes nothing.)"""
        ...

    def admit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        """Admit (or refuse) one call, counting half-open probes."""
        ...

    def record(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        """One call's result (``failed`` None: not the provider's doing, not counted), and
        the request for the retry budget."""
        ...

    def retry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        """Whether one more same-step retry of ``key`` fits the retry budget."""
        ...

    def snapshot(self) -> Mapping[str, Health]:
        """Every record, for ``torq-fallback health`` and tests."""
        ...

    def probed(self, key: str, policy: BreakerPolicy, now: float, answered: bool) -> bool:
        """An active health check's result: an open breaker whose provider answered
        half-opens; returns whether it did."""
        ...

    def claim_probe(self, provider: str, holder: str, seconds: float) -> bool:
        """Whether ``holder`` is the one to probe ``provider`` for the next ``seconds`` (one
        prober per provider for all who share the store)."""
        ...

    def take_quota(self, key: str, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
        """Take a request and ``tokens`` from a quota record, or refuse."""
        ...

    def settle_quota(self, key: str, now: float, tokens: int) -> None:
        """Correct a quota record's tokens by ``tokens`` (reported minus estimated)."""
        ...

    async def atake_quota(
        self, key: str, policy: QuotaPolicy, now: float, tokens: int
    ) -> QuotaGrant:
        """The async twin of `take_quota`."""
        ...

    async def asettle_quota(self, key: str, now: float, tokens: int) -> None:
        """The async twin of `settle_quota`."""
        ...

    async def apeek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        """The async twin of `peek` (an event loop is never blocked on the store)."""
        ...

    async def aadmit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        """The async twin of `admit`."""
        ...

    async def arecord(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        """The async twin of `record`."""
        ...

    async def aretry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        """The async twin of `retry_allowed`."""
        ...


class LocalHealthStore:
    """Health in this process, shared by its threads and event loops (a lock, no I/O)."""

    #: No I/O: async shells call its operations directly, without awaiting a coroutine.
    in_process = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, Health] = {}
        #: Called with a key whose breaker has just opened (the prober wakes on it).
        self.on_open: Callable[[str], None] | None = None

    def _get(self, key: str) -> Health:
        found = self._records.get(key)
        if found is None:
            found = self._records[key] = Health()
        return found

    def peek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        with self._lock:
            return [
                peek(self._records.get(key), policy, now)
                for key, policy in zip(keys, policies, strict=True)
            ]

    def admit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        with self._lock:
            return admit(self._get(key), policy, now, force=force)

    def record(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        with self._lock:
            health = self._get(key)
            was = health.state
            record_call(health, policy, budget, now, failed, probe, retry_after, retry)
            opened = was != "open" and health.state == "open"
        if opened and self.on_open is not None:
            self.on_open(key)

    def probed(self, key: str, policy: BreakerPolicy, now: float, answered: bool) -> bool:
        with self._lock:
            return probed(self._get(key), policy, now, answered=answered)

    def claim_probe(self, provider: str, holder: str, seconds: float) -> bool:
        return True  # one process: its one prober probes

    def retry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        with self._lock:
            health = self._get(key)
            return retry_allowed(health, now, budget.ratio, budget.min_per_second, budget.window)

    def take_quota(self, key: str, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
        with self._lock:
            return take(self._get(key), policy, now, tokens)

    def settle_quota(self, key: str, now: float, tokens: int) -> None:
        with self._lock:
            settle(self._get(key), now, tokens)

    async def atake_quota(
        self, key: str, policy: QuotaPolicy, now: float, tokens: int
    ) -> QuotaGrant:
        return self.take_quota(key, policy, now, tokens)

    async def asettle_quota(self, key: str, now: float, tokens: int) -> None:
        self.settle_quota(key, now, tokens)

    def seed_usage(self, key: str, usage: dict[int, list[int]]) -> None:
        """Count at least ``usage`` (per second: [requests, tokens]) in ``key``'s quota record:
        what a shared store last said, when this store stands in for it."""
        with self._lock:
            mine = self._get(key).usage
            for second, (requests, tokens) in usage.items():
                bucket = mine.setdefault(second, [0, 0])
                bucket[0], bucket[1] = max(bucket[0], requests), max(bucket[1], tokens)

    def set(self, key: str, health: Health) -> None:
        """Put a breaker in a given state (``simulate --health``, tests)."""
        with self._lock:
            self._records[key] = health

    def snapshot(self) -> Mapping[str, Health]:
        with self._lock:
            return {key: Health.from_dict(h.to_dict()) for key, h in self._records.items()}

    # The async twins: the in-process store never waits on I/O, so they are the sync ones.

    async def apeek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        return self.peek(keys, policies, now)

    async def aadmit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        return self.admit(key, policy, now, force)

    async def arecord(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        self.record(key, policy, budget, now, failed, probe, retry_after, retry)

    async def aretry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        return self.retry_allowed(key, budget, now)
