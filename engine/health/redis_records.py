"""Breaker records as Redis keeps them: the compare-and-set script, reading a record within its
size limit, telling a record from garbage, and the change an attempt makes."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

from engine.health.breaker import (
    Health,
    record_call,
)
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy

__all__ = ["MAX_RECORD_BYTES"]


_CAS_TRIES = 256  # each conflict means another writer succeeded: this ends


#: Largest record read; a larger one (no real record comes near) counts as absent.
MAX_RECORD_BYTES = 64 * 1024


#: What a read of an oversized record gives, and what a write over one expects.
_OVERSIZED = "!oversized"


# KEYS[1]: the record; ARGV: the value read (or _OVERSIZED), the value to write, TTL in ms,
# the size limit. Returns {1, written} or {0, what is there now (or _OVERSIZED)}.
_CAS = """
local current = redis.call('GET', KEYS[1]) or ''
local limit = tonumber(ARGV[4])
local matches = current == ARGV[1] or (ARGV[1] == '!oversized' and #current > limit)
if not matches then
  if #current > limit then return {0, '!oversized'} end
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ARGV[2]}
"""


class _AsyncRedis:
    """An asyncio Redis client of one event loop, with the compare-and-set script."""

    def __init__(self, redis: Any, cas: Any) -> None:
        self.redis = redis
        self.cas = cas
        # Tasks of one process change a record one at a time: optimistic compare-and-set is
        # for other processes; among 50 tasks of this loop it would retry in a storm.
        self.locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        found = self.locks.get(key)
        if found is None:
            found = self.locks[key] = asyncio.Lock()
        return found

    async def aclose(self) -> None:
        await self.redis.aclose()


def _async_client(url: str, timeout: float) -> _AsyncRedis:
    """A redis.asyncio client for one event loop, every command bounded by ``timeout``."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
    )
    return _AsyncRedis(client, client.register_script(_CAS))


def _bounded(raw: Any) -> str:
    """A record as read with GETRANGE 0..limit: itself, or the oversized marker."""
    text = str(raw or "")
    return _OVERSIZED if len(text) > MAX_RECORD_BYTES else text


def _listed(client: Any, name: str) -> str:
    """A key met while listing the namespace, read as a record: a key of another type there
    (a hash, say) is not a record, and the listing goes on past it."""
    import redis

    try:
        return _bounded(client.getrange(name, 0, MAX_RECORD_BYTES))
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        return "[]"  # what `_parse` tells from a record: counted absent, said once


def _parse(raw: str) -> Health | None:
    """The breaker record in ``raw``, or None when it is not one."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            return None
        health = Health.from_dict(data)
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        return None
    numbers = (health.open_until, health.consecutive, health.openings, health.probes,
               health.recovered_at)  # fmt: skip
    if health.state not in ("closed", "open", "half_open") or not all(
        math.isfinite(n) and abs(n) < 1e15 for n in numbers
    ):
        return None
    return health


def _shown(key: str) -> str:
    """A key as printed: control characters shown as escapes."""
    return key if key.isprintable() else key.encode("unicode_escape").decode()


def _recorder(
    policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float, failed: bool | None,
    probe: bool, retry_after: float | None, retry: bool,
) -> Callable[[Health], None]:  # fmt: skip
    def apply(health: Health) -> None:
        record_call(health, policy, budget, now, failed, probe, retry_after, retry)

    return apply


# Take the probe lease, or renew it for its holder (from now on: a holder probing again is
# the only one to, for a whole interval more), atomically.
_LEASE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
