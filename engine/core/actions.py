"""What the decision core asks its shells to do, as typed actions: call a provider (plain or
streamed), sleep, or perform an operation on the health store; and what a streamed call came
to. The shells (sync, async, streaming) perform them; the core never does I/O itself."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeAlias

from engine.chain.spec import Step
from engine.core.request_check import check_request
from engine.types.completion import Completion
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

__all__ = [
    "Action",
    "Call",
    "Decisions",
    "HealthOp",
    "ProviderLookup",
    "Sleep",
    "StreamDone",
    "as_request",
    "breaker_key",
    "key_part",
    "model_of",
]


#: Returns the provider object registered under a name, or None.
ProviderLookup: TypeAlias = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class StreamDone:
    """What a streamed call came to: like a :data:`CallResult`, plus how far it got
    (``chunks`` handed to the caller, time to the first, the text handed over)."""

    ok: bool
    value: Any
    chunks: int = 0
    ttft: float | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class HealthOp:
    """An operation on the health store (``peek``, ``admit``, ``record``, ``retry_allowed``);
    ``left``: seconds left of the attempt, which no health command may outlast."""

    op: str
    args: tuple[Any, ...]
    left: float | None = None


Action: TypeAlias = Call | Sleep | HealthOp


Decisions: TypeAlias = Generator[Action, Any, Completion]


def key_part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


def breaker_key(step: Step) -> str:
    """A breaker per provider, and per model when the step names one: ``provider:model``,
    with ``%`` and ``:`` inside either escaped, so that provider ``acme:gpt`` and provider
    ``acme`` with model ``gpt`` never share one."""
    provider = key_part(step.provider)
    return f"{provider}:{key_part(step.model)}" if step.model else provider


def model_of(provider: Any, step: Step) -> str | None:
    if step.model is not None:
        return step.model
    model = getattr(provider, "model", None)
    return model if isinstance(model, str) and model else None


def as_request(prompt: str | ChatRequest) -> ChatRequest:
    # Checked once, before the first attempt: a caller's mistake raises here, and is never
    # sent to (or counted against) any provider.
    return ChatRequest.from_prompt(prompt) if isinstance(prompt, str) else check_request(prompt)
