"""What a stream hands over, piece by piece: text, tool-call pieces and shown reasoning."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Delta", "ReasoningDelta", "TextDelta", "ToolCallDelta"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """The next piece of tool call number ``index`` (0, 1, ... in the answer's order): its
    id and name when they first appear, then pieces of its JSON ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The next piece of the model's shown reasoning (never part of the answer's text)."""

    text: str


Delta = TextDelta | ToolCallDelta | ReasoningDelta
