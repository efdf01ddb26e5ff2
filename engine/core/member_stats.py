"""What an engine learns of each pool member as requests go: its requests in flight, its
latency (a peak EWMA), and when its breaker last recovered (slow start). The strategies of
`engine.core.routing` choose by it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from engine.chain.pools import Member
from engine.health import Admission

__all__ = ["Routing"]

#: Seconds over which a latency sample's weight decays to 1/e (as Finagle's peak EWMA).
_DECAY: Final = 10.0
#: The least share of its weight a recovering member gets (it must be tried to recover).
_SLOW_START_FLOOR: Final = 0.05
#: What a member never measured costs while a request to it is out (any measured one wins).
_UNKNOWN: Final = 1e9


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
        #: when each member's breaker last closed after an opening, as admissions said
        self.recovered: dict[str, float] = {}

    def admitted(self, key: str, admission: Admission) -> None:
        """What an admission said of a member's breaker: when it last recovered (slow
        start is computed from what the draws have seen, without a look at every breaker)."""
        if admission.recovered_at:
            self.recovered[key] = admission.recovered_at
        elif key in self.recovered and admission.state != "closed":
            del self.recovered[key]

    def shares(
        self, candidates: list[int], members: Sequence[Member], slow_start: float, now: float
    ) -> list[float] | None:
        """Each candidate's share of its weight under slow start; None: all full."""
        if not self.recovered or slow_start <= 0:
            return None
        out = [1.0] * len(candidates)
        full = True
        for n, i in enumerate(candidates):
            at = self.recovered.get(members[i].key)
            if at is not None and now - at < slow_start:
                out[n] = max((now - at) / slow_start, _SLOW_START_FLOOR)
                full = False
        return None if full else out

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
