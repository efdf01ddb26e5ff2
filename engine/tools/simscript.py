"""What the provider simulator is told to do: behaviours (an answer, an error preset, a fault),
per-provider scripts played in order or chosen by prompt, read from Python or from a YAML
file validated with file:line; and the requests it records."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from engine.chain.loader import read_yaml
from engine.errors import ChainConfigError, Problem

__all__ = [
    "KINDS",
    "PRESETS",
    "Behaviour",
    "Request",
    "Script",
    "behaviour_from",
    "fake_key",
    "load_script",
]


#: Error presets: name -> HTTP status.
PRESETS: Final[Mapping[str, int]] = {
    "rate_limit": 429,
    "quota": 429,
    "balance": 402,
    "auth": 401,
    "forbidden": 403,
    "model_not_found": 404,
    "request_timeout": 408,
    "conflict": 409,
    "context_length": 400,
    "bad_request": 400,
    "unprocessable": 422,
    "server_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "gateway_timeout": 504,
    "overloaded": 529,
}


_OTHER_KINDS: Final = frozenset(
    {"answer", "error", "content_filter", "refusal", "stall", "trickle", "cut", "close",
     "malformed", "incomplete", "tool_call"}
)  # fmt: skip


KINDS: Final = frozenset(PRESETS) | _OTHER_KINDS


# What a bare scalar means for each kind (`answer: "4"`, `error: 418`, `trickle: 0.2`).
_SCALAR_FIELD: Final = {
    "answer": "text",
    "error": "status",
    "trickle": "interval",
    "stall": "delay",
}


@dataclass(frozen=True)
class Behaviour:
    """What the simulator does with one request."""

    kind: str = "answer"
    text: str = "Hello from the simulator."
    model: str | None = None
    tokens_in: int = 12
    tokens_out: int = 7
    status: int | None = None
    body: str | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    retry_after_date: float | None = None
    should_retry: bool | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    interval: float = 0.05
    #: For ``tool_call``: the tool the model asks to call, and its arguments.
    tool: str = "get_weather"
    arguments: Mapping[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    #: Streamed replies (when the request asks to stream): the answer in ``chunks`` pieces,
    #: ``chunk_interval`` seconds apart, the first after ``first_token_delay``; and a fault
    #: after that many content pieces: the connection cut, the stream stalled, an error
    #: event, a garbled frame.
    chunks: int = 5
    chunk_interval: float = 0.0
    first_token_delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    error_after: int | None = None
    garble_after: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.kind == "error" and self.status is None:
            raise ValueError("behaviour 'error' needs a status")
        if self.delay < 0 or self.interval < 0:
            raise ValueError("delay and interval must be 0 or more")


@dataclass(frozen=True)
class Request:
    """One request the simulator received (no secrets: only whether a key was sent)."""

    provider: str
    path: str
    wire: str
    body: Any
    key_sent: bool
    behaviour: str


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


class Script:
    """Per-provider lists of behaviours, played in order (deterministic).

    ``prompts`` maps a piece of a prompt to per-provider behaviours of its own: a request
    whose last user message contains it plays those, so replies follow the prompt, not
    the order in which requests happen to arrive.
    """

    def __init__(
        self,
        providers: Mapping[str, Sequence[Behaviour]] | None = None,
        *,
        cycle: bool = False,
        prompts: Mapping[str, Mapping[str, Sequence[Behaviour]]] | None = None,
    ) -> None:
        self.providers = {name: list(items) for name, items in (providers or {}).items()}
        self.cycle = cycle
        self._next = dict.fromkeys(self.providers, 0)
        self._prompts = {
            key: Script(per_provider, cycle=cycle) for key, per_provider in (prompts or {}).items()
        }

    def take(self, provider: str, prompt: str = "") -> Behaviour:
        """The behaviour for the next request to ``provider`` (about ``prompt``)."""
        for key, script in self._prompts.items():
            if key in prompt and provider in script.providers:
                return script.take(provider)
        items = self.providers.get(provider) or []
        index = self._next.get(provider, 0)
        self._next[provider] = index + 1
        if index < len(items):
            return items[index]
        if self.cycle and items:
            return items[index % len(items)]
        return Behaviour()


def behaviour_from(item: Any) -> Behaviour:
    """A behaviour from its YAML form: a name, or ``{name: scalar-or-mapping}``."""
    if isinstance(item, str):
        return Behaviour(kind=item)
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("a behaviour is a name or a mapping with one name as its key")
    ((kind, value),) = item.items()
    if value is None:
        params: dict[str, Any] = {}
    elif isinstance(value, dict):
        params = dict(value)
    elif kind in _SCALAR_FIELD:
        params = {_SCALAR_FIELD[kind]: value}
    else:
        raise ValueError(f"'{kind}' takes a mapping of settings, not {value!r}")
    allowed = {f.name for f in fields(Behaviour)} - {"kind"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for '{kind}'")
    return Behaviour(kind=str(kind), **params)


def load_script(path: str | os.PathLike[str]) -> Script:
    """Read a YAML script; raise `ChainConfigError` with file:line problems."""
    file = Path(path)
    data, values, _, problems = read_yaml(file, list_prefix=())
    if problems:
        raise ChainConfigError(problems)
    if not isinstance(data, dict):
        raise ChainConfigError([Problem(str(file), 1, 1, "", "expected provider: [behaviours]")])
    cycle = bool(data.pop("cycle", False))
    providers: dict[str, list[Behaviour]] = {}
    for name, items in data.items():
        line, column = values.get((str(name),), (0, 0))
        if not isinstance(items, list):
            problems.append(Problem(str(file), line, column, str(name), "expected a list"))
            continue
        providers[str(name)] = []
        for index, item in enumerate(items):
            try:
                providers[str(name)].append(behaviour_from(item))
            except (TypeError, ValueError) as exc:
                line, column = values.get((str(name), index), (line, column))
                problems.append(Problem(str(file), line, column, f"{name}[{index}]", str(exc)))
    if problems:
        raise ChainConfigError(problems)
    return Script(providers, cycle=cycle)


def fake_key(provider: str) -> str:
    """The fake API key the simulator's environment gives ``provider``: a checksum of its
    name, so that it holds no word a message may hold (the engine masks any 8 characters of
    a known key: a key spelling "deepseek" would mask "deepseek-chat" in every message)."""
    return f"sim-{zlib.crc32(provider.encode()):08x}-fake"
