"""A provider's circuit breaker: a small state machine (closed, open, half_open) built once
with ``transitions``, like the chains, and the same definition drawn by ``render``.

The breaker's numbers live in a `Health` record (so a store can keep them anywhere);
`admit` and `record` move the record through the machine:

- closed: calls pass. ``failure_threshold`` consecutive failures, or a failure rate of at
  least ``failure_rate`` over ``window`` seconds with ``min_calls`` calls, ``trip`` it open.
- open: calls are refused (skipped, ``circuit_open``) until ``open_until``; the cooldown
  grows by ``cooldown_multiplier`` on each consecutive opening, up to ``cooldown_max``.
  A failure with a Retry-After keeps it open at least that long; nothing shortens an
  opening.
- held: a failure with a Retry-After, below the threshold, opens it for exactly what the
  provider said (``held``: no cooldown, no opening counted). The provider said when to come
  back, and said nothing more.
- half_open: after the cooldown (``cool``), exactly ``half_open_probes`` calls at once are
  let through; a success ``recover`` s it closed, a failure ``trip`` s it open again for
  longer. After a held opening, a failed probe still below the threshold ``release`` s it
  closed (the failure counted; with a Retry-After of its own, it is held again for that
  long): a 0.2 s Retry-After never costs a cooldown on its own. The rest behave as open.

Only ``retryable`` and ``timeout`` outcomes count as failures: a ``non_retryable`` outcome is
the request's fault, and the provider answered.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Final

from transitions import Machine

from engine.health.policy import BreakerPolicy, RetryBudgetPolicy

__all__ = [
    "BREAKER_STATES",
    "BREAKER_TRANSITIONS",
    "MAX_OPENINGS",
    "Admission",
    "Health",
    "admit",
    "cooldown_for",
    "peek",
    "record",
]

BREAKER_STATES: Final = ("closed", "open", "half_open")
#: (trigger, source, dest) of the breaker machine: what runs and what is drawn.
BREAKER_TRANSITIONS: Final = (
    ("trip", "closed", "open"),
    ("cool", "open", "half_open"),
    ("recover", "half_open", "closed"),
    ("trip", "half_open", "open"),
    ("release", "half_open", "closed"),
)


@functools.cache
def _machine() -> Machine:
    """The breaker machine, built once, on first use."""
    return Machine(
        model=None,
        states=list(BREAKER_STATES),
        transitions=[{"trigger": t, "source": s, "dest": d} for t, s, d in BREAKER_TRANSITIONS],
        initial="closed",
        auto_transitions=False,
    )


@dataclass
class Health:
    """One provider's breaker record (plain data: a store can serialise it)."""

    state: str = "closed"
    consecutive: int = 0
    #: per second (int(time)): [calls, failures] -- bounded by the window, whatever the load
    calls: dict[int, list[int]] = field(default_factory=dict)
    open_until: float = 0.0
    openings: int = 0
    probes: int = 0
    #: per second: [requests, retries] -- the retry budget's traffic
    traffic: dict[int, list[int]] = field(default_factory=dict)
    #: when it last closed after an opening (wall clock; 0: never): pools' slow start
    recovered_at: float = 0.0
    #: per second: [requests, tokens] -- a provider's use, in its quota record only
    usage: dict[int, list[int]] = field(default_factory=dict)
    #: the last active health check (wall clock; 0: never) and whether it was answered
    probed_at: float = 0.0
    probe_answered: bool = False
    #: until when the provider itself said to stay away (Retry-After): no probe shortens it
    retry_until: float = 0.0
    #: the opening is a Retry-After's alone (below the threshold): it lasts what was said
    held: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what the Redis store keeps)."""
        return {
            "state": self.state,
            "consecutive": self.consecutive,
            "calls": {str(k): v for k, v in self.calls.items()},
            "open_until": self.open_until,
            "openings": self.openings,
            "probes": self.probes,
            "traffic": {str(k): v for k, v in self.traffic.items()},
            "recovered_at": self.recovered_at,
            **({"usage": {str(k): v for k, v in self.usage.items()}} if self.usage else {}),
            **(
                {"probed_at": self.probed_at, "probe_answered": self.probe_answered}
                if self.probed_at
                else {}
            ),
            **({"retry_until": self.retry_until} if self.retry_until else {}),
            **({"held": True} if self.held else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Health:
        """The inverse of `to_dict`."""
        return cls(
            state=str(data.get("state", "closed")),
            consecutive=int(data.get("consecutive", 0)),
            calls={int(k): [int(x) for x in v] for k, v in data.get("calls", {}).items()},
            open_until=float(data.get("open_until", 0.0)),
            openings=int(data.get("openings", 0)),
            probes=int(data.get("probes", 0)),
            traffic={int(k): [int(x) for x in v] for k, v in data.get("traffic", {}).items()},
            recovered_at=float(data.get("recovered_at", 0.0)),
            usage={int(k): [int(x) for x in v] for k, v in data.get("usage", {}).items()},
            probed_at=float(data.get("probed_at", 0.0)),
            probe_answered=bool(data.get("probe_answered", False)),
            retry_until=float(data.get("retry_until", 0.0)),
            held=bool(data.get("held", False)),
        )


@dataclass(slots=True)
class Admission:
    """Whether a call may go to the provider now: ``probe`` when it is a half-open probe;
    when refused, ``retry_in`` seconds until the breaker lets a probe through;
    ``recovered_at`` when it last closed after an opening (0: never)."""

    allowed: bool
    probe: bool = False
    retry_in: float = 0.0
    state: str = "closed"
    recovered_at: float = 0.0


_PASS: Final = Admission(True)
_CLOSED: Final = Admission(True, state="closed")

#: Openings counted at most (the cooldown reached its maximum long before).
MAX_OPENINGS: Final = 1_000_000


def cooldown_for(policy: BreakerPolicy, openings: int) -> float:
    """Seconds an opening lasts: ``cooldown * multiplier ** (openings - 1)``, capped at
    ``cooldown_max``. Computed without ever forming a number past the cap, so any count of
    openings and any multiplier give a finite answer."""
    growth = max(openings - 1, 0)
    if policy.cooldown >= policy.cooldown_max:
        return policy.cooldown_max
    if policy.cooldown_multiplier <= 1.0 or growth == 0:
        return min(policy.cooldown, policy.cooldown_max)
    # The exponent at which the cap is reached: past it, the cap is the answer.
    limit = math.log(policy.cooldown_max / policy.cooldown) / math.log(policy.cooldown_multiplier)
    if growth >= limit:
        return policy.cooldown_max
    return min(policy.cooldown * policy.cooldown_multiplier**growth, policy.cooldown_max)


def _fire(health: Health, trigger: str) -> None:
    _machine().events[trigger].trigger(health)


def _open(
    health: Health, policy: BreakerPolicy, now: float, at_least: float = 0.0, cooldown: bool = True
) -> None:
    if health.state != "open":
        _fire(health, "trip")
        if cooldown:
            health.openings = min(health.openings + 1, MAX_OPENINGS)
    health.held = not cooldown and (health.held or health.openings == 0)
    wait = cooldown_for(policy, health.openings) if cooldown else 0.0
    health.open_until = max(health.open_until, now + wait, now + at_least)
    if at_least:
        health.retry_until = max(health.retry_until, now + at_least)
    health.probes = 0


def peek(health: Health | None, policy: BreakerPolicy, now: float) -> Admission:
    """Would a call be admitted now? (Changes nothing: no probe is counted.)"""
    if health is None or not policy.enabled:
        return Admission(True)
    if health.state == "closed":
        return Admission(True, recovered_at=health.recovered_at) if health.recovered_at else _PASS
    if health.state == "open" and now < health.open_until:
        return Admission(False, retry_in=health.open_until - now, state="open")
    return Admission(True, probe=True, state=health.state)


def admit(health: Health, policy: BreakerPolicy, now: float, *, force: bool = False) -> Admission:
    """May a call go now? Moves an open breaker whose cooldown is over to half_open, and
    counts the probes it lets through. ``force`` lets one probe through even while open
    (every provider of a chain open: the one closest to recovery is tried)."""
    if not policy.enabled:
        return Admission(True)
    if health.state == "open":
        if now < health.open_until and not force:
            return Admission(False, retry_in=health.open_until - now, state="open")
        _fire(health, "cool")
        health.probes = 0
    if health.state == "half_open":
        if health.probes < policy.half_open_probes or force:
            health.probes += 1
            return Admission(True, probe=True, state="half_open")
        return Admission(False, retry_in=0.0, state="half_open")
    if not health.recovered_at and health.state == "closed":
        return _CLOSED  # the usual answer, shared (nobody changes an admission)
    return Admission(True, state=health.state, recovered_at=health.recovered_at)


def record(
    health: Health,
    policy: BreakerPolicy,
    now: float,
    *,
    failed: bool,
    probe: bool,
    retry_after: float | None = None,
) -> None:
    """What a call came to. ``failed``: a retryable or timeout outcome (the provider's
    fault); anything else counts as the provider answering."""
    if not policy.enabled:
        return
    if probe:
        health.probes = max(health.probes - 1, 0)
    _count(health.calls, now, policy.window, 1 if failed else 0)
    if not failed:
        health.consecutive = 0
        if health.state == "half_open":
            _fire(health, "recover")
            health.openings = 0
            health.probes = 0
            health.recovered_at = now
            health.held = False
        return
    health.consecutive += 1
    calls = sum(c[0] for c in health.calls.values())
    failures = sum(c[1] for c in health.calls.values())
    by_rate = calls >= policy.min_calls and failures / calls >= policy.failure_rate
    tripped = health.consecutive >= policy.failure_threshold or by_rate
    if health.state == "half_open":
        if health.held and not tripped:
            if retry_after:  # it said again when to come back: held again, for that long
                _open(health, policy, now, retry_after, cooldown=False)
            else:  # it said nothing more: closed, the failure counted like any other
                _fire(health, "release")
                health.held = False
                health.probes = 0
            return
        _open(health, policy, now, retry_after or 0.0)
        return
    if health.state == "closed" and tripped:
        _open(health, policy, now, retry_after or 0.0)
    elif retry_after:
        # The provider said when to come back: open until then (an opening already longer
        # stays as it is; nothing shortens one).
        if health.state == "closed":
            _open(health, policy, now, retry_after, cooldown=False)
        else:
            health.open_until = max(health.open_until, now + retry_after)
            health.retry_until = max(health.retry_until, now + retry_after)


def probed(health: Health, policy: BreakerPolicy, now: float, *, answered: bool) -> bool:
    """An active health check's result (never a call: nothing is counted). An open breaker
    whose provider answered half-opens at once, so that the next call is its probe, unless
    the provider said to stay away longer (a Retry-After); returns whether it did."""
    health.probed_at = now
    health.probe_answered = answered
    if not policy.enabled or health.state != "open" or not answered:
        return False
    if now < health.retry_until:  # the provider's own word outlasts the probe's
        return False
    _fire(health, "cool")
    health.probes = 0
    health.open_until = min(health.open_until, now)
    return True


__all__ += ["note_request", "probed", "record_call", "retry_allowed"]


def _count(buckets: dict[int, list[int]], now: float, window: float, second: int) -> None:
    """Add a call to this second's bucket [count, second-counter]; drop buckets outside."""
    current = int(now)
    bucket = buckets.get(current)
    if bucket is None:  # a new second: drop the ones that left the window (once a second)
        horizon = current - int(window)
        for old in [k for k in buckets if k <= horizon]:
            del buckets[old]
        bucket = buckets[current] = [0, 0]
    bucket[0] += 1
    bucket[1] += second


