"""Dry runs of chains: what a chain does with given outcomes (``simulate``) and where one
outcome leads from each step (``explain``), with no provider and no network.

Outcomes are written ``category[:code][@seconds]`` per provider, several in a row separated
by ``|`` (for retries): ``"deepseek=retryable:429|success,openai=timeout"``; ``rejected`` is
an answer the step's ``accept`` rules turn down (``answer_rejected``). A provider with no
outcome left answers, and its answers count (no rule is checked against simulated text).
Time is virtual: ``@seconds`` is how long an outcome takes (none: no time; one longer than
the attempt's timeout is that timeout), a timeout takes the attempt's whole timeout, and
retry waits pass instantly, so runs are deterministic. Hedged steps race their copies over
this time: ``deepseek=success@2|success@0.1`` with ``hedge: {after: 0.5}`` answers from the
copy sent at 0.5 s, at 0.6 s.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, Final

from engine.chain.accept import Acceptance
from engine.core.actions import FIRST_CHUNK, Abandon, Await, Follow, Launch, StreamDone
from engine.core.classify import classify_exception
from engine.core.executor import FallbackExecutor
from engine.core.machine import CompiledChain
from engine.core.runtime import Runtime
from engine.core.streaming import ChatStream
from engine.errors import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainExhaustedError,
    ProviderError,
)
from engine.health import (
    BreakerPolicy,
    Health,
    HealthConfig,
    LocalHealthStore,
    RetryBudgetPolicy,
    default_policies,
)
from engine.providers.base import call
from engine.tools.scenario_file import Scenario, load_scenario, parse_outcomes
from engine.types.completion import Completion
from engine.types.deltas import TextDelta
from engine.types.meta import GenerationMeta, Mode, iso_timestamp
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = ["Scenario", "load_scenario", "parse_outcomes", "simulate"]

#: How a scripted answer that the chain must reject starts (see `_scripted_judge`).
_REJECTED: Final = "(simulated answer rejected"
_EPOCH: Final = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated records carry fixed times
_EXCEPTION: Final = {
    "retryable": ProviderError,
    "timeout": AITimeoutError,
    "non_retryable": AIResponseError,
}


class _VirtualTime:
    """Time that passes only when the simulation says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def runtime(self, seed: int | None = None) -> Runtime:
        draws = random.Random(seed).random if seed is not None else (lambda: 0.5)

        async def asleep(seconds: float) -> None:
            self.now += seconds

        def sleep(seconds: float) -> None:
            self.now += seconds

        return Runtime(
            monotonic=lambda: self.now,
            wall=lambda: _EPOCH + self.now,
            sleep=sleep,
            asleep=asleep,
            random=draws,
        )


class _Scripted:
    """A provider that plays its outcomes, then answers."""

    def __init__(self, name: str, outcomes: Sequence[str], clock: _VirtualTime) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.clock = clock

    def generate_response(self, *, prompt: str, timeout: float, model: str | None = None) -> str:
        outcome = self.outcomes.pop(0) if self.outcomes else "success"
        outcome, _, took = outcome.partition("@")
        category, _, code = outcome.partition(":")
        if took and float(took) >= timeout and category != "timeout":
            category, code = "timeout", "attempt_timeout"  # as a real call would end
        elif took and category != "timeout":  # a timeout takes the whole timeout
            self.clock.now += float(took)
        if category == "success":
            return f"(simulated answer from {self.name})"
        if category == "rejected":
            return f"{_REJECTED} from {self.name})"
        if category == "cut":  # a cut needs a stream; without one it is a cut-short reply
            category, code = "retryable", "truncated_response"
        if category == "timeout":
            self.clock.now += timeout
        raise _EXCEPTION[category](f"simulated {outcome}", code=code or None, provider=self.name)

    def stream(
        self, *, request: ChatRequest, timeouts: StreamTimeouts, model: str | None = None
    ) -> Iterator[TextDelta | Completion]:
        """The streamed outcome: ``cut:N`` hands over N chunks, then the stream breaks."""
        outcome = self.outcomes[0] if self.outcomes else "success"
        outcome, _, took = outcome.partition("@")
        category, _, code = outcome.partition(":")
        if category == "cut":
            self.outcomes.pop(0)
            self.clock.now += float(took or 0)
            for index in range(int(code)):
                yield TextDelta(f"(chunk {index + 1} from {self.name}) ")
            raise ProviderError(
                f"simulated cut after {code} chunks", code="truncated_response", provider=self.name
            )
        text = self.generate_response(prompt="", timeout=timeouts.first_token, model=model)
        yield TextDelta(text)
        yield Completion(text)


