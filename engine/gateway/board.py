"""What the dashboard shows, gathered off the request path: a sink that only appends each
finished request to a bounded queue, and an aggregate the page's publisher folds that
queue into, at most a few times a second, whatever the traffic.

The aggregate keeps, per chain, each edge's count (a step to where it went, by category)
in 10-second buckets over 15 minutes, the step that answered last and each provider's
recent latencies; and the last `TAIL` requests whole (their attempt records). Everything is
bounded: the queue, the buckets, the latencies and the tail.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from engine.telemetry.events import RequestFinished

__all__ = ["TAIL", "Board"]

#: Requests the live tail keeps, whole.
TAIL: Final = 100
#: Requests waiting to be folded in (beyond, the oldest are dropped and counted). The
#: publisher folds them while a page is open; with none open, the newest wait here.
QUEUE: Final = 5_000
_BUCKET: Final = 10.0  # seconds
_BUCKETS: Final = 90  # 15 minutes
_LATENCIES: Final = 512  # per provider


class Board:
    """The dashboard's sink and aggregate (one per gateway; cheap when nobody looks)."""

    events = (RequestFinished,)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._queue: collections.deque[tuple[float, RequestFinished]] = collections.deque(
            maxlen=QUEUE
        )  # the events only, not what was asked (the request itself is not kept)
        self._lock = threading.Lock()
        #: chain -> deque of (bucket start, Counter of (state, next, category))
        self._edges: dict[str, collections.deque[tuple[float, collections.Counter[Any]]]] = {}
        self._last: dict[str, tuple[str, float]] = {}  # chain -> (step that answered, when)
        self._latency: dict[str, collections.deque[int]] = {}
        self._hedges: collections.Counter[str] = collections.Counter()
        self._calls: collections.Counter[str] = collections.Counter()
        self._tail: collections.deque[dict[str, Any]] = collections.deque(maxlen=TAIL)
        self.requests = 0  # folded in, in all
        self.dropped = 0  # queued while the queue was full
        self.version = 0  # changes whenever something was folded in

    # -- the request path: one append ------------------------------------------------------

    def handle(self, event: Any) -> None:
        """Queue a finished request (the only work done on the request path)."""
        if type(event) is RequestFinished:
            if len(self._queue) == QUEUE:
                self.dropped += 1
            kept = RequestFinished(event.chain, event.mode, event.final_state, event.meta,
                                   event.wall)  # fmt: skip
            self._queue.append((self._clock(), kept))

    # -- the publisher's side ----------------------------------------------------------------

    def fold(self) -> bool:
        """Fold the queued requests into the aggregate; whether there were any."""
        with self._lock:
            folded = False
            while self._queue:
                wall, event = self._queue.popleft()
                self._fold(wall, event)
                folded = True
            if folded:
                self.version += 1
            return folded

    def _fold(self, wall: float, event: RequestFinished) -> None:
        self.requests += 1
        attempts: list[dict[str, Any]] = list(event.field("provider_attempts") or [])
        start = wall - wall % _BUCKET
        buckets = self._edges.setdefault(event.chain, collections.deque(maxlen=_BUCKETS))
        if not buckets or buckets[-1][0] != start:
            buckets.append((start, collections.Counter()))
        counts = buckets[-1][1]
        if attempts:
            counts[("start", str(attempts[0].get("state")), "start")] += 1
        for attempt in attempts:
            state, provider = str(attempt.get("state")), str(attempt.get("provider"))
            category = str(attempt.get("category"))
            counts[(state, str(attempt.get("next")), category)] += 1
            if attempt.get("status") not in ("skipped", "cancelled"):
                self._calls[provider] += 1
                latencies = self._latency.setdefault(provider, collections.deque(maxlen=_LATENCIES))
                latencies.append(int(attempt.get("latency_ms") or 0))
            if attempt.get("hedge"):
                self._hedges[provider] += 1
            if attempt.get("status") == "success":
                self._last[event.chain] = (state, wall)
        self._tail.appendleft(_summary(event, attempts, wall))

    def view(self) -> dict[str, Any]:
        """The aggregate as plain JSON data: edges over the last minute and 15 minutes,
        the last answering step, providers' latencies and hedge rates, and the tail."""
        with self._lock:
            now = self._clock()
            chains = {}
            for chain, buckets in self._edges.items():
                minute: collections.Counter[Any] = collections.Counter()
                quarter: collections.Counter[Any] = collections.Counter()
                for start, counts in buckets:
                    if start > now - 900:
                        quarter.update(counts)
                    if start > now - 60 - _BUCKET:
                        minute.update(counts)
                last = self._last.get(chain)
                chains[chain] = {
                    "edges": [
                        {"from": a, "to": b, "category": c, "minute": minute[(a, b, c)],
                         "quarter": n}
                        for (a, b, c), n in sorted(quarter.items())
                    ],
                    "last_answered": None if last is None else {
                        "step": last[0], "seconds_ago": round(now - last[1], 1)},
                }  # fmt: skip
            providers = {}
            for provider, latencies in self._latency.items():
                ordered = sorted(latencies)
                providers[provider] = {
                    "p50_ms": ordered[len(ordered) // 2] if ordered else None,
                    "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
                    if ordered
                    else None,
                    "hedge_rate": round(self._hedges[provider] / max(self._calls[provider], 1), 3),
                }
            return {
                "chains": chains,
                "providers": providers,
                "tail": list(self._tail),
                "requests": self.requests,
                "dropped": self.dropped,
            }


def _summary(event: RequestFinished, attempts: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """One row of the tail, with the whole attempt history for its details."""
    return {
        "request_id": event.field("request_id"),
        "chain": event.chain,
        "mode": event.mode,
        "final_state": event.final_state,
        "at": wall,
        "duration_ms": event.field("duration_ms"),
        "tokens_total": event.field("tokens_total"),
        "cost_usd_est": event.field("cost_usd_est"),
        "provider": event.field("provider"),
        "path": [
            {
                "provider": a.get("provider"),
                "state": a.get("state"),
                "status": a.get("status"),
                "category": a.get("category"),
                "code": a.get("error_code"),
            }
            for a in attempts
        ],
        "attempts": [dict(a) for a in attempts],
        "tags": dict(event.field("tags") or {}),
    }
