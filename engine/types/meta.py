"""Execution modes, the per-call metadata record, and the attempt record.

The metadata contract (see the README): ``provider_attempts`` always holds at least one
attempt; ``fallback_used`` is true exactly when more than one attempt was made;
``fallback_reason`` is set exactly then, from the first attempt; on success ``provider``,
``model`` and ``latency_ms`` describe the winning attempt and ``error`` is None; on failure
``error`` and ``error_category`` are set.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "ATTEMPT_KEYS",
    "ExecutionMode",
    "GenerationMeta",
    "Mode",
    "fallback_reason",
    "iso_timestamp",
    "mode_of",
]


class ExecutionMode(StrEnum):
    """How the application wants the prompt answered; each mode has its own chain. These
    five are the seed's; any chain file names one more (its file name, or its ``mode:``)."""

    DIRECT = "direct"
    RESEARCH = "research"
    CODE_GENERATION = "code_generation"
    COMPOSITION = "composition"
    HIERARCHICAL = "hierarchical"


#: A mode: one of the five `ExecutionMode` members, or the name of a chain file's.
Mode = ExecutionMode | str
_SEED_MODES: Final = {mode.value: mode for mode in ExecutionMode}


def mode_of(value: str) -> Mode:
    """``value`` as a mode: the `ExecutionMode` member of that value, or the str."""
    return _SEED_MODES.get(value, value)


#: Keys every attempt record carries (more keys are allowed).
ATTEMPT_KEYS = (
    "provider",
    "model",
    "status",
    "error_category",
    "error_code",
    "latency_ms",
    "timestamp",
    "tokens_in",
    "tokens_out",
    "tokens_total",
    "cost_usd_est",
)


_second: list[Any] = [None, ""]  # the last second formatted, and its text up to the seconds


def iso_timestamp(epoch_seconds: float) -> str:
    """UTC ISO 8601 with milliseconds, the format of every timestamp in metadata."""
    # Rounded exactly as datetime.fromtimestamp rounds (fraction to microseconds, half-even).
    frac, whole = math.modf(epoch_seconds)
    fraction = round(frac * 1_000_000)
    second = int(whole)
    if fraction >= 1_000_000:
        second, fraction = second + 1, fraction - 1_000_000
    elif fraction < 0:
        second, fraction = second - 1, fraction + 1_000_000
    cached = _second  # one read: another thread may replace it meanwhile
    if cached[0] != second:
        text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
        cached = [second, text]
        _second[:] = cached
    return f"{cached[1]}.{fraction // 1000:03d}+00:00"


_UNSET: Any = object()


class _Lazy:
    """A dataclass field whose value is made only when first read (a descriptor field).

    ``timestamp`` keeps the epoch float taken at construction and formats it on first read;
    ``request_id`` draws its id on first read. Most callers never read either, and formatting
    dates and drawing UUIDs was a quarter of the engine's own time per request.
    """

    def __init__(self, make: Callable[[Any], Any], capture: Callable[[], Any]) -> None:
        self._make = make
        self._capture = capture

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_lazy_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return _UNSET  # the dataclass default: "not given"
        state = obj.__dict__[self._slot]
        if isinstance(state, _Pending):
            state = self._make(state.raw)
            obj.__dict__[self._slot] = state
        return state

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = _Pending(self._capture()) if value is _UNSET else value


class _Pending:
    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw


_ids: list[Any] = [None, None]  # [pid, random.Random] of the process drawing ids


def new_request_id() -> str:
    """32 random hex digits, like ``uuid4().hex`` but several times cheaper: a generator
    seeded from the OS once per process (and again after a fork, so no two share ids)."""
    pid = os.getpid()
    if _ids[0] != pid:
        _ids[:] = [pid, random.Random(os.urandom(32))]
    return f"{_ids[1].getrandbits(128):032x}"


def snapshot(meta: GenerationMeta) -> dict[str, Any]:
    """The metadata's fields as they are now, cheaply: the timestamp stays unformatted
    until `field_value` reads it (the request id is fixed now, so it matches)."""
    meta.request_id  # noqa: B018 - fixes the id before the copy
    return dict(meta.__dict__)


