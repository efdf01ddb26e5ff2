"""What the two APIs the gateway speaks have in common: a parsed request, and the interface
each API's module offers (`Dialect`): read a request body, write an answer, a stream and
an error in that API's own shapes.

Reading is strict in one way: a parameter the engine cannot honour is a 400 naming it,
never dropped. A parameter at its neutral value (``n: 1``, ``presence_penalty: 0``,
``logprobs: false``, null) asks for nothing and is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.gateway.failures import GatewayError
from engine.types.completion import Completion
from engine.types.meta import GenerationMeta

__all__ = ["Dialect", "Parsed", "StreamWriter", "bad", "neutral", "torq_record"]


@dataclass
class Parsed:
    """A request as the engine takes it: the model asked for, the messages (OpenAI-style
    dicts), ``chat`` options, whether to stream and whether usage goes in the stream."""

    model: str
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False


def bad(param: str, message: str, status: int = 400) -> GatewayError:
    """A 400 naming the field at fault."""
    return GatewayError(status, "invalid_request", f"{param}: {message}", param=param)


def neutral(name: str, value: Any, neutral_values: Mapping[str, Any]) -> bool:
    """Whether an unsupported parameter asks for nothing (null, or its neutral value)."""
    if value is None:
        return True
    if name not in neutral_values:
        return False
    want = neutral_values[name]
    return bool(value == want and type(value) is type(want))


def torq_record(meta: GenerationMeta, chain: str) -> dict[str, Any]:
    """The ``torq`` key of every reply: the chain and the whole attempt history."""
    record = meta.to_dict()
    record["chain"] = chain
    return record


class StreamWriter(Protocol):
    """One stream's writer: engine events in, the API's SSE bytes out."""

    def event(self, event: Any) -> bytes:
        """The bytes for one text, tool-call or reasoning delta."""
        ...

    def end(self, completion: Completion | None, torq: dict[str, Any]) -> bytes:
        """The bytes that end a complete answer (usage, the history, the API's end)."""
        ...

    def error(self, error: GatewayError) -> bytes:
        """The API's error event, for a stream cut after its first chunk (never a clean end)."""
        ...


class Dialect(Protocol):
    """An API the gateway speaks (`engine.gateway.openai_api`, ``anthropic_api``)."""

    name: str

    def parse(self, body: Any) -> Parsed:
        """A request body (parsed JSON) checked; a `GatewayError` naming the field."""
        ...

    def answer(self, completion: Completion, meta: GenerationMeta, torq: dict[str, Any]) -> Any:
        """The whole answer's JSON body."""
        ...

    def writer(self, meta: GenerationMeta, model: str, include_usage: bool) -> StreamWriter:
        """A writer for one stream (``model``: what the first chunk says it is;
        ``include_usage``: the request asked for usage in the stream)."""
        ...

    def error_body(self, error: GatewayError) -> Any:
        """The API's error body."""
        ...