def note_request(health: Health, now: float, window: float, *, retry: bool) -> None:
    """Count a request (and whether it was a same-step retry) for the retry budget."""
    _count(health.traffic, now, window, 1 if retry else 0)


def retry_allowed(health: Health, now: float, ratio: float, floor: float, window: float) -> bool:
    """Whether one more same-step retry stays within the budget: retries in the window under
    ``ratio`` of the requests, plus ``floor`` per second."""
    horizon = int(now) - int(window)
    recent = [b for k, b in health.traffic.items() if k > horizon]
    retries = sum(b[1] for b in recent)
    requests = sum(b[0] for b in recent) - retries
    return retries + 1 <= ratio * requests + floor * window


def record_call(
    health: Health, policy: BreakerPolicy, budget: RetryBudgetPolicy, now: float,
    failed: bool | None, probe: bool, retry_after: float | None, retry: bool,
) -> None:  # fmt: skip
    """Everything one call changes in a record, whichever store keeps it: the request for
    the retry budget, and the call's result for the breaker (``failed`` None: not the
    provider's doing, not counted; a probe's slot is given back all the same)."""
    note_request(health, now, budget.window, retry=retry)
    if failed is None:
        if probe:
            health.probes = max(health.probes - 1, 0)
        return
    record(health, policy, now, failed=failed, probe=probe, retry_after=retry_after)
