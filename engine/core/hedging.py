"""Hedged requests (``hedge:`` on a step; `engine.chain.hedge`): the race, decided in the
sans-IO core.

A hedged attempt is launched rather than called. While no copy has answered (for a stream:
handed over its first chunk) within the step's delay, another copy goes out, to another
member of the pool or to the same provider, up to ``max`` extra copies, each admitted by
its breaker and quota like any attempt and allowed by the retry budget of the provider
being hedged (no budget, no hedge). The first success wins; the copies still running are
abandoned (the shells cancel them and close their connections) and recorded as
``cancelled`` with code ``hedge_lost``. A copy that fails while another still runs is
recorded and the race goes on; the last copy to end decides the step when none succeeds.

The shells only launch, wait and cancel (`Launch`,
`Await`, `Abandon`,
`Follow`), so the path is a function of the outcomes and the
clock, and ``simulate`` plays the same race over virtual time.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from engine.chain.hedge import MIN_SAMPLES, Hedge
from engine.chain.spec import Step
from engine.core.acceptance import Judge, Validator, conclude
from engine.core.actions import (
    FIRST_CHUNK,
    Abandon,
    Action,
    Admit,
    Await,
    Call,
    Follow,
    Launch,
    Record,
    RetryAllowed,
    StreamDone,
    model_of,
)
from engine.core.classify import coded, health_verdict
from engine.core.quotas import acquire, quota_tokens, settle_usage
from engine.core.records import attempt_record
from engine.core.routing import LEARNED, TRACKED, Routing, choose_member, too_small
from engine.core.runtime import Runtime
from engine.health import Admission, HealthConfig, QuotaGrant
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.types.outcomes import Category, Outcome
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = ["Copy", "HedgeLatencies", "Owner", "Race", "RaceEnd", "race"]

#: Latencies kept per step for a percentile ``after``.
_KEPT: Final = 200
#: A percentile is computed again after this many new latencies.
_REFRESH: Final = 10


class _Samples:
    __slots__ = ("fresh", "latencies", "quantiles")

    def __init__(self) -> None:
        self.latencies: deque[float] = deque(maxlen=_KEPT)
        self.fresh = 0
        self.quantiles: dict[float, float] = {}


class HedgeLatencies:
    """Each hedged step's recent latencies (time to the answer, or to the first token for
    streams; a copy abandoned counts the time it ran, a lower bound), for ``after: p95``."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, str], _Samples] = {}

    def observe(self, chain: str, step: str, seconds: float) -> None:
        """One copy of ``chain``'s step ``step`` took ``seconds``."""
        samples = self._steps.get((chain, step))
        if samples is None:
            if len(self._steps) >= 1024:  # steps of reloaded chains: forget the old ones
                self._steps.clear()
            samples = self._steps[(chain, step)] = _Samples()
        samples.latencies.append(seconds)
        samples.fresh += 1

    def delay(self, chain: str, step: str, hedge: Hedge) -> float:
        """Seconds a copy of this step waits before the next goes out."""
        if hedge.quantile is None:
            return hedge.seconds
        samples = self._steps.get((chain, step))
        if samples is None or len(samples.latencies) < MIN_SAMPLES:
            return hedge.seconds
        known = samples.quantiles.get(hedge.quantile)
        if known is None or samples.fresh >= _REFRESH:
            ordered = sorted(samples.latencies)
            # Nearest rank: the smallest latency that at least this share of them reach.
            rank = max(math.ceil(hedge.quantile * len(ordered)) - 1, 0)
            known = samples.quantiles[hedge.quantile] = ordered[rank]
            samples.fresh = 0
        return known


@dataclass(slots=True)
class Copy:
    """One copy of a hedged attempt: where it went and what let it go."""

    number: int
    name: str
    model: str | None
    key: str
    provider: Any
    admission: Admission | None
    grant: QuotaGrant | None
    tokens: int
    started: float
    stamp: float
    tracked: bool = False


@dataclass(slots=True)
class RaceEnd:
    """How a race ended: the result the step goes on with (the winner's, or the last copy
    to fail) and its copy; ``records``: the other copies' attempts, in the order they ended
    (each already reported to the health store)."""

    result: Any
    copy: Copy
    records: list[dict[str, Any]] = field(default_factory=list)


class Owner(Protocol):
    """What a race asks of the executor running it."""

    runtime: Runtime
    health: HealthConfig | None
    routing: Routing
    hedges: HedgeLatencies

    judge: Judge
    validators: dict[str, Validator]

    def quiet_lookup(self, name: str) -> Any: ...


