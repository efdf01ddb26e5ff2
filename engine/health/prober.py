"""Active health checks: while a provider's breaker is open, the provider is asked a
question that costs no tokens (its list of models), every ``interval`` seconds
(`ProbePolicy`), and its breaker half-opens as soon as it
answers. A recovered provider then gets traffic again within a probe interval of its
recovery, without a user's request spent on finding out; a probe is never counted as a
request (no breaker window, no retry budget, no quota).

One prober per provider per process: `Prober` runs the probes of one manager on one
daemon thread, started when a breaker first opens (or at once when health is shared, since
another process may open one). With health shared through Redis, a lease
(`claim_probe`) makes one process of the whole
deployment probe each provider; the others see the result in the shared record.

`Prober.tick` does one round at a given time: tests drive it on a fake clock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.health.breaker import Admission
from engine.health.policy import BreakerPolicy, ProbePolicy
from engine.health.store import HealthStore
from engine.telemetry.events import ProbeFinished

__all__ = ["ProbeTarget", "Prober"]

_log = logging.getLogger("engine.health")
#: How long the thread sleeps when no breaker is open (a shared store's are looked at
#: this often; a local store wakes it as soon as one opens).
_IDLE: float = 1.0


@dataclass(frozen=True)
class ProbeTarget:
    """One provider to probe: its name, the breaker keys it has (``provider`` and
    ``provider:model``), their policy, its probe policy, and the check itself
    (``check(timeout)``: True when the provider answered; False or an exception when not)."""

    provider: str
    keys: tuple[str, ...]
    breaker: BreakerPolicy
    probe: ProbePolicy
    check: Callable[[float], bool]


class Prober:
    """The probes of one manager (see the module docstring). ``targets`` lists what may be
    probed now (read each round: chains reload); ``wall`` is the clock breakers use;
    ``emit`` takes each `ProbeFinished`."""

    def __init__(
        self,
        store: HealthStore,
        targets: Callable[[], Sequence[ProbeTarget]],
        wall: Callable[[], float] = time.time,
        emit: Callable[[ProbeFinished], None] | None = None,
    ) -> None:
        self.store = store
        self.targets = targets
        self.wall = wall
        self.emit = emit
        #: Who this prober is, in a shared store's leases.
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._due: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: Probes made by this process, per provider (``torq-fallback health``, tests).
        self.made: dict[str, int] = {}

    # -- one round -------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[ProbeFinished]:
        """Probe every provider whose breaker is open and whose probe is due; return what
        the probes found. Never raises (a probe that fails is a provider not answering)."""
        now = self.wall() if now is None else now
        found: list[ProbeFinished] = []
        for target in self.targets():
            if not target.probe.enabled or not target.breaker.enabled or not target.keys:
                continue
            open_keys = self._open_keys(target, now)
            if not open_keys:
                self._due.pop(target.provider, None)  # closed again: nothing to probe
                continue
            if now < self._due.get(target.provider, 0.0):
                continue
            self._due[target.provider] = now + target.probe.interval
            if not self.store.claim_probe(target.provider, self.holder, target.probe.interval):
                continue  # another process of the deployment probes it
            found.append(self._probe(target, open_keys, now))
        return found

    def _open_keys(self, target: ProbeTarget, now: float) -> list[str]:
        try:
            seen: list[Admission] = self.store.peek(
                target.keys, [target.breaker] * len(target.keys), now
            )
        except Exception:  # the store's own trouble: it falls back, and so does this round
            return []
        return [k for k, a in zip(target.keys, seen, strict=True) if a.state == "open"]

    def _probe(self, target: ProbeTarget, keys: list[str], now: float) -> ProbeFinished:
        started = time.monotonic()
        reason: str | None = None
        try:
            answered = bool(target.check(target.probe.timeout))
            if not answered:
                reason = "no answer"
        except Exception as exc:  # any failure of the check is the provider not answering
            answered, reason = False, f"{type(exc).__name__}: {exc}"[:200]
        seconds = time.monotonic() - started
        with self._lock:
            self.made[target.provider] = self.made.get(target.provider, 0) + 1
        opened = [k for k in keys if self.store.probed(k, target.breaker, self.wall(), answered)]
        event = ProbeFinished(target.provider, answered, seconds, now, tuple(opened), reason)
        if self.emit is not None:
            try:
                self.emit(event)
            except Exception:  # telemetry never fails the prober
                _log.debug("probe event not delivered", exc_info=True)
        return event

    # -- the thread ------------------------------------------------------------------------

    def wake(self, key: str | None = None) -> None:
        """A breaker opened: start probing (the thread starts on the first call)."""
        if self._stop.is_set():
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="torq-health-probes", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the prober die: the next round is tried
                _log.exception("health probes failed")
            targets = [t for t in self.targets() if t.probe.enabled]
            wait = min((t.probe.interval for t in targets), default=_IDLE)
            due = [d - self.wall() for d in self._due.values()]
            soonest = max(min(due, default=wait), 0.01)
            self._wake.wait(min(wait, soonest) if self._due else _IDLE)
            self._wake.clear()

    def stop(self) -> None:
        """Stop probing (waits a moment for a probe in progress)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)
