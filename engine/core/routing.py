"""Which member of a pool an attempt goes to (``pool:`` steps; :mod:`engine.chain.pools`).

Choosing is not an attempt. The members whose breakers are open (or, for a retry, that were
already tried, while another remains) leave the draw; the step's ``strategy`` picks among the
rest:

- ``weighted``: a draw by weight, from the runtime's randomness (deterministic in tests);
- ``priority``: the first available member, in order;
- ``least_busy``: the fewest requests in flight from this engine (ties drawn at random);
- ``latency``: power of two choices on each member's peak-EWMA latency (time to the first
  token, for streams) times its requests in flight, so a slow or loaded member is avoided
  and a member never measured is tried;
- ``cost``: the cheapest for the request's estimated tokens, by the provider's price table.

A member whose breaker closed less than ``slow_start`` seconds ago weighs a share of its
weight that grows with the time since (other strategies skip it with the same odds, while
another member is there), so a deployment back from an outage is not flooded at once.
Only when no member is available does the step record one skipped attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final

from engine.chain.pools import Member
from engine.chain.spec import Step
from engine.core.actions import Admit, HealthOp, Peek, key_part
from engine.health import Admission, HealthConfig
from engine.types.request import ChatRequest

__all__ = ["Choice", "Routing", "choose_member", "estimate_tokens", "member_key"]

#: Seconds over which a latency sample's weight decays to 1/e (as Finagle's peak EWMA).
_DECAY: Final = 10.0
#: The least share of its weight a recovering member gets (it must be tried to recover).
_SLOW_START_FLOOR: Final = 0.05
#: Output tokens assumed for a request that sets no max_tokens (cost strategy).
_OUTPUT_GUESS: Final = 512

Choice = tuple[Member, str, Admission | None, str | None]


def member_key(member: Member) -> str:
    """A member's breaker key: like a step's, ``provider`` or ``provider:model``."""
    provider = key_part(member.provider)
    return f"{provider}:{key_part(member.model)}" if member.model else provider


class _PeakEwma:
    __slots__ = ("at", "value")

    def __init__(self, value: float, at: float) -> None:
        self.value = value
        self.at = at

    def add(self, sample: float, now: float) -> None:
        if sample > self.value:  # a peak counts at once; good news only decays in
            self.value = sample
        else:
            weight = math.exp(-max(now - self.at, 0.0) / _DECAY)
            self.value = self.value * weight + sample * (1.0 - weight)
        self.at = now


class Routing:
    """What this engine knows of each member: its requests in flight and its latency."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.latency: dict[str, _PeakEwma] = {}

    def started(self, key: str) -> None:
        """A call to ``key`` went out."""
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def finished(self, key: str) -> None:
        """A call to ``key`` came back (or was abandoned)."""
        self.in_flight[key] = max(self.in_flight.get(key, 1) - 1, 0)

    def observe(self, key: str, seconds: float, now: float) -> None:
        """A call to ``key`` answered (or timed out) after ``seconds``."""
        known = self.latency.get(key)
        if known is None:
            self.latency[key] = _PeakEwma(seconds, now)
        else:
            known.add(seconds, now)

    def load(self, key: str) -> float:
        """Peak-EWMA latency times (requests in flight + 1); 0 for a member never measured."""
        known = self.latency.get(key)
        return 0.0 if known is None else known.value * (self.in_flight.get(key, 0) + 1)


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap estimate of a request's input tokens (about 4 characters a token, plus a few
    per message and the tools' definitions)."""
    chars = len(request.system or "")
    for message in request.messages:
        chars += len(message.content or "") + 16
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + 200
    return chars // 4 + 1


def _slow_start(admission: Admission, step: Step, now: float) -> float:
    since = now - admission.recovered_at
    if step.slow_start <= 0 or admission.recovered_at <= 0 or since >= step.slow_start:
        return 1.0
    return max(since / step.slow_start, _SLOW_START_FLOOR)