@dataclass(slots=True)
class Race:
    """What one race needs from the request around it: ``retry`` is the step's retry
    number, ``call`` the first copy's call (the others copy its stream timeouts and reset)."""

    owner: Owner
    chain: str
    step: Step
    request: ChatRequest
    asked: ChatRequest
    overrides: Mapping[str, Category]
    deadline: float
    tried: set[str]
    retry: int
    call: Call

    def conclude(self, result: Any, copy: Copy) -> Outcome:
        """A copy's result, classified and judged as any attempt's."""
        owner = self.owner
        return conclude(
            result, copy.model, self.step.accept, self.request, owner.judge, owner.validators,
            self.overrides, copy.name, copy.provider,
        )  # fmt: skip


def race(ctx: Race, first: Copy) -> Generator[Action, Any, RaceEnd]:
    """Run one hedged attempt, starting with ``first`` (admitted and charged like any
    attempt); return how it ended."""
    step, rt = ctx.step, ctx.owner.runtime
    hedge = step.hedge
    assert hedge is not None
    copies: dict[int, Copy] = {}
    records: list[dict[str, Any]] = []
    try:
        yield from _launch(ctx, first, ctx.call, copies)
        delay = ctx.owner.hedges.delay(ctx.chain, step.id, hedge)
        next_at: float | None = first.started + delay
        sent = 0
        while True:
            got = yield Await(next_at if sent < hedge.max else None)
            if got is None:  # slower than usual: one more copy, if one may go
                copy = yield from _hedge_copy(ctx, first, sent + 1)
                if copy is None:
                    next_at = None
                    sent = hedge.max
                    continue
                sent += 1
                left = ctx.deadline - copy.started
                timeouts = ctx.call.stream
                if timeouts is not None:  # the copy's own time left
                    timeouts = StreamTimeouts(min(timeouts.first_token, left), timeouts.idle, left)
                call = Call(
                    copy.provider, ctx.asked, min(step.timeout, left), copy.model, timeouts,
                    ctx.call.reset, copy.name,
                )  # fmt: skip
                yield from _launch(ctx, copy, call, copies)
                next_at = copy.started + delay
                continue
            number, result = got
            copy = copies.pop(number)
            if result == FIRST_CHUNK:  # a stream spoke first: it wins
                ended = rt.monotonic()
                ctx.owner.hedges.observe(ctx.chain, step.id, ended - copy.started)
                yield from _abandon(ctx, copies, copy, records)
                result = yield Follow(number)
                _untrack(ctx, copy)
                return RaceEnd(result, copy, records)
            _untrack(ctx, copy)
            outcome = ctx.conclude(result, copy)
            ended = rt.monotonic()
            if outcome.category in LEARNED:
                seconds = ended - copy.started
                if isinstance(result, StreamDone) and result.ttft is not None:
                    seconds = result.ttft
                ctx.owner.hedges.observe(ctx.chain, step.id, seconds)
            if outcome.category == "success" or not copies:
                yield from _abandon(ctx, copies, copy, records)
                return RaceEnd(result, copy, records)
            # One copy failed while another still runs: it is recorded, the race goes on.
            streamed = result if isinstance(result, StreamDone) else None
            records.append(_record(ctx, copy, outcome, ended, streamed))
            yield from _report(ctx, copy, outcome, ended)
    finally:  # the caller went away: nothing stays counted in flight
        for copy in copies.values():
            _untrack(ctx, copy)


def _launch(ctx: Race, copy: Copy, call: Call, copies: dict[int, Copy]) -> Generator[Action]:
    copies[copy.number] = copy
    if ctx.step.pool:
        ctx.tried.add(copy.key)
    if ctx.step.pool and ctx.step.strategy in TRACKED:
        copy.tracked = True
        ctx.owner.routing.started(copy.key)
    yield Launch(copy.number, call)


def _untrack(ctx: Race, copy: Copy) -> None:
    if copy.tracked:
        copy.tracked = False
        ctx.owner.routing.finished(copy.key)


def _abandon(
    ctx: Race, copies: dict[int, Copy], winner: Copy, records: list[dict[str, Any]]
) -> Generator[Action]:
    """Cancel the copies still running; each is recorded as a lost hedge."""
    if not copies:
        return
    yield Abandon(tuple(copies))
    ended = ctx.owner.runtime.monotonic()
    who = "the first copy" if winner.number == 0 else f"hedge {winner.number}"
    message = f"cancelled: {who} ({winner.name}) answered first"
    lost = coded("hedge_lost", message, {})
    for copy in list(copies.values()):
        del copies[copy.number]
        _untrack(ctx, copy)
        # What it ran is a lower bound of its latency: it was at least this slow.
        ctx.owner.hedges.observe(ctx.chain, ctx.step.id, ended - copy.started)
        records.append(_record(ctx, copy, lost, ended, None, cancelled=True))
        yield from _report(ctx, copy, lost, ended)