def field_value(snap: Mapping[str, Any], name: str) -> Any:
    """A field of a `snapshot` (formatting a lazy one)."""
    if name in ("timestamp", "request_id"):
        value = snap["_lazy_" + name]
        if isinstance(value, _Pending):
            return iso_timestamp(value.raw) if name == "timestamp" else new_request_id()
        return value
    value = snap[name]
    return str(value) if isinstance(value, ExecutionMode) else value


def fallback_reason(attempts: list[dict[str, Any]]) -> str | None:
    """``"{error_category}:{error_code}"`` of the first attempt, or the category alone.

    None unless more than one attempt was made.
    """
    if len(attempts) < 2:
        return None
    first = attempts[0]
    category, code = first.get("error_category"), first.get("error_code")
    if category and code:
        return f"{category}:{code}"
    return str(category) if category else None


@dataclass
class GenerationMeta:
    """Everything known about one ``generate_response`` call. JSON-serialisable via ``to_dict``."""

    provider: str | None = None
    model: str | None = None
    mode: Mode = ExecutionMode.DIRECT
    latency_ms: int = 0
    timestamp: str = _Lazy(iso_timestamp, time.time)  # type: ignore[assignment]
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_total: int = 0
    cost_usd_est: float | None = None
    tools_used: list[str] = field(default_factory=list)
    tool_results: list[Any] = field(default_factory=list)
    cache_hit: bool = False
    request_id: str = _Lazy(lambda _: new_request_id(), lambda: None)  # type: ignore[assignment]
    provider_attempts: list[dict[str, Any]] = field(default_factory=list)
    fallback_used: bool = False
    fallback_reason: str | None = None
    error: str | None = None
    error_category: str | None = None
    #: Free-form labels the caller gave ``chat(..., tags=...)`` (never sent to providers).
    tags: dict[str, str] = field(default_factory=dict)
    #: A streamed answer was cut after part of it had been handed over (it is incomplete).
    truncated: bool = False
    #: The whole call, from entry to return, in milliseconds: every attempt, backoff and
    #: wait included (``latency_ms`` is the winning attempt's alone).
    duration_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of JSON types (the mode as its string value): a deep copy, as
        `dataclasses.asdict` makes, in a fraction of its time (a gateway makes one per
        reply)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["mode"] = str(self.mode)
        for name in _CONTAINER_FIELDS:
            data[name] = _plain(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationMeta:
        """Rebuild from ``to_dict`` output; unknown keys are an error, missing keys default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GenerationMeta.from_dict: unknown keys {unknown}")
        values = dict(data)
        if "mode" in values:
            values["mode"] = mode_of(str(values["mode"]))
        return cls(**values)


def _plain(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples, nested dataclasses as dicts)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return kind(v if type(v) in _SCALARS else _plain(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, dict | list | tuple):  # subclasses: copied the general way
        return deepcopy(value)
    return value


# Values `_plain` hands on as they are (immutable).
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: Final = tuple(f.name for f in fields(GenerationMeta))
_CONTAINER_FIELDS: Final = ("tools_used", "tool_results", "provider_attempts", "tags")

# A request id not drawn yet (never changed: the first read replaces it in the record).
_UNDRAWN: Final = _Pending(None)
# What GenerationMeta's generated __init__ leaves in a new record's __dict__, in its order
# (the lazy fields' pending values are replaced per record, the factories called anew).
_TEMPLATE: Final = dict(GenerationMeta().__dict__)
_FACTORIES: Final = tuple(
    (f.name, f.default_factory) for f in fields(GenerationMeta) if f.default_factory is not MISSING
)


def new_meta(
    mode: Mode, tools_used: list[str] | None = None, tags: dict[str, str] | None = None
) -> GenerationMeta:
    """``GenerationMeta(mode=mode, tools_used=tools_used, tags=tags)``, made the fast way: a
    record is made on every call, and the generated ``__init__`` (22 fields assigned one by
    one, two of them through descriptors) was a tenth of the engine's time per success."""
    meta: GenerationMeta = object.__new__(GenerationMeta)
    state = meta.__dict__
    state.update(_TEMPLATE)
    for name, make in _FACTORIES:
        state[name] = make()
    state["mode"] = mode
    if tools_used is not None:
        state["tools_used"] = tools_used
    if tags is not None:
        state["tags"] = tags
    state["_lazy_timestamp"] = _Pending(time.time())
    state["_lazy_request_id"] = _UNDRAWN
    return meta
