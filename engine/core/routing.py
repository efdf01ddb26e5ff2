"""Which member of a pool an attempt goes to (``pool:`` steps; `engine.chain.pools`).

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

import bisect
import math
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, NamedTuple

from engine.chain.pools import Member
from engine.chain.spec import Step
from engine.core.actions import Action, Admit, QuotaTake, Record, Sleep
from engine.core.member_stats import Routing
from engine.core.runtime import Runtime
from engine.core.tokens import count_tokens, estimate_tokens, fits_for_sure
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
    "too_small",
]

#: Output tokens assumed for a request that sets no max_tokens (cost strategy).
_OUTPUT_GUESS: Final = 512


def _draw(weights: Sequence[float], random: Callable[[], float]) -> int:
    point = random() * sum(weights)
    last = len(weights) - 1
    for index in range(last):
        point -= weights[index]
        if point < 0:
            return index
    return last


def _price(provider: Any, member: Member, tokens_in: int, tokens_out: int) -> float:
    estimate = getattr(provider, "estimate_cost", None)
    if not callable(estimate):
        return math.inf
    try:
        cost = estimate(member.model, tokens_in, tokens_out)
    except Exception:  # a provider that cannot price is simply not the cheapest
        return math.inf
    return float(cost) if isinstance(cost, int | float) else math.inf


def _no_cost(index: int) -> float:
    return 0.0


def _costs(
    members: Sequence[Member], lookup: Callable[[str], Any], request: ChatRequest
) -> Callable[[int], float]:
    """Each member's price for the request (the cost strategy)."""
    tokens_in = estimate_tokens(request)
    tokens_out = request.max_tokens or _OUTPUT_GUESS

    def cost_of(index: int) -> float:
        member = members[index]
        return _price(lookup(member.provider), member, tokens_in, tokens_out)

    return cost_of


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
        if shares is None and len(candidates) == len(members):  # every member, full weight
            bounds = step.bounds
            return min(bisect.bisect_right(bounds, random() * bounds[-1]), len(members) - 1)
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
        busy = [routing.in_flight.get(members[i].key, 0) for i in pool]
        fewest = [i for i, n in zip(pool, busy, strict=True) if n == min(busy)]
        return fewest[min(int(random() * len(fewest)), len(fewest) - 1)]
    if step.strategy == "latency":
        first = min(int(random() * len(pool)), len(pool) - 1)
        second = min(int(random() * (len(pool) - 1)), len(pool) - 2)
        second += second >= first
        a, b = pool[first], pool[second]
        lighter = routing.load(members[b].key, now) < routing.load(members[a].key, now)
        return b if lighter else a
    costs = [cost_of(i) for i in pool]  # cost: the cheapest, the first of equals
    return pool[costs.index(min(costs))]


class Choice(NamedTuple):
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
    #: the member's provider object, as the draw looked it up (None: look it up again, so
    #: that a lookup that raises is the attempt's recorded failure)
    provider: Any = None


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
    room = found[0] - (request.max_tokens or 0)
    if fits_for_sure(request, room):  # the common case, known without counting
        return None
    exact = count_tokens(request, model)
    if exact is None and estimate is None:
        estimate = estimate_tokens(request)
    tokens = exact if exact is not None else estimate
    assert tokens is not None
    if tokens <= room:
        return None
    how = "counted" if exact is not None else "about"
    out = f" + {request.max_tokens} out" if request.max_tokens else ""
    return (
        f"{model} holds {found[0]} tokens; the request needs {how} "
        f"{tokens + (request.max_tokens or 0)} ({tokens} in{out}); no call made"
    )


def _unavailable(
    step: Step,
    refused: list[Admission | None],
    grants: list[QuotaGrant | None],
    small: list[str | None],
) -> Choice:
    """The skipped attempt's choice when no member is available: the member closest to
    being available, why each is not, and its refusal (breaker, quota or window)."""
    members = step.pool

    def wait(i: int) -> float:
        admission, grant = refused[i], grants[i]
        if admission is not None:
            return admission.retry_in
        if grant is not None and not grant.allowed:
            return grant.wait
        return math.inf  # too small: waiting does not help

    if all(small):
        why = f"no member of pool '{step.id}' can hold the request: " + "; ".join(
            f"{m.provider}: {r}" for m, r in zip(members, small, strict=True)
        )
        return Choice(members[0], members[0].key, small=why)
    nearest = min(range(len(members)), key=wait)
    states = []
    for i, m in enumerate(members):
        admission = refused[i]
        if admission is not None:
            states.append(f"{m.provider} {admission.state.replace('_', '-')}")
        elif small[i] is not None:
            states.append(f"{m.provider} too small")
        else:
            states.append(f"{m.provider} out of quota")
    why = (
        f"no member of pool '{step.id}' is available ({', '.join(states)}; "
        f"room in {min(wait(nearest), 60.0):.3g}s)"
    )
    member = members[nearest]
    if refused[nearest] is not None:
        return Choice(member, member.key, refused[nearest], why)
    return Choice(member, member.key, None, why, grants[nearest])


