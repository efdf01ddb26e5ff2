"""Which member of a pool an attempt goes to (``pool:`` steps; :mod:`engine.chain.pools`).

Choosing is not an attempt. The members whose breakers are open (or, for a retry, that were
already tried, while another remains) leave the draw; the step's ``strategy`` picks among the
rest:

- ``weighted``: a draw by weight, from the runtime's randomness (deterministic in tests);
- ``priority``: the first available member, in order;
- ``least_busy``: the fewest requests in flight from this engine (ties drawn at random);
- ``latency``: power of two choices on each member's peak-EWMA latency (time to the first
  token, for streams), so a slow member is avoided; a member never measured is tried (one
  request at a time), and one not heard from lately decays toward being tried again;
- ``cost``: the cheapest for the request's estimated tokens, by the provider's price table.

A member whose breaker closed less than ``slow_start`` seconds ago weighs a share of its
weight that grows with the time since (other strategies skip it with the same odds, while
another member is there), so a deployment back from an outage is not flooded at once.
Only when no member is available does the step record one skipped attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from engine.chain.pools import Member
from engine.chain.spec import Step
from engine.core.actions import Action, Admit, Peek, QuotaPeek, QuotaTake, Sleep
from engine.core.runtime import Runtime
from engine.health import Admission, HealthConfig, QuotaGrant
from engine.health.quota import quota_key
from engine.types.request import ChatRequest

#: Strategies that count each member's requests in flight.
TRACKED: Final = frozenset({"least_busy", "latency"})
#: Outcomes whose time is learnt as a member's latency (a timeout is the slowest of all).
LEARNED: Final = frozenset({"success", "timeout"})

__all__ = [
    "LEARNED",
    "TRACKED",
    "Choice",
    "Routing",
    "choose_member",
    "estimate_tokens",
    "member_key",
    "too_small",
]

#: Seconds over which a latency sample's weight decays to 1/e (as Finagle's peak EWMA).
_DECAY: Final = 10.0
#: The least share of its weight a recovering member gets (it must be tried to recover).
_SLOW_START_FLOOR: Final = 0.05
#: What a member never measured costs while a request to it is out (any measured one wins).
_UNKNOWN: Final = 1e9
#: Output tokens assumed for a request that sets no max_tokens (cost strategy).
_OUTPUT_GUESS: Final = 512

_ROOM: Final = QuotaGrant(True)
_PASS: Final = Admission(True)


def member_key(member: Member) -> str:
    """A member's breaker key: like a step's, ``provider`` or ``provider:model``."""
    return member.key


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

    def load(self, key: str, now: float) -> float:
        """The member's peak-EWMA latency, decayed while it is not heard from (so that a
        slow one is tried again now and then: it may have recovered, as with Finagle's peak
        EWMA). A member never measured costs nothing (it is tried), unless a request to it
        is already out: one probe at a time."""
        known = self.latency.get(key)
        if known is None:
            return _UNKNOWN if self.in_flight.get(key, 0) else 0.0
        return known.value * math.exp(-max(now - known.at, 0.0) / _DECAY)


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
    shares: list[float] | None,
    routing: Routing,
    random: Callable[[], float],
    cost_of: Callable[[int], float],
    now: float,
) -> int:
    members = step.pool
    if step.strategy == "weighted":
        if shares is None:
            weights = [members[i].weight for i in candidates]
        else:
            weights = [members[i].weight * shares[n] for n, i in enumerate(candidates)]
        return candidates[_draw(weights, random)]
    # Slow start for the other strategies: a recovering member stays in the draw with the
    # odds of its share, as long as another member is in it.
    if shares is None:
        pool = candidates
    else:
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
        lighter = routing.load(member_key(members[b]), now) < routing.load(
            member_key(members[a]), now
        )
        return b if lighter else a
    costs = [cost_of(i) for i in pool]  # cost: the cheapest, the first of equals
    return pool[costs.index(min(costs))]


@dataclass(frozen=True, slots=True)
class Choice:
    """The member an attempt goes to, its breaker key, its admission and quota grant (None
    without health or quota), the tokens taken from its quota; ``why`` is set when no
    member is available (``member`` is then the one closest to being available)."""

    member: Member
    key: str
    admission: Admission | None = None
    why: str | None = None
    grant: QuotaGrant | None = None
    tokens: int = 0
    #: set when no member's context window can hold the request (why not)
    small: str | None = None


def too_small(
    provider: Any, model: str | None, request: ChatRequest, estimate: int | None = None
) -> str | None:
    """Why ``model`` cannot hold ``request`` (its estimated input plus the output it asks
    for), by the provider's catalogue; None when it can, or when its window is unknown.
    ``estimate``: the request's input tokens, when already known."""
    window = getattr(provider, "context_window", None)
    if not callable(window):
        return None
    try:
        found = window(model)
    except Exception:  # a provider that cannot say is never skipped for it
        return None
    if not isinstance(found, tuple) or not found or not isinstance(found[0], int):
        return None
    if estimate is None:
        estimate = estimate_tokens(request)
    needed = estimate + (request.max_tokens or 0)
    if needed <= found[0]:
        return None
    out = f" + {request.max_tokens} out" if request.max_tokens else ""
    return (
        f"{model} holds {found[0]} tokens; the request needs about {needed} "
        f"({estimate} in{out}); no call made"
    )


