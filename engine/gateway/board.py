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
from collections.abc import Callable, Mapping
from typing import Any, Final

from engine.telemetry.events import RequestFinished
from engine.types.meta import field_value

__all__ = ["TAIL", "Board", "merged_view"]

#: Requests the live tail keeps, whole.
TAIL: Final = 100
#: Requests waiting to be folded in (beyond, the oldest are dropped and counted). The
#: publisher folds them while a page is open; with none open, the newest wait here.
QUEUE: Final = 5_000
_BUCKET: Final = 10.0  # seconds
_BUCKETS: Final = 90  # 15 minutes
_LATENCIES: Final = 512  # per provider
_Queued = tuple[float, str, str, str, Mapping[str, Any]]


class Board:
    """The dashboard's sink and aggregate (one per gateway; cheap when nobody looks)."""

    events = (RequestFinished,)

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        #: (when, chain, mode, final state, the record's snapshot): not what was asked
        self._queue: collections.deque[_Queued] = collections.deque(maxlen=QUEUE)
        #: Called by `close` (the deployment's publisher, when there is one).
        self.on_close: Callable[[], None] | None = None
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

    # -- the request path: one append ------------------------------------------------------

    def handle(self, event: Any) -> None:
        """Queue a finished request (the only work done on the request path)."""
        if type(event) is RequestFinished:
            if len(self._queue) == QUEUE:
                self.dropped += 1
            self._queue.append(
                (self._clock(), event.chain, event.mode, event.final_state, event.meta)
            )

    # -- the publisher's side ----------------------------------------------------------------

    def fold(self) -> bool:
        """Fold the queued requests into the aggregate; whether there were any."""
        with self._lock:
            batch = []
            while self._queue:
                batch.append(self._queue.popleft())
            # Only the newest TAIL requests can be in the tail: the rest are counted alone.
            for index, queued in enumerate(batch):
                self._fold(queued, index >= len(batch) - TAIL)
            return bool(batch)

    def close(self) -> None:
        """The manager is closing: stop what publishes this board (its sinks are closed)."""
        if self.on_close is not None:
            self.on_close()

    def _fold(self, queued: _Queued, tail: bool) -> None:
        wall, chain, _, _, meta = queued
        self.requests += 1
        attempts: list[dict[str, Any]] = meta.get("provider_attempts") or []
        start = wall - wall % _BUCKET
        buckets = self._edges.setdefault(chain, collections.deque(maxlen=_BUCKETS))
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
                self._last[chain] = (state, wall)
        if tail:
            self._tail.appendleft(_summary(queued, attempts))

    def export(self, tail: int = TAIL) -> dict[str, Any]:
        """The aggregate as plain data (what a worker publishes for the others to merge):
        the edge buckets, last answers, latencies, hedges and the newest ``tail`` requests."""
        with self._lock:
            return {
                "at": self._clock(),
                "edges": {
                    chain: [[start, [[*k, n] for k, n in counts.items()]] for start, counts in b]
                    for chain, b in self._edges.items()
                },
                "last": {chain: list(last) for chain, last in self._last.items()},
                "latency": {p: list(values) for p, values in self._latency.items()},
                "hedges": dict(self._hedges),
                "calls": dict(self._calls),
                "tail": list(self._tail)[:tail],
                "requests": self.requests,
                "dropped": self.dropped,
            }

    def view(self) -> dict[str, Any]:
        """This board's aggregate as the page shows it (`merged_view` of itself alone)."""
        return merged_view([self.export()], self._clock())


def merged_view(exports: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """What the page shows, from one or more boards' `Board.export` (one per worker): edges
    over the last minute and 15 minutes, the step that answered last, each provider's
    latencies and hedge rate, and the newest requests of them all."""
    minute: dict[str, collections.Counter[Any]] = {}
    quarter: dict[str, collections.Counter[Any]] = {}
    last: dict[str, tuple[str, float]] = {}
    latency: dict[str, list[int]] = {}
    hedges: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    tail: list[dict[str, Any]] = []
    for export in exports:
        for chain, buckets in export["edges"].items():
            m = minute.setdefault(chain, collections.Counter())
            q = quarter.setdefault(chain, collections.Counter())
            for start, entries in buckets:
                for source, target, category, n in entries:
                    if start > now - 900:
                        q[(source, target, category)] += n
                    if start > now - 60 - _BUCKET:
                        m[(source, target, category)] += n
        for chain, (step, wall) in export["last"].items():
            if chain not in last or wall > last[chain][1]:
                last[chain] = (step, wall)
        for provider, values in export["latency"].items():
            latency.setdefault(provider, []).extend(values)
        hedges.update(export["hedges"])
        calls.update(export["calls"])
        tail.extend(export["tail"])
    chains = {}
    for chain, counts in quarter.items():
        answered = last.get(chain)
        chains[chain] = {
            "edges": [
                {"from": a, "to": b, "category": c, "minute": minute[chain][(a, b, c)],
                 "quarter": n}
                for (a, b, c), n in sorted(counts.items())
            ],
            "last_answered": None if answered is None else {
                "step": answered[0], "seconds_ago": round(max(now - answered[1], 0.0), 1)},
        }  # fmt: skip
    providers = {}
    for provider, values in latency.items():
        ordered = sorted(values)
        providers[provider] = {
            "p50_ms": ordered[len(ordered) // 2] if ordered else None,
            "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else None,
            "hedge_rate": round(hedges[provider] / max(calls[provider], 1), 3),
        }
    tail.sort(key=lambda row: -float(row["at"]))
    return {
        "chains": chains,
        "providers": providers,
        "tail": tail[:TAIL],
        "requests": sum(int(e["requests"]) for e in exports),
        "dropped": sum(int(e["dropped"]) for e in exports),
    }


def _summary(queued: _Queued, attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the tail, with the whole attempt history for its details."""
    wall, chain, mode, final_state, meta = queued
    return {
        "request_id": field_value(meta, "request_id"),
        "chain": chain,
        "mode": mode,
        "final_state": final_state,
        "at": wall,
        "duration_ms": meta.get("duration_ms"),
        "tokens_total": meta.get("tokens_total"),
        "cost_usd_est": meta.get("cost_usd_est"),
        "provider": meta.get("provider"),
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
        "tags": dict(meta.get("tags") or {}),
    }
