"""The chain file format (pydantic models) and its resolution into a runnable `Chain`.

This module knows nothing of YAML or of files: `engine.chain.loader` turns a file into the
plain data validated here and turns the locations of problems into file:line:column.

Format, in short (the default chains under ``chains/`` explain it in comments)::

    description: Fast answers.           # optional
    mode: direct                         # the mode it serves (default: the file name)
    deadline: 120                        # seconds for the whole chain
    on_midstream: fail                   # a stream cut mid-way: fail or restart
    rate_limit_pause: 0.25               # seconds to wait after a 429 before the next step
    when_all_open: probe_nearest         # every breaker open: probe_nearest or fail_fast
    defaults: {timeout: 30, retries: 0}  # for every step (also first_token_timeout,
                                         # idle_timeout, params: {temperature: ...})
    error_codes: {"404": non_retryable}  # change what a given error code does
    steps:
      - deepseek                         # a provider name is a whole step
      - id: openai_fast                  # or spell the step out
        provider: openai
        model: gpt-4o-mini
        timeout: 20
        retries: 2                       # same-step retries, transient outcomes only
        goto: {timeout: claude}          # where a category goes instead of the next step
      - claude

A whole file may also be just the list of steps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from engine.chain.accept import DEFAULT_ACCEPTANCE, Acceptance, AcceptSpec
from engine.chain.filelimits import MAX_STEPS
from engine.chain.hedge import Hedge, HedgeSpec
from engine.chain.pools import (
    DEFAULT_SLOW_START,
    MAX_MEMBERS,
    Member,
    MemberEntry,
    Strategy,
    breaker_key,
)
from engine.types.outcomes import Category

__all__ = [
    "FINAL_STATES",
    "KEYWORD_TARGETS",
    "MAX_STEPS",
    "Chain",
    "ChainSpec",
    "Defaults",
    "Goto",
    "Loc",
    "Params",
    "Step",
    "StepSpec",
]

FailureCategory = Literal["retryable", "timeout", "non_retryable"]
MidstreamPolicy = Literal["fail", "restart"]
WhenAllOpen = Literal["probe_nearest", "fail_fast"]

#: Final states of every chain's machine.
SUCCEEDED, EXHAUSTED, ABORTED = "succeeded", "exhausted", "aborted"
FINAL_STATES: Final = (SUCCEEDED, EXHAUSTED, ABORTED)
#: What a ``goto`` may say besides a step id.
KEYWORD_TARGETS: Final = ("next", "abort", "exhausted")
_KEYWORD_DEST: Final = {"abort": ABORTED, "exhausted": EXHAUSTED}
_RESERVED_IDS: Final = frozenset(FINAL_STATES) | frozenset(KEYWORD_TARGETS) | {"success"}
_ID_PATTERN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
#: Most step ids listed in one message.
_IDS_SHOWN: Final = 8

#: Built-in values for anything neither a step nor the chain's ``defaults`` sets.
BUILTIN_DEFAULTS: Final[Mapping[str, Any]] = {
    "timeout": 30.0,
    "retries": 0,
    "retry_timeouts": False,
    "backoff_base": 0.5,
    "backoff_max": 10.0,
    "quota_wait": 0.0,
}
BUILTIN_GOTO: Final[Mapping[str, str]] = {
    "retryable": "next",
    "timeout": "next",
    "non_retryable": "abort",
}

Loc = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Goto(_Strict):
    """Where each failure category leads from a step: a later step's id, or a keyword."""

    retryable: str | None = Field(
        default=None,
        description="After a retryable failure: next, abort, exhausted or a later step id.",
    )
    timeout: str | None = Field(
        default=None, description="After a timeout: next, abort, exhausted or a later step id."
    )
    non_retryable: str | None = Field(
        default=None,
        description="After a non-retryable failure: next, abort, exhausted or a step id.",
    )


class Params(_Strict):
    """Request parameters a step (or ``defaults``) sets; a call's own parameters win."""

    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, ge=1, description="Longest answer, in tokens.")
    top_p: float | None = Field(default=None, ge=0, le=1, description="Nucleus sampling.")
    stop: list[str] | None = Field(default=None, description="Sequences that end the answer.")
    seed: int | None = Field(default=None, description="Sampling seed, where the API has one.")


