"""Quotas in Redis: the quota operations of `RedisHealthStore`,
on the same records, compare-and-set and local fallback as its breakers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from engine.health.breaker import Health
from engine.health.quota import QuotaGrant, QuotaPolicy, settle, take
from engine.health.store import LocalHealthStore

__all__ = ["RedisQuotas"]

_T = TypeVar("_T")


class RedisQuotas:
    """Mixed into the Redis store: everything here goes through its ``_change`` (atomic,
    bounded, degrading to the local store). When it degrades, the local store first counts
    what Redis last said of the quota, so the process does not start the minute afresh."""

    _local: LocalHealthStore
    _cache: dict[str, tuple[float, str]]

    def _health(self, key: str, raw: str) -> Health | None:
        raise NotImplementedError  # the store's own

    def _local_take(self, key: str, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
        cached = self._cache.get(key)
        last = self._health(key, cached[1]) if cached is not None else None
        if last is not None and last.usage:
            self._local.seed_usage(key, last.usage)
        return self._local.take_quota(key, policy, now, tokens)

    def _change(self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]) -> _T:
        raise NotImplementedError  # the store's own

    async def _achange(
        self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]
    ) -> _T:
        raise NotImplementedError  # the store's own

    def take_quota(self, key: str, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
        return self._change(
            key,
            lambda h: take(h, policy, now, tokens),
            lambda: self._local_take(key, policy, now, tokens),
        )

    def settle_quota(self, key: str, now: float, tokens: int) -> None:
        self._change(
            key,
            lambda h: settle(h, now, tokens),
            lambda: self._local.settle_quota(key, now, tokens),
        )

    async def atake_quota(
        self, key: str, policy: QuotaPolicy, now: float, tokens: int
    ) -> QuotaGrant:
        return await self._achange(
            key,
            lambda h: take(h, policy, now, tokens),
            lambda: self._local_take(key, policy, now, tokens),
        )

    async def asettle_quota(self, key: str, now: float, tokens: int) -> None:
        await self._achange(
            key,
            lambda h: settle(h, now, tokens),
            lambda: self._local.settle_quota(key, now, tokens),
        )
