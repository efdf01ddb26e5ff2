"""The timeouts of a streamed attempt."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StreamTimeouts"]


@dataclass(frozen=True, slots=True)
class StreamTimeouts:
    """Seconds a streamed attempt may take: until its first delta (``first_token``),
    between two deltas (``idle``), and in all (``total``, what is left of the chain)."""

    first_token: float
    idle: float
    total: float