class _StepSettings(_Strict):
    timeout: float | None = Field(default=None, gt=0, description="Per-attempt timeout in seconds.")
    retries: int | None = Field(
        default=None,
        ge=0,
        description="Extra attempts on the same step, for transient outcomes only.",
    )
    retry_timeouts: bool | None = Field(
        default=None, description="Whether timeouts count as transient (retried on the same step)."
    )
    first_token_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Streaming: seconds until the first token (default: the step's timeout).",
    )
    idle_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Streaming: longest gap between two chunks (default: the step's timeout).",
    )
    backoff_base: float | None = Field(
        default=None,
        ge=0,
        description="Seconds; retry n waits up to backoff_base * 2**n (full jitter).",
    )
    backoff_max: float | None = Field(
        default=None,
        ge=0,
        description="Longest wait before a retry, Retry-After included, in seconds.",
    )
    quota_wait: float | None = Field(
        default=None,
        ge=0,
        description="Seconds an attempt may wait for its provider's quota (rpm, tpm) to free "
        "up, within the deadline; past it the step is skipped as quota_exhausted (default 0).",
    )
    goto: Goto | None = Field(default=None, description="Where each failure category leads.")
    params: Params | None = Field(
        default=None, description="Request parameters (temperature, max_tokens, top_p, stop, seed)."
    )
    accept: AcceptSpec | None = Field(
        default=None, description="What an answer must be before it counts (answer_rejected)."
    )


class Defaults(_StepSettings):
    """Settings every step inherits unless it sets its own."""


