"""Provider health shared across processes through Redis.

The breaker's rules run here in Python, on the same machine definition as the in-process
store; Redis keeps each breaker's record (JSON, namespaced, expiring) and a small
server-side script makes every change a compare-and-set, so concurrent processes never lose
each other's updates: a writer whose read was stale gets the current record back in the
same round trip and applies its change again.

Sync code uses a ``redis.Redis`` client; async code an ``redis.asyncio`` client per event
loop (closed with its loop, or by `aclose`), so health never blocks a loop.

Reads come from a short local cache (``cache_ttl`` seconds, refreshed by every write), so an
attempt costs at most one round trip in the steady state. If Redis cannot be reached the
store keeps serving from a local in-process store, says so once in the log, tries Redis
again every ``retry_interval`` seconds, and says so once more when it is back.

Redis never holds a request: every command has one deadline, whole (``timeout``, a few
milliseconds: connecting, sending and every read of the reply; never more than what is left
of the attempt; `engine.health.deadline`), past which the request goes on with local
health. A record that is not a breaker record (garbage, the wrong shape, numbers out of
range) or larger than `MAX_RECORD_BYTES` (only that much is ever read) counts as
absent, logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from engine.health.breaker import (
    Admission,
    Health,
    admit,
    peek,
    probed,
    retry_allowed,
)
from engine.health.deadline import command_deadline, command_seconds, deadline_connection
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.quota import LEDGER_PREFIX, LEDGER_TTL_MS
from engine.health.redis_quota import RedisQuotas
from engine.health.redis_records import (
    _CAS,
    _CAS_TRIES,
    _LEASE,
    _OVERSIZED,
    MAX_RECORD_BYTES,
    _async_client,
    _AsyncRedis,
    _bounded,
    _listed,
    _parse,
    _recorder,
    _shown,
)
from engine.health.store import LocalHealthStore
from engine.support.loops import LoopClients

__all__ = ["RedisHealthStore"]

_T = TypeVar("_T")

_log = logging.getLogger("engine.health")


class RedisHealthStore(RedisQuotas):
    """A `HealthStore` in Redis (``url``: ``redis://host:port/db``).

    ``namespace`` prefixes every key; records expire ``ttl`` seconds after their last change.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "torq:health",
        ttl: float = 3600.0,
        cache_ttl: float = 0.05,
        retry_interval: float = 1.0,
        timeout: float = 0.025,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis  # an optional dependency: pip install 'torq-fallback[redis]'

        self.url = url
        self.namespace = namespace
        self._ttl_ms = int(ttl * 1000)
        self._cache_ttl = cache_ttl
        self._retry_interval = retry_interval
        self._clock = clock
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        pool = self._client.connection_pool
        pool.connection_class = deadline_connection(pool.connection_class)
        self._cas = self._client.register_script(_CAS)
        self._lease = self._client.register_script(_LEASE)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
        self._bad_records: set[str] = set()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}
        self._local = LocalHealthStore()
        self._timeout = timeout
        self._aclients: LoopClients[_AsyncRedis] = LoopClients(lambda: _async_client(url, timeout))
        self._down_until = 0.0  # while Redis is unreachable: when to try it again
        self._degraded = False

    def __repr__(self) -> str:
        return f"RedisHealthStore({self.namespace!r})"  # the URL may hold a password

    @property
    def shared(self) -> bool:
        """Whether health is shared right now (False while Redis is unreachable)."""
        return not self._degraded

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _ttl(self, key: str) -> int:
        # A day's ledger (a gateway key's budget) outlives its day, whatever the record TTL.
        return max(self._ttl_ms, LEDGER_TTL_MS) if key.startswith(LEDGER_PREFIX) else self._ttl_ms

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._degraded
            self._degraded = True
            self._down_until = self._clock() + self._retry_interval
        if first:
            _log.warning(
                "Redis health store unreachable (%s); serving on local health until it is back",
                type(exc).__name__,
            )

    def _recovered(self) -> None:
        if not self._degraded:
            return
        with self._lock:
            was_down = self._degraded
            self._degraded = False
            self._down_until = 0.0
        if was_down:
            _log.warning("Redis health store reachable again; health is shared again")

    def _read(self, key: str, fresh: bool) -> str:
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and not fresh and now - cached[0] <= self._cache_ttl:
            return cached[1]
        # GETRANGE: never more than the limit (and a byte) crosses the wire, whatever is there.
        with command_deadline(command_seconds(self._timeout)):
            raw = _bounded(self._client.getrange(self._key(key), 0, MAX_RECORD_BYTES))
        self._recovered()  # Redis answered (a cached read says nothing of it)
        self._cache[key] = (now, raw)
        return raw

    def _health(self, key: str, raw: str) -> Health | None:
        """The record ``raw`` holds; None when absent, not a record, or oversized (logged
        once per key)."""
        if not raw:
            return None
        health = None if raw == _OVERSIZED else _parse(raw)
        if health is None and key not in self._bad_records:
            self._bad_records.add(key)
            _log.warning(
                "health record %s in Redis is %s; it counts as absent (it will be replaced)",
                _shown(key),
                "larger than the limit" if raw == _OVERSIZED else "not a breaker record",
            )
        return health

    def _change(self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]) -> _T:
        """Apply ``apply`` to the record atomically (compare-and-set, retried on conflict)."""
        if self._clock() < self._down_until:
            return local()
        try:
            raw = self._read(key, fresh=False)
            for _ in range(_CAS_TRIES):
                health = self._health(key, raw) or Health()
                result = apply(health)
                new = json.dumps(health.to_dict(), separators=(",", ":"))
                if new == raw:
                    break
                args: list[str | int] = [raw, new, self._ttl(key), MAX_RECORD_BYTES]
                with command_deadline(command_seconds(self._timeout)):
                    written, current = self._cas(keys=[self._key(key)], args=args)
                self._recovered()
                self._cache[key] = (self._clock(), str(current))
                if int(written) == 1:
                    break
                raw = str(current)  # someone else wrote first: apply ours to theirs
            else:
                _log.warning(
                    "health record %s changed %d times under one update", _shown(key), _CAS_TRIES
                )
        except self._errors as exc:
            self._failed(exc)
            return local()
        return result

    def peek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        if self._clock() < self._down_until:
            return self._local.peek(keys, policies, now)
        try:
            values = [self._read(key, fresh=False) for key in keys]
        except self._errors as exc:
            self._failed(exc)
            return self._local.peek(keys, policies, now)
        healths = [self._health(key, raw) for key, raw in zip(keys, values, strict=True)]
        return [peek(h, policy, now) for h, policy in zip(healths, policies, strict=True)]

    def admit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        return self._change(
            key,
            lambda h: admit(h, policy, now, force=force),
            lambda: self._local.admit(key, policy, now, force),
        )

    def record(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        self._change(
            key,
            _recorder(policy, budget, now, failed, probe, retry_after, retry),
            lambda: self._local.record(key, policy, budget, now, failed, probe, retry_after, retry),
        )

    def probed(self, key: str, policy: BreakerPolicy, now: float, answered: bool) -> bool:
        return self._change(
            key,
            lambda h: probed(h, policy, now, answered=answered),
            lambda: self._local.probed(key, policy, now, answered),
        )

    def claim_probe(self, provider: str, holder: str, seconds: float) -> bool:
        """A lease in Redis (``SET NX PX``): one prober per provider for every process that
        shares the store; while Redis is unreachable, each process probes for itself."""
        if self._clock() < self._down_until:
            return True
        name = f"{self.namespace}:probe:{provider}"
        try:
            with command_deadline(command_seconds(self._timeout)):
                won = self._lease(keys=[name], args=[holder, max(int(seconds * 1000), 1)])
            return int(won) == 1
        except self._errors as exc:
            self._failed(exc)
            return True

    def retry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        if self._clock() < self._down_until:
            return self._local.retry_allowed(key, budget, now)
        try:
            raw = self._read(key, fresh=False)
        except self._errors as exc:
            self._failed(exc)
            return self._local.retry_allowed(key, budget, now)
        health = self._health(key, raw) or Health()
        return retry_allowed(health, now, budget.ratio, budget.min_per_second, budget.window)

    def snapshot(self) -> Mapping[str, Health]:
        try:
            found: dict[str, Health] = {}
            prefix = self._key("")
            with command_deadline(max(self._timeout * 100, 1.0)):  # the whole listing, bounded
                for name in self._client.scan_iter(match=prefix + "*", count=500):
                    key = str(name)[len(prefix) :]
                    raw = _listed(self._client, name)
                    health = self._health(key, raw)
                    if health is not None:
                        found[key] = health
            return found
        except self._errors as exc:
            self._failed(exc)
            return self._local.snapshot()

    def close(self) -> None:
        """Close the connection pools (the async ones each in its own loop)."""
        self._client.close()
        self._aclients.close()

    async def aclose(self) -> None:
        """Close the pools, awaiting the running loop's (a frozen Redis holds it 1 s at most)."""
        self._client.close()
        try:
            async with asyncio.timeout(1.0):
                await self._aclients.aclose()
        except TimeoutError:
            _log.warning("the Redis health store did not close within a second")

    # -- async twins: the same operations through redis.asyncio ----------------------------

    async def aping(self) -> bool:
        """Whether Redis answers now: no cached read (what a readiness probe asks)."""
        try:
            async with asyncio.timeout(command_seconds(self._timeout)):
                await self._aclients.get().redis.ping()
        except self._errors as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    async def _aread(self, client: _AsyncRedis, key: str) -> str:
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] <= self._cache_ttl:
            return cached[1]
        async with asyncio.timeout(command_seconds(self._timeout)):
            raw = _bounded(await client.redis.getrange(self._key(key), 0, MAX_RECORD_BYTES))
        self._recovered()  # Redis answered
        self._cache[key] = (now, raw)
        return raw

    async def _achange(
        self, key: str, apply: Callable[[Health], _T], local: Callable[[], _T]
    ) -> _T:
        if self._clock() < self._down_until:
            return local()
        client = self._aclients.get()
        try:
            # Waiting for this process's turn is bounded too (each command has its deadline).
            async with asyncio.timeout(command_seconds(self._timeout) * 4):
                await client.lock(key).acquire()
            try:
                return await self._achange_locked(client, key, apply)
            finally:
                client.lock(key).release()
        except self._errors as exc:
            self._failed(exc)
            return local()

    async def _achange_locked(
        self, client: _AsyncRedis, key: str, apply: Callable[[Health], _T]
    ) -> _T:
        raw = await self._aread(client, key)
        for _ in range(_CAS_TRIES):
            health = self._health(key, raw) or Health()
            result = apply(health)
            new = json.dumps(health.to_dict(), separators=(",", ":"))
            if new == raw:
                break
            async with asyncio.timeout(command_seconds(self._timeout)):
                written, current = await client.cas(
                    keys=[self._key(key)], args=[raw, new, self._ttl(key), MAX_RECORD_BYTES]
                )
            self._recovered()
            self._cache[key] = (self._clock(), str(current))
            if int(written) == 1:
                break
            raw = str(current)
        return result

    async def apeek(
        self, keys: Sequence[str], policies: Sequence[BreakerPolicy], now: float
    ) -> list[Admission]:
        if self._clock() < self._down_until:
            return self._local.peek(keys, policies, now)
        try:
            client = self._aclients.get()
            values = [await self._aread(client, key) for key in keys]
        except self._errors as exc:
            self._failed(exc)
            return self._local.peek(keys, policies, now)
        healths = [self._health(key, raw) for key, raw in zip(keys, values, strict=True)]
        return [peek(h, policy, now) for h, policy in zip(healths, policies, strict=True)]

    async def aadmit(self, key: str, policy: BreakerPolicy, now: float, force: bool) -> Admission:
        return await self._achange(
            key,
            lambda h: admit(h, policy, now, force=force),
            lambda: self._local.admit(key, policy, now, force),
        )

    async def arecord(
        self, key: str, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
        failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
    ) -> None:  # fmt: skip
        await self._achange(
            key,
            _recorder(policy, budget, now, failed, probe, retry_after, retry),
            lambda: self._local.record(key, policy, budget, now, failed, probe, retry_after, retry),
        )

    async def aretry_allowed(self, key: str, budget: RetryBudgetPolicy, now: float) -> bool:
        if self._clock() < self._down_until:
            return self._local.retry_allowed(key, budget, now)
        try:
            raw = await self._aread(self._aclients.get(), key)
        except self._errors as exc:
            self._failed(exc)
            return self._local.retry_allowed(key, budget, now)
        health = self._health(key, raw) or Health()
        return retry_allowed(health, now, budget.ratio, budget.min_per_second, budget.window)
