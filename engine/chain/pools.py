"""Pools: one step spread over several deployments (keys, regions, vendors serving the same
model), as written and as resolved.

    - id: gpt
      pool:
        - {provider: openai_east, weight: 3}
        - {provider: openai_west, weight: 1, model: gpt-4o-mini}
      strategy: weighted     # weighted (default) | priority | least_busy | latency | cost
      slow_start: 30         # seconds over which a member back from an open breaker
                             # grows to its full weight
      retries: 1             # a retry goes to another member when one is available

A bare list of names is a pool of equal weights: ``pool: [openai_east, openai_west]``.
Choosing a member is not an attempt: each attempt records the member as its ``provider`` and
the step id as its ``state``. `engine.core.routing` makes the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "DEFAULT_SLOW_START",
    "MAX_MEMBERS",
    "STRATEGIES",
    "Member",
    "MemberEntry",
    "MemberSpec",
    "Strategy",
]

Strategy = Literal["weighted", "priority", "least_busy", "latency", "cost"]
#: Every strategy, the default first.
STRATEGIES: Final = ("weighted", "priority", "least_busy", "latency", "cost")
#: Seconds a member back from an open breaker takes to reach its full weight.
DEFAULT_SLOW_START: Final = 30.0
#: Most members one pool may have.
MAX_MEMBERS: Final = 32


class MemberSpec(BaseModel):
    """One member of a pool, spelled out."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    provider: str = Field(min_length=1, description="Provider name (built in or providers.yaml).")
    weight: float = Field(
        default=1.0, gt=0, le=1_000_000, description="Share of the draw (weighted strategy)."
    )
    model: str | None = Field(
        default=None, min_length=1, description="Model to ask this member for."
    )


def _member_kind(value: Any) -> str:
    return "name" if isinstance(value, str) else "member"


MemberEntry = Annotated[
    Annotated[str, Tag("name")] | Annotated[MemberSpec, Tag("member")],
    Discriminator(_member_kind),
]


def key_part(text: str) -> str:
    """A name as one part of a breaker key (``%`` and ``:`` escaped)."""
    return text.replace("%", "%25").replace(":", "%3A")


@dataclass(frozen=True, slots=True)
class Member:
    """A resolved pool member (a single-provider step is a pool of one); ``key`` is its
    breaker key, ``provider`` or ``provider:model`` (escaped), computed once."""

    provider: str
    weight: float = 1.0
    model: str | None = None
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", breaker_key(self.provider, self.model))


def as_member(entry: str | MemberSpec, model: str | None = None) -> Member:
    """A written member, resolved (``model``: the step's, for members that name none)."""
    if isinstance(entry, str):
        return Member(entry, 1.0, model)
    return Member(entry.provider, float(entry.weight), entry.model or model)


def breaker_key(provider: str, model: str | None) -> str:
    """A breaker per provider, and per model when one is named: ``provider:model``, with
    ``%`` and ``:`` inside either escaped, so that provider ``acme:gpt`` and provider
    ``acme`` with model ``gpt`` never share one."""
    key = key_part(provider)
    return f"{key}:{key_part(model)}" if model else key


__all__ += ["as_member", "breaker_key", "key_part"]