def _unavailable(
    step: Step, looked: list[Admission], grants: list[QuotaGrant | None], keys: list[str]
) -> Choice:
    def wait(i: int) -> float:
        grant = grants[i]
        blocked = grant is not None and not grant.allowed
        return max(looked[i].retry_in if not looked[i].allowed else 0.0,
                   grant.wait if blocked and grant is not None else 0.0)  # fmt: skip

    members = step.pool
    nearest = min(range(len(members)), key=wait)
    states = []
    for i, m in enumerate(members):
        grant = grants[i]
        if not looked[i].allowed:
            states.append(f"{m.provider} {looked[i].state.replace('_', '-')}")
        elif grant is not None and not grant.allowed:
            states.append(f"{m.provider} out of quota")
        else:
            states.append(f"{m.provider} refused")
    why = (
        f"no member of pool '{step.id}' is available ({', '.join(states)}; "
        f"room in {min(wait(nearest), 60.0):.3g}s)"
    )
    grant = grants[nearest]
    if looked[nearest].allowed and grant is not None and not grant.allowed:
        return Choice(members[nearest], keys[nearest], None, why, grant)
    return Choice(members[nearest], keys[nearest], looked[nearest], why)


def choose_member(
    step: Step,
    health: HealthConfig | None,
    routing: Routing,
    request: ChatRequest,
    tried: set[str],
    lookup: Callable[[str], Any],
    rt: Runtime,
    deadline: float,
) -> Generator[Action, Any, Choice]:
    """Pick the member for a pool step's attempt. Yields the operations it needs (one look
    at every breaker and quota; taking the chosen one's quota and admitting it; a wait for
    quota within ``quota_wait``) and returns the :class:`Choice`."""
    members = step.pool
    keys = [m.key for m in members]
    count = len(members)
    # Whether a member's window can hold the request is asked of the member drawn (almost
    # always it can), and remembered: one that cannot leaves the draw.
    small: list[str | None] = [None] * count
    policies = [health.policies(m.provider)[0] for m in members] if health else []
    quotas = [health.quotas(m.provider) for m in members] if health else [None] * count
    limited = [i for i, q in enumerate(quotas) if q is not None]
    tokens = estimate_tokens(request) + (request.max_tokens or 0) if limited else 0

    def cost_of(index: int) -> float:
        member = members[index]
        estimate = estimate_tokens(request)
        out = request.max_tokens or _OUTPUT_GUESS
        return _price(lookup(member.provider), member, estimate, out)

    waited = 0.0
    estimate: int | None = None
    while True:
        now, left = rt.wall(), deadline - rt.monotonic()
        looked: list[Admission] = [_PASS] * count
        if health is not None:
            looked = yield Peek(keys=keys, policies=policies, now=now, left=left)
        grants: list[QuotaGrant | None] = [None] * count
        if limited:
            peeked: list[QuotaGrant] = yield QuotaPeek(
                keys=[quota_key(members[i].provider) for i in limited],
                policies=[q for q in quotas if q is not None], now=now, tokens=tokens, left=left,
            )  # fmt: skip
            for i, grant in zip(limited, peeked, strict=True):
                grants[i] = grant
        open_ = [
            i
            for i, a in enumerate(looked)
            if a.allowed and (grants[i] or _ROOM).allowed and (small is None or small[i] is None)
        ]
        fresh = [i for i in open_ if keys[i] not in tried]
        candidates = fresh or open_  # a retry goes to another member while one is left
        while candidates:
            shares = (
                [_slow_start(looked[i], step, now) for i in candidates]
                if health is not None and any(looked[i].recovered_at for i in candidates)
                else None
            )
            index = _pick(step, candidates, shares, routing, rt.random, cost_of, rt.monotonic())
            if estimate is None:
                estimate = estimate_tokens(request)
            member = members[index]
            provider = lookup(member.provider)
            reason = too_small(provider, member.model or getattr(provider, "model", None),
                               request, estimate)  # fmt: skip
            if reason is not None:
                small[index] = reason
                candidates.remove(index)
                if all(small):
                    why = f"no member of pool '{step.id}' can hold the request: " + "; ".join(
                        f"{m.provider}: {r}" for m, r in zip(members, small, strict=True)
                    )
                    return Choice(members[0], keys[0], small=why)
                continue
            quota = quotas[index]
            if quota is not None:
                taken: QuotaGrant = yield QuotaTake(
                    key=quota_key(members[index].provider), policy=quota, now=now,
                    tokens=tokens, left=left,
                )  # fmt: skip
                grants[index] = taken
                if not taken.allowed:  # used up meanwhile (another process): choose again
                    candidates.remove(index)
                    continue
            if health is None:
                return Choice(members[index], keys[index], None, None, grants[index], tokens)
            admission: Admission = yield Admit(
                key=keys[index], policy=policies[index], now=now, left=left
            )
            if admission.allowed:
                return Choice(members[index], keys[index], admission, None, grants[index], tokens)
            looked[index] = admission  # its probe slots were taken meanwhile: choose again
            candidates.remove(index)
        choice = _unavailable(step, looked, grants, keys)
        # Only a quota is waited for (a breaker's cooldown is the chain's business).
        pause = choice.grant.wait if choice.grant is not None else math.inf
        if waited + pause > step.quota_wait or pause >= deadline - rt.monotonic():
            return choice
        waited += pause
        yield Sleep(pause)