class StepSpec(_StepSettings):
    """One step of a chain, spelled out: one ``provider``, or a ``pool`` of them."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["provider"]}, {"required": ["pool"]}]}
    )

    id: str | None = Field(
        default=None, description="Unique step id; defaults to the provider name."
    )
    provider: str | None = Field(
        default=None, min_length=1, description="Provider name, e.g. deepseek or openai."
    )
    model: str | None = Field(
        default=None, min_length=1, description="Model to ask this provider for."
    )
    pool: list[MemberEntry] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MEMBERS,
        description="Deployments sharing this step (instead of provider): names, or "
        "{provider, weight, model}.",
    )
    strategy: Strategy | None = Field(
        default=None,
        description="How a pool picks a member: weighted (default), priority, least_busy, "
        "latency or cost.",
    )
    slow_start: float | None = Field(
        default=None,
        ge=0,
        description="Seconds over which a pool member back from an open breaker grows to its "
        "full weight (default 30; 0: at once).",
    )
    hedge: HedgeSpec | None = Field(
        default=None,
        description="Hedged requests: {after: seconds or p90/p95, max: copies}; an attempt "
        "slower than after is sent again (another pool member, or the same provider) and "
        "the first success wins.",
    )


def _step_kind(value: Any) -> str:
    return "name" if isinstance(value, str) else "step"


StepEntry = Annotated[
    Annotated[str, Tag("name")] | Annotated[StepSpec, Tag("step")],
    Discriminator(_step_kind),
]
#: Union tags pydantic puts into error locations; dropped when locating problems.
UNION_TAGS: Final = frozenset({"name", "step", "member"})


class ChainSpec(_Strict):
    """A chain file, as written."""

    description: str = Field(default="", description="What this chain is for, shown in diagrams.")
    mode: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$",
        description="The mode this chain serves (default: its file name); mode= in a call "
        "names it.",
    )
    aliases: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")]] = Field(
        default_factory=list, max_length=64,
        description="Other names gateway clients may give as `model` for it (e.g. gpt-4o).",
    )  # fmt: skip
    deadline: float = Field(default=120.0, gt=0, description="Seconds for the whole chain.")
    on_midstream: MidstreamPolicy = Field(
        default="fail",
        description="A stream cut after its first chunk: fail (raise, marked truncated) or "
        "restart (the next step answers from the beginning, after a reset event).",
    )
    when_all_open: WhenAllOpen = Field(
        default="probe_nearest",
        description="Every provider's breaker open: probe the one closest to recovery "
        "(probe_nearest) or fail without a call (fail_fast).",
    )
    rate_limit_pause: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Seconds to wait after a rate limit (a 429) before the next step, so that "
        "one rate limit does not cascade across providers (within the deadline; 0: none).",
    )
    defaults: Defaults = Field(default_factory=Defaults)
    error_codes: dict[str, FailureCategory] = Field(
        default_factory=dict,
        description="Error code -> category, overriding the built-in taxonomy for this chain.",
    )
    steps: list[StepEntry] = Field(
        min_length=1, max_length=MAX_STEPS, description="The providers to try, in order."
    )

    @field_validator("error_codes", mode="before")
    @classmethod
    def _codes_as_strings(cls, value: Any) -> Any:
        # YAML reads `429: non_retryable` with an int key; codes are strings everywhere.
        if isinstance(value, dict):
            return {str(k) if isinstance(k, int) else k: v for k, v in value.items()}
        return value


@dataclass(frozen=True, slots=True)
class Step:
    """A resolved step: every setting known, every route a machine state."""

    id: str
    provider: str
    model: str | None
    timeout: float
    retries: int
    retry_timeouts: bool
    backoff_base: float
    backoff_max: float
    #: failure category -> destination state (a step id or a final state)
    routes: Mapping[str, str]
    #: request parameters set by the step or the chain's defaults (the call's own win)
    params: Mapping[str, Any] = field(default_factory=dict)
    #: streaming: seconds until the first token, and the longest gap between chunks
    first_token_timeout: float | None = None
    idle_timeout: float | None = None
    #: what an answer must be before it counts (``accept:``)
    accept: Acceptance = DEFAULT_ACCEPTANCE
    #: a pool's members (empty for a single-provider step; ``provider`` is then its first)
    pool: tuple[Member, ...] = ()
    strategy: Strategy = "weighted"
    slow_start: float = DEFAULT_SLOW_START
    #: seconds an attempt may wait for its provider's quota
    quota_wait: float = 0.0
    #: hedged requests (``hedge:``), None when the step does not hedge
    hedge: Hedge | None = None
    #: the breaker key of the step's provider (and model): computed once
    key: str = field(init=False, default="")
    #: the running totals of the pool's weights (a weighted draw bisects them)
    bounds: tuple[float, ...] = field(init=False, default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once, here: every request of a pool step uses them.
        object.__setattr__(self, "key", breaker_key(self.provider, self.model))
        object.__setattr__(self, "bounds", tuple(accumulate(m.weight for m in self.pool)))

    @property
    def members(self) -> tuple[Member, ...]:
        """The deployments this step may call: its pool, or its one provider."""
        return self.pool or (Member(self.provider, 1.0, self.model),)


@dataclass(frozen=True)
class Chain:
    """A validated chain, ready to compile. ``spec`` is what it was built from."""

    name: str
    source: str
    spec: ChainSpec
    steps: tuple[Step, ...]
    error_codes: Mapping[str, Category]
    by_id: Mapping[str, Step] = field(repr=False)
    #: the directory schema files are read from (the chain file's)
    base: Path | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        """The chain's description (may be empty)."""
        return self.spec.description

    @property
    def deadline(self) -> float:
        """Seconds the whole chain may take."""
        return self.spec.deadline

    @property
    def when_all_open(self) -> str:
        """Every breaker open: ``probe_nearest`` or ``fail_fast``."""
        return self.spec.when_all_open

    @property
    def rate_limit_pause(self) -> float:
        """Seconds waited after a 429 before the next step (0: no pause)."""
        return self.spec.rate_limit_pause

    @property
    def on_midstream(self) -> str:
        """What a stream cut after its first chunk does: ``fail`` or ``restart``."""
        return self.spec.on_midstream

    @property
    def max_attempts(self) -> int:
        """Upper bound on attempts in one run: every step once plus all of its retries,
        each with its hedged copies."""
        return sum(
            (1 + step.retries) * (1 + (step.hedge.max if step.hedge else 0)) for step in self.steps
        )


def _as_step(entry: str | StepSpec) -> StepSpec:
    return StepSpec(provider=entry) if isinstance(entry, str) else entry


def _step_id(entry: str | StepSpec) -> str:
    step = _as_step(entry)
    return step.id if step.id is not None else step.provider or ""


def validate_spec(data: Any) -> ChainSpec:
    """Validate plain data as a chain spec (raises pydantic's ``ValidationError``)."""
    if isinstance(data, list):
        data = {"steps": data}
    return ChainSpec.model_validate(data)


__all__ += ["UNION_TAGS", "ValidationError", "validate_spec"]
