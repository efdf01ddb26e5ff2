"""What the decision core asks its shells to do, as typed actions: call a provider (plain or
streamed), race copies of a call (hedged requests), sleep, or perform an operation on the
health store; and what a streamed call came to. The shells (sync, async, streaming) perform
them; the core never does I/O itself."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from engine.core.request_check import check_request
from engine.health.breaker import Admission
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.quota import QuotaGrant, QuotaPolicy
from engine.health.store import HealthStore
from engine.types.completion import Completion
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = [
    "FIRST_CHUNK",
    "Abandon",
    "Action",
    "Admit",
    "Await",
    "Call",
    "Decisions",
    "Follow",
    "HealthOp",
    "Launch",
    "Peek",
    "ProviderLookup",
    "QuotaSettle",
    "QuotaTake",
    "RaceOp",
    "Record",
    "RetryAllowed",
    "Sleep",
    "StreamDone",
    "as_request",
    "model_of",
]


#: Returns the provider object registered under a name, or None.
ProviderLookup: TypeAlias = Callable[[str], Any]


@dataclass(slots=True)
class Call:
    provider: Any
    request: ChatRequest
    timeout: float
    model: str | None
    #: Set when the call is streamed: its first-token, idle and total timeouts.
    stream: StreamTimeouts | None = None
    #: Streamed after a cut (``on_midstream: restart``): announce a reset before its first
    #: chunk, so that the consumer discards what it showed.
    reset: bool = False
    #: The provider's name in the chain (what a stream tells as its source).
    name: str = ""


@dataclass(slots=True)
class StreamDone:
    """What a streamed call came to: like a `CallResult`, plus how far it got
    (``chunks`` handed to the caller, time to the first, the text handed over)."""

    ok: bool
    value: Any
    chunks: int = 0
    ttft: float | None = None
    text: str = ""


@dataclass(slots=True)
class Launch:
    """Start copy number ``copy`` of a hedged attempt (0 is the attempt itself) and return
    at once (answered with None); `Await` says when it ends."""

    copy: int
    call: Call


@dataclass(slots=True)
class Await:
    """Wait for a launched copy to end, until ``until`` on the runtime's monotonic clock
    (None: for as long as it takes). Answered with ``(copy, result)``, the result a
    `CallResult` (a `StreamDone` for a streamed copy,
    or `FIRST_CHUNK` when a streamed copy has its first chunk ready), or None when
    ``until`` came first."""

    until: float | None


@dataclass(slots=True)
class Abandon:
    """Cancel these copies and close their connections (answered with None); nothing they
    produce reaches the caller."""

    copies: tuple[int, ...]


@dataclass(slots=True)
class Follow:
    """Streams: hand the caller this copy's chunks, its first included, until it ends;
    answered with its `StreamDone`."""

    copy: int


#: What `Await` answers for a streamed copy whose first chunk is ready.
FIRST_CHUNK: Final = "first chunk"


@dataclass(slots=True)
class Sleep:
    """Wait ``seconds`` (a backoff), on the runtime's clock."""

    seconds: float


@dataclass(slots=True, kw_only=True)
class HealthOp:
    """An operation on the health store; ``left``: seconds left of the attempt, which no
    health command may outlast. Each kind knows how a sync and an async shell perform it."""

    left: float | None = None

    def run(self, store: HealthStore) -> Any:
        """Perform it on ``store`` (sync shells)."""
        raise NotImplementedError

    async def arun(self, store: HealthStore) -> Any:
        """Perform it on ``store`` without blocking the event loop (async shells)."""
        raise NotImplementedError


@dataclass(slots=True, kw_only=True)
class Peek(HealthOp):
    """Would each breaker admit a call now? (Changes nothing.)"""

    keys: Sequence[str]
    policies: Sequence[BreakerPolicy]
    now: float

    def run(self, store: HealthStore) -> list[Admission]:
        return store.peek(self.keys, self.policies, self.now)

    async def arun(self, store: HealthStore) -> list[Admission]:
        return await store.apeek(self.keys, self.policies, self.now)


@dataclass(slots=True, kw_only=True)
class Admit(HealthOp):
    """Admit (or refuse) one call to ``key``; ``force``: probe even while open."""

    key: str
    policy: BreakerPolicy
    now: float
    force: bool = False

    def run(self, store: HealthStore) -> Admission:
        return store.admit(self.key, self.policy, self.now, self.force)

    async def arun(self, store: HealthStore) -> Admission:
        return await store.aadmit(self.key, self.policy, self.now, self.force)


@dataclass(slots=True, kw_only=True)
class Record(HealthOp):
    """What a call came to (``failed`` None: not the provider's doing, not counted)."""

    key: str
    policy: BreakerPolicy
    budget: RetryBudgetPolicy
    now: float
    failed: bool | None
    probe: bool
    retry_after: float | None
    retry: bool

    def _args(self) -> tuple[Any, ...]:
        return (self.key, self.policy, self.budget, self.now, self.failed, self.probe,
                self.retry_after, self.retry)  # fmt: skip

    def run(self, store: HealthStore) -> None:
        store.record(*self._args())

    async def arun(self, store: HealthStore) -> None:
        await store.arecord(*self._args())


@dataclass(slots=True, kw_only=True)
class RetryAllowed(HealthOp):
    """Whether one more same-step retry of ``key`` fits the retry budget."""

    key: str
    budget: RetryBudgetPolicy
    now: float

    def run(self, store: HealthStore) -> bool:
        return store.retry_allowed(self.key, self.budget, self.now)

    async def arun(self, store: HealthStore) -> bool:
        return await store.aretry_allowed(self.key, self.budget, self.now)


@dataclass(slots=True, kw_only=True)
class QuotaTake(HealthOp):
    """Take a request and ``tokens`` from ``key``'s quota, or refuse with the wait."""

    key: str
    policy: QuotaPolicy
    now: float
    tokens: int

    def run(self, store: HealthStore) -> QuotaGrant:
        return store.take_quota(self.key, self.policy, self.now, self.tokens)

    async def arun(self, store: HealthStore) -> QuotaGrant:
        return await store.atake_quota(self.key, self.policy, self.now, self.tokens)


@dataclass(slots=True, kw_only=True)
class QuotaSettle(HealthOp):
    """Correct ``key``'s quota by ``tokens`` (the reported usage minus the estimate)."""

    key: str
    now: float
    tokens: int

    def run(self, store: HealthStore) -> None:
        store.settle_quota(self.key, self.now, self.tokens)

    async def arun(self, store: HealthStore) -> None:
        await store.asettle_quota(self.key, self.now, self.tokens)


RaceOp: TypeAlias = Launch | Await | Abandon | Follow
Action: TypeAlias = Call | Sleep | HealthOp | RaceOp


Decisions: TypeAlias = Generator[Action, Any, Completion]


def model_of(provider: Any, model: str | None) -> str | None:
    """The model an attempt asks for: the step's (or member's), else the provider's own."""
    if model is not None:
        return model
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) and model else None


def as_request(prompt: str | ChatRequest) -> ChatRequest:
    # Checked once, before the first attempt: a caller's mistake raises here, and is never
    # sent to (or counted against) any provider.
    return ChatRequest.from_prompt(prompt) if isinstance(prompt, str) else check_request(prompt)