def _draw(weights: Sequence[float], random: Callable[[], float]) -> int:
    total = sum(weights)
    point = random() * total
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def _price(provider: Any, member: Member, tokens_in: int, tokens_out: int) -> float:
    estimate = getattr(provider, "estimate_cost", None)
    if not callable(estimate):
        return math.inf
    try:
        cost = estimate(member.model, tokens_in, tokens_out)
    except Exception:  # a provider that cannot price is simply not the cheapest
        return math.inf
    return float(cost) if isinstance(cost, int | float) else math.inf


def _pick(
    step: Step,
    candidates: list[int],
    shares: list[float],
    routing: Routing,
    random: Callable[[], float],
    cost_of: Callable[[int], float],
) -> int:
    members = step.pool
    if step.strategy == "weighted":
        weights = [members[i].weight * shares[n] for n, i in enumerate(candidates)]
        return candidates[_draw(weights, random)]
    # Slow start for the other strategies: a recovering member stays in the draw with the
    # odds of its share, as long as another member is in it.
    kept = [i for n, i in enumerate(candidates) if shares[n] >= 1.0 or random() < shares[n]]
    pool = kept or candidates
    if step.strategy == "priority" or len(pool) == 1:
        return pool[0]
    if step.strategy == "least_busy":
        busy = [routing.in_flight.get(member_key(members[i]), 0) for i in pool]
        fewest = [i for i, n in zip(pool, busy, strict=True) if n == min(busy)]
        return fewest[min(int(random() * len(fewest)), len(fewest) - 1)]
    if step.strategy == "latency":
        first = min(int(random() * len(pool)), len(pool) - 1)
        second = min(int(random() * (len(pool) - 1)), len(pool) - 2)
        second += second >= first
        a, b = pool[first], pool[second]
        return (
            b if routing.load(member_key(members[b])) < routing.load(member_key(members[a])) else a
        )
    costs = [cost_of(i) for i in pool]  # cost: the cheapest, the first of equals
    return pool[costs.index(min(costs))]


def choose_member(
    step: Step,
    health: HealthConfig | None,
    routing: Routing,
    request: ChatRequest,
    tried: set[str],
    lookup: Callable[[str], Any],
    random: Callable[[], float],
    now: float,
    left: float,
) -> Generator[HealthOp, Any, Choice]:
    """Pick the member for a pool step's attempt: yields the health operations it needs (one
    look at every breaker, then admitting the one chosen), returns ``(member, key,
    admission, None)``, or the member closest to a probe with its refusal and ``why`` when
    no member is available."""
    members = step.pool
    keys = [member_key(m) for m in members]
    if health is not None:
        policies = [health.policies(m.provider)[0] for m in members]
        looked: list[Admission] = yield Peek(keys=keys, policies=policies, now=now, left=left)
    else:
        looked = [Admission(True)] * len(members)
    candidates = [i for i, a in enumerate(looked) if a.allowed]
    fresh = [i for i in candidates if keys[i] not in tried]
    candidates = fresh or candidates  # a retry goes to another member while one is left
    tokens_in = estimate_tokens(request)
    tokens_out = request.max_tokens or _OUTPUT_GUESS

    def cost_of(index: int) -> float:
        member = members[index]
        return _price(lookup(member.provider), member, tokens_in, tokens_out)

    while candidates:
        shares = [_slow_start(looked[i], step, now) for i in candidates]
        index = _pick(step, candidates, shares, routing, random, cost_of)
        if health is None:
            return members[index], keys[index], None, None
        admission: Admission = yield Admit(
            key=keys[index], policy=policies[index], now=now, left=left
        )
        if admission.allowed:
            return members[index], keys[index], admission, None
        looked[index] = admission  # its probe slots were taken meanwhile: choose again
        candidates.remove(index)
    nearest = min(range(len(members)), key=lambda i: looked[i].retry_in)
    states = ", ".join(
        f"{m.provider} {looked[i].state.replace('_', '-')}" for i, m in enumerate(members)
    )
    why = f"no member of pool '{step.id}' is available ({states}; a probe in " \
        f"{looked[nearest].retry_in:.3g}s)"  # fmt: skip
    return members[nearest], keys[nearest], looked[nearest], why