def _record(
    ctx: Race,
    copy: Copy,
    outcome: Outcome,
    ended: float,
    streamed: StreamDone | None,
    cancelled: bool = False,
) -> dict[str, Any]:
    return attempt_record(
        ctx.step, copy.model, outcome, ended - copy.started, copy.stamp, ctx.retry, ctx.step.id,
        copy.name, streamed=streamed, hedge=copy.number, cancelled=cancelled,
    )  # fmt: skip


def _report(ctx: Race, copy: Copy, outcome: Outcome, ended: float) -> Generator[Action]:
    """What a copy other than the deciding one came to, told to the health store: its
    quota's usage, and its breaker's verdict (none for a copy abandoned: it was only
    slower than another)."""
    health = ctx.owner.health
    if health is None:
        return
    rt = ctx.owner.runtime
    if copy.grant is not None and copy.grant.allowed and copy.tokens:
        correction = settle_usage(copy.name, copy.tokens, outcome.completion, rt.wall())
        if correction is not None:
            yield correction
    if copy.admission is None:
        return
    breaker, budget = health.policies(copy.name)
    failed = None if outcome.error_code == "hedge_lost" else health_verdict(outcome)
    yield Record(
        key=copy.key, policy=breaker, budget=budget, now=rt.wall(), failed=failed,
        probe=copy.admission.probe, retry_after=outcome.retry_after,
        retry=ctx.retry > 0 or copy.number > 0, left=ctx.deadline - ended,
    )  # fmt: skip


def _hedge_copy(ctx: Race, first: Copy, number: int) -> Generator[Action, Any, Copy | None]:
    """The next copy, admitted and charged, or None when none may go: the retry budget of
    the provider being hedged is spent, no member (or not the provider) is available, or
    there is no time left for one."""
    step, rt, health = ctx.step, ctx.owner.runtime, ctx.owner.health
    now = rt.monotonic()
    if ctx.deadline - now < 0.001:
        return None
    policies: tuple[BreakerPolicy, RetryBudgetPolicy] | None = None
    if health is not None:
        policies = health.policies(first.name)
        allowed = yield RetryAllowed(
            key=first.key, budget=policies[1], now=rt.wall(), left=ctx.deadline - now
        )
        if not allowed:
            return None
    if step.pool:
        if step.quota_wait:  # a race never stops to wait for a quota: no room, no copy
            step = dataclasses.replace(step, quota_wait=0.0)
        pick = yield from choose_member(
            step,
            health,
            ctx.owner.routing,
            ctx.asked,
            ctx.tried,
            ctx.owner.quiet_lookup,
            rt,
            ctx.deadline,
        )
        if pick.why is not None or pick.small is not None or pick.provider is None:
            return None
        model = model_of(pick.provider, pick.member.model)
        return Copy(
            number, pick.member.provider, model, pick.key, pick.provider, pick.admission,
            pick.grant, pick.tokens, rt.monotonic(), rt.wall(),
        )  # fmt: skip
    provider = first.provider
    if too_small(provider, first.model, ctx.asked) is not None:
        return None
    admission: Admission | None = None
    grant: QuotaGrant | None = None
    tokens = 0
    if health is not None and policies is not None:
        key = step.key
        admission = yield Admit(key=key, policy=policies[0], now=rt.wall(), left=ctx.deadline - now)
        if not admission.allowed:
            return None
        quota = health.quotas(first.name)
        if quota is not None:
            tokens = quota_tokens(ctx.asked, quota)
            grant = yield from acquire(
                first.name, quota, tokens, 0.0, rt.wall, lambda: ctx.deadline - rt.monotonic()
            )
            if not grant.allowed:
                if admission.probe:  # the probe slot it was given goes back unused
                    yield Record(
                        key=key, policy=policies[0], budget=policies[1], now=rt.wall(),
                        failed=None, probe=True, retry_after=None, retry=False,
                        left=ctx.deadline - now,
                    )  # fmt: skip
                return None
    return Copy(
        number, first.name, first.model, first.key, provider, admission, grant, tokens,
        rt.monotonic(), rt.wall(),
    )  # fmt: skip
