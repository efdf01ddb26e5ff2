"""What went wrong, as the gateway tells it: a `GatewayError` (status, code, message, the
field at fault, a Retry-After) from the gateway's own checks or from a chain's failure.

A chain's failure maps to a status by what it means to the caller:

| what happened | status | code |
|---|---|---|
| every step failed | 502 | the last attempt's code |
| the deadline ran out | 504 | ``deadline_exceeded`` |
| a content filter or a refusal stopped it | 400 | ``content_filter`` |
| the request itself was refused as invalid | 400 | ``invalid_request`` |
| any other non-retryable stop (a provider's auth, say) | 502 | its code |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from engine.errors import AITimeoutError, ChainAbortedError, ChainExhaustedError, TorqError

__all__ = ["GatewayError", "from_failure"]

#: Codes that say the answer was withheld by a filter or the model refused.
_FILTERED: Final = frozenset(
    {
        "content_filter",
        "refusal",
        "safety",
        "policy_violation",
        "content_policy_violation",
        "ai_error",
        "answer_rejected",
    }
)
#: Codes that say the request itself is what no provider would take.
_INVALID: Final = frozenset(
    {
        "invalid_request",
        "invalid_request_error",
        "400",
        "422",
        "context_length_exceeded",
        "bad_request",
        "unsupported_request",
    }
)


@dataclass
class GatewayError(Exception):
    """A reply the gateway sends instead of an answer, in the caller's API's error format."""

    status: int
    code: str
    message: str
    param: str | None = None
    retry_after: float | None = None
    #: The chain's record, when a chain ran (``torq`` in the body).
    torq: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Headers the status needs (Retry-After, in whole seconds, never 0)."""
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, int(self.retry_after + 0.999))).encode())]


def from_failure(exc: BaseException, torq: dict[str, Any]) -> GatewayError:
    """The reply for a chain that did not answer."""
    code = str(getattr(exc, "code", None) or type(exc).__name__)
    if isinstance(exc, ChainExhaustedError | AITimeoutError):
        if code == "deadline_exceeded" or isinstance(exc, AITimeoutError):
            return GatewayError(504, "deadline_exceeded", _said(exc), torq=torq)
        return GatewayError(502, code, _said(exc), torq=torq)
    if isinstance(exc, ChainAbortedError):
        if code in _FILTERED:
            return GatewayError(400, "content_filter", _said(exc), torq=torq)
        if code in _INVALID:
            return GatewayError(400, "invalid_request", _said(exc), torq=torq)
        return GatewayError(502, code, _said(exc), torq=torq)
    if isinstance(exc, TorqError):
        return GatewayError(502, code, _said(exc), torq=torq)
    raise exc  # not a chain's failure: a bug, and it must be seen


def _said(exc: BaseException) -> str:
    """The engine's message (already redacted: no key in it), on one line."""
    return " ".join(str(exc).split())[:2000]