#: No member has said no yet (stands for a list of Nones; never written to).
_NOBODY: Final[list[Any]] = []


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
    """Pick the member for a pool step's attempt and return the `Choice`.

    The member drawn is asked, in turn, whether its window holds the request, whether its
    breaker admits the call, and whether its quota has room; one that says no leaves the
    draw and another is drawn (those not yet tried in this request first). Nothing is asked
    of the members not drawn, so a pool costs about what a single step does. When none is
    left, the attempt waits for a quota within ``quota_wait``, or is skipped."""
    members = step.pool
    count = len(members)
    strategy = step.strategy
    # What each member drawn said, made on the first that says no (the usual draw's first
    # member says yes).
    refused: list[Admission | None] = _NOBODY
    grants: list[QuotaGrant | None] = _NOBODY
    small: list[str | None] = _NOBODY
    estimate: int | None = None
    tokens = 0
    waited = 0.0
    cost_of = _costs(members, lookup, request) if strategy == "cost" else _no_cost

    while True:
        now = rt.wall()
        if tried:  # a retry: the members not tried yet first
            fresh = [i for i in range(count) if members[i].key not in tried]
            rest = [i for i in range(count) if i not in fresh] if fresh else []
            candidates = fresh or list(range(count))
        else:
            candidates, rest = list(range(count)), []
        while candidates or rest:
            if not candidates:  # every untried member said no: a tried one may answer
                candidates, rest = rest, []
                continue
            if (
                strategy == "weighted"
                and len(candidates) == count
                and (not routing.recovered or step.slow_start <= 0)
            ):
                # The usual draw (as _pick makes it), without asking for shares first.
                bounds = step.bounds
                index = min(bisect.bisect_right(bounds, rt.random() * bounds[-1]), count - 1)
            else:
                shares = routing.shares(candidates, members, step.slow_start, now)
                index = _pick(step, candidates, shares, routing, rt.random, cost_of, rt.monotonic())
            candidates.remove(index)
            member = members[index]
            provider = lookup(member.provider)
            model = member.model or getattr(provider, "model", None)
            reason = too_small(provider, model, request)
            if reason is not None:
                if small is _NOBODY:
                    refused, grants, small = [None] * count, [None] * count, [None] * count
                small[index] = reason
                continue
            if health is None:
                return Choice(member, member.key, None, None, None, 0, None, provider)
            breaker, budget = health.policies(member.provider)
            left = deadline - rt.monotonic()
            admission: Admission = yield Admit(key=member.key, policy=breaker, now=now, left=left)
            routing.admitted(member.key, admission)
            if not admission.allowed:
                if refused is _NOBODY:
                    refused, grants, small = [None] * count, [None] * count, [None] * count
                refused[index] = admission
                continue
            quota = health.quotas(member.provider)
            if quota is None:
                return Choice(member, member.key, admission, None, None, 0, None, provider)
            if estimate is None:
                estimate = estimate_tokens(request)
            tokens = estimate + (request.max_tokens or 0) if quota.tpm is not None else 0
            taken: QuotaGrant = yield QuotaTake(
                key=quota_key(member.provider), policy=quota, now=now, tokens=tokens, left=left
            )
            if taken.allowed:
                return Choice(member, member.key, admission, None, taken, tokens, None, provider)
            if grants is _NOBODY:
                refused, grants, small = [None] * count, [None] * count, [None] * count
            grants[index] = taken
            if admission.probe:  # the probe slot it was given goes back unused
                yield Record(
                    key=member.key, policy=breaker, budget=budget, now=now, failed=None,
                    probe=True, retry_after=None, retry=False, left=left,
                )  # fmt: skip
        choice = _unavailable(step, refused, grants, small)
        # Only a quota is waited for (a breaker's cooldown is the chain's business).
        pause = choice.grant.wait if choice.grant is not None else math.inf
        if waited + pause > step.quota_wait or pause >= deadline - rt.monotonic():
            return choice
        waited += pause
        refused, grants, small = _NOBODY, _NOBODY, _NOBODY
        yield Sleep(pause)
