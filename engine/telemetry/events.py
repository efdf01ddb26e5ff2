"""What the engine tells its sinks: frozen event records, made only when a sink listens.

The decision core emits `RequestStarted` when a request starts, one
`AttemptFinished` per attempt (skipped ones included) and `RequestFinished`
at the end. A sink is anything with ``handle(event)``; it must not block (the JSONL sink
only enqueues). A sink that raises is counted and logged (at most once a minute), never
allowed to fail or slow a request. With no sink registered nothing is built at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AttemptFinished",
    "Event",
    "ProbeFinished",
    "RequestFinished",
    "RequestStarted",
    "Sink",
    "Sinks",
]


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """A request entered a chain."""

    chain: str
    mode: str
    wall: float


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """One attempt ended (its record is the metadata's attempt dict)."""

    chain: str
    mode: str
    attempt: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """A request left its chain: the final state and the metadata's fields (a shallow
    snapshot: the attempt records are the metadata's own, which nothing changes after)."""

    chain: str
    mode: str
    final_state: str
    #: `engine.types.meta.snapshot` of the metadata; read fields with ``field(name)``.
    meta: Mapping[str, Any]
    wall: float
    #: What was asked and the answer's text, for sinks configured to keep them.
    request: Any = None
    answer: str | None = None

    def field(self, name: str) -> Any:
        """A metadata field (``timestamp``, ``provider_attempts``, ...)."""
        from engine.types.meta import field_value

        return field_value(dict(self.meta), name)

    @property
    def prompt(self) -> str | None:
        """The last user message of the request."""
        messages = getattr(self.request, "messages", ())
        return next((m.content for m in reversed(messages) if m.role == "user" and m.content), None)


@dataclass(frozen=True, slots=True)
class ProbeFinished:
    """An active health check of a provider whose breaker was open ended (never a request):
    whether it ``answered``, in how many ``seconds``, at ``wall``, the breaker keys it
    half-opened, and why it did not answer (None when it did). Only sinks that name it in
    their ``events`` receive it."""

    provider: str
    answered: bool
    seconds: float
    wall: float
    opened: tuple[str, ...] = ()
    reason: str | None = None


Event = RequestStarted | AttemptFinished | RequestFinished | ProbeFinished


class Sink(Protocol):
    """Receives events; must return quickly and should not raise. A sink may say which
    events it wants with an ``events`` attribute (a tuple of event classes): the engine
    then builds only those."""

    def handle(self, event: Event) -> None:
        """Take one event."""
        ...


_ALL: tuple[type, ...] = (RequestStarted, AttemptFinished, RequestFinished)


class Sinks:
    """The registered sinks, with failures counted and logged at most once a minute."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self._sinks: tuple[Sink, ...] = ()
        self.failures = 0
        self._logged_at = 0.0
        self._lock = threading.Lock()
        #: Whether any sink wants each kind of event (the core builds only those).
        self.started = self.attempts = self.finished = False
        for sink in sinks:
            self.add(sink)

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def add(self, sink: Sink) -> None:
        """Register one more sink."""
        self._sinks = (*self._sinks, sink)
        wanted = getattr(sink, "events", _ALL)
        self.started = self.started or RequestStarted in wanted
        self.attempts = self.attempts or AttemptFinished in wanted
        self.finished = self.finished or RequestFinished in wanted

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every sink that wants it; a sink's exception never reaches
        the request."""
        for sink in self._sinks:
            if not isinstance(event, getattr(sink, "events", _ALL)):
                continue
            try:
                sink.handle(event)
            except Exception as exc:
                with self._lock:
                    self.failures += 1
                    now = time.monotonic()
                    quiet = now - self._logged_at < 60
                    if not quiet:
                        self._logged_at = now
                if not quiet:
                    logging.getLogger("engine.telemetry").warning(
                        "telemetry sink %s failed (%s); %d failures so far",
                        type(sink).__name__, type(exc).__name__, self.failures,
                    )  # fmt: skip

    def __iter__(self) -> Any:
        return iter(self._sinks)
