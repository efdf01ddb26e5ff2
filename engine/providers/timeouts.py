"""The timeouts of a streamed attempt, and the outcome of running out of one."""

from __future__ import annotations

from engine.errors import AITimeoutError
from engine.types.timeouts import StreamTimeouts

__all__ = ["StreamTimeouts", "stream_timeout"]


def stream_timeout(provider: str, timeouts: StreamTimeouts, delivered: bool) -> AITimeoutError:
    """The outcome of a stream that went quiet too long: before its first delta
    (``first_token_timeout``) or between two (``idle_timeout``)."""
    if not delivered:
        return AITimeoutError(
            f"{provider}: no first token within {timeouts.first_token:g}s",
            code="first_token_timeout",
            provider=provider,
        )
    return AITimeoutError(
        f"{provider}: the stream went quiet for more than {timeouts.idle:g}s",
        code="idle_timeout",
        provider=provider,
    )
