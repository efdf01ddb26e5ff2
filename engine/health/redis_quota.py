"""Quotas in Redis: the quota operations of :class:`~engine.health.redis_store.RedisHealthStore`,
on the same records, compare-and-set and local fallback as its breakers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from engine.health.breaker import Health
from engine.health.quota import QuotaGrant, QuotaPolicy, settle, take
from engine.health.store import LocalHealthStore, peek_quota

__all__ = ["RedisQuotas"]

_T = TypeVar("_T")


class RedisQuotas:
    """Mixed into the Redis store: everything here goes through its ``_change`` (atomic,
    bounded, degrading to the local store) and its cached reads."""

    _local: LocalHealthStore
    _errors: tuple[type[BaseException], ...]
    _down_until: float
    _clock: Callable[[], float]
    _aclients: Any

    def _change(self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]) -> _T:
        raise NotImplementedError

    async def _achange(
        self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]
    ) -> _T:
        raise NotImplementedError

    def _read(self, key: str, fresh: bool) -> str:
        raise NotImplementedError

    async def _aread(self, client: Any, key: str) -> str:
        raise NotImplementedError

    def _health(self, key: str, raw: str) -> Health | None:
        raise NotImplementedError

    def _failed(self, exc: BaseException) -> None:
        raise NotImplementedError

    def peek_quota(
        self, keys: Sequence[str], policies: Sequence[QuotaPolicy], now: float, tokens: int
    ) -> list[QuotaGrant]:
        if self._clock() < self._down_until:
            return self._local.peek_quota(keys, policies, now, tokens)
        try:
            values = [self._read(key, fresh=False) for key in keys]
        except self._errors as exc:
            self._failed(exc)
            return self._local.peek_quota(keys, policies, now, tokens)
        return [
            peek_quota(self._health(key, raw), policy, now, tokens)
            for key, raw, policy in zip(keys, values, policies, strict=True)
        ]

    def take_quota(self, key: str, policy: QuotaPolicy, now: float, tokens: int) -> QuotaGrant:
        return self._change(
            key,
            lambda h: take(h, policy, now, tokens),
            lambda: self._local.take_quota(key, policy, now, tokens),
        )

    def settle_quota(self, key: str, now: float, tokens: int) -> None:
        self._change(
            key,
            lambda h: settle(h, now, tokens),
            lambda: self._local.settle_quota(key, now, tokens),
        )

    async def apeek_quota(
        self, keys: Sequence[str], policies: Sequence[QuotaPolicy], now: float, tokens: int
    ) -> list[QuotaGrant]:
        if self._clock() < self._down_until:
            return self._local.peek_quota(keys, policies, now, tokens)
        try:
            client = self._aclients.get()
            values = [await self._aread(client, key) for key in keys]
        except self._errors as exc:
            self._failed(exc)
            return self._local.peek_quota(keys, policies, now, tokens)
        return [
            peek_quota(self._health(key, raw), policy, now, tokens)
            for key, raw, policy in zip(keys, values, policies, strict=True)
        ]

    async def atake_quota(
        self, key: str, policy: QuotaPolicy, now: float, tokens: int
    ) -> QuotaGrant:
        return await self._achange(
            key,
            lambda h: take(h, policy, now, tokens),
            lambda: self._local.take_quota(key, policy, now, tokens),
        )

    async def asettle_quota(self, key: str, now: float, tokens: int) -> None:
        await self._achange(
            key,
            lambda h: settle(h, now, tokens),
            lambda: self._local.settle_quota(key, now, tokens),
        )