class _VirtualRace:
    """A hedged attempt's race over virtual time: each copy is played at once, and ends
    (or hands over its first chunk) when its scripted time says; the earliest goes first,
    the lower copy number on a tie."""

    def __init__(self, clock: _VirtualTime, pump: Any) -> None:
        self.clock = clock
        self.pump = pump
        self.pending: dict[int, tuple[float, Any, list[Any]]] = {}
        self.following: dict[int, tuple[Any, list[Any]]] = {}

    def do(self, action: Launch | Await | Abandon) -> Any:
        clock = self.clock
        if isinstance(action, Launch):
            started = clock.now
            events: list[Any] = []
            c = action.call
            if self.pump is None:
                result: Any = call(c.provider, c.request, c.timeout, c.model)
            else:
                pump = self.pump(c)
                while True:
                    try:
                        events.append(next(pump))
                    except StopIteration as stop:
                        result = stop.value
                        break
            self.pending[action.copy] = (clock.now, result, events)
            clock.now = started
            return None
        if isinstance(action, Abandon):
            for copy in action.copies:
                self.pending.pop(copy, None)
            return None
        if not self.pending:
            return None
        copy = min(self.pending, key=lambda n: (self.pending[n][0], n))
        at, result, events = self.pending[copy]
        if action.until is not None and at > action.until:
            clock.now = max(clock.now, action.until)
            return None
        clock.now = max(clock.now, at)
        del self.pending[copy]
        if isinstance(result, StreamDone) and result.chunks:
            self.following[copy] = (result, events)
            return copy, FIRST_CHUNK
        return copy, result

    def follow(self, action: Follow) -> Generator[Any, None, StreamDone]:
        result, events = self.following.pop(action.copy)
        yield from events
        done: StreamDone = result
        return done

    def close(self) -> None:
        self.pending.clear()


def _check_against_chain(compiled: CompiledChain, outcomes: Mapping[str, list[str]]) -> None:
    chain = compiled.chain
    providers = sorted({m.provider for step in chain.steps for m in step.members})
    for name, items in outcomes.items():
        if name not in providers:
            close = difflib.get_close_matches(name, providers, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"provider '{name}' is not in chain '{chain.name}'{hint}; "
                f"its providers: {', '.join(providers)}"
            )
        for item in items:
            category, _, code = item.partition("@")[0].partition(":")
            if category in ("success", "cut", "rejected"):
                continue
            exc = _EXCEPTION[category]("", code=code or None)
            got = classify_exception(exc, chain.error_codes).category
            if got != category:
                raise ValueError(
                    f"{name}={item}: code {code} is {got} in chain '{chain.name}' (the "
                    f"taxonomy, or the chain's error_codes); write {got}:{code}"
                )


def _scripted_judge(
    completion: Completion, accept: Acceptance, request: ChatRequest, validators: object
) -> str | None:
    """Rejects the answers scripted as ``rejected`` and only those: simulated text is not
    what any rule asks for, so the step's rules are named, not checked."""
    if not completion.text.startswith(_REJECTED):
        return None
    rules = ", ".join(accept.rules()) or "not blank, tool arguments that match"
    return f"scripted rejection (the step accepts: {rules})"


def simulate(
    compiled: CompiledChain,
    outcomes: Mapping[str, list[str]],
    prompt: str,
    mode: Mode,
    *,
    requests: int = 1,
    every: float = 0.0,
    health: Mapping[str, str] | None = None,
    policies: Callable[[str], tuple[BreakerPolicy, RetryBudgetPolicy]] | None = None,
    known: Callable[[str], bool] | None = None,
    seed: int | None = None,
) -> list[tuple[str | None, GenerationMeta]]:
    """Run ``compiled`` ``requests`` times with scripted outcomes (consumed across the
    requests), ``every`` virtual seconds apart, with breakers and retry budgets as the
    engine runs them (``health`` sets starting breaker states: ``open`` or ``half_open``);
    return each answer (None if the chain failed) and its metadata. Deterministic: every
    draw is 0.5, or drawn from ``seed`` (which pool member a weighted draw picks)."""
    _check_against_chain(compiled, outcomes)
    clock = _VirtualTime()
    # A provider nobody declared is provider_not_found here as in a real call.
    providers = {
        m.provider: _Scripted(m.provider, outcomes.get(m.provider, []), clock)
        for step in compiled.chain.steps
        for m in step.members
        if known is None or known(m.provider)
    }
    store = LocalHealthStore()
    lookup = policies or default_policies
    # A provider's breakers: one per model its steps and pool members ask it for.
    keys: dict[str, set[str]] = {}
    for step in compiled.chain.steps:
        for member in step.members:
            keys.setdefault(member.provider, {member.provider}).add(member.key)
    for name, state in (health or {}).items():
        breaker = lookup(name)[0]
        for key in keys.get(name, {name}):
            start = Health(state=state, openings=1 if state == "open" else 0)
            if state == "open":
                start.open_until = _EPOCH + breaker.cooldown
            store.set(key, start)
    executor = FallbackExecutor(providers.get, clock.runtime(seed), HealthConfig(store, lookup))
    executor.judge = _scripted_judge
    executor.thread_race = lambda pump: _VirtualRace(clock, pump)
    for name in compiled.validator_names:  # named, never run: answers are scripted
        executor.validators[name] = lambda completion: None
    streamed = any(item.startswith("cut") for items in outcomes.values() for item in items)
    results: list[tuple[str | None, GenerationMeta]] = []
    for index in range(requests):
        if index:
            clock.now += every
        meta = GenerationMeta(
            mode=mode, request_id=f"simulated-{index + 1}",
            timestamp=iso_timestamp(_EPOCH + clock.now),
        )  # fmt: skip
        try:
            if streamed:  # a cut only exists in a stream: simulate one
                stream = ChatStream(executor, compiled, prompt, meta, compiled.chain.deadline)
                for _ in stream:
                    pass
                results.append((stream.text, meta))
                continue
            answer = executor.execute(compiled, prompt, meta, compiled.chain.deadline)
        except (ChainExhaustedError, ChainAbortedError):
            results.append((None, meta))
            continue
        results.append((answer.text, meta))
    return results
