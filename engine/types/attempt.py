"""One attempt, as recorded: a frozen :class:`Attempt`, made once when the attempt ends,
and the plain dict of the metadata contract (``meta.provider_attempts``) it gives."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Attempt"]


class Attempt(NamedTuple):
    """How one attempt went. ``status`` is ``success``, ``failed``, ``skipped`` (a breaker
    was open: no call was made) or ``cancelled`` (a hedged copy that another beat); the
    streamed fields are None for a call that did not stream, ``retry_in_ms`` is set for a
    skipped attempt, ``retry_refused`` when the retry budget refused a retry, ``hedge`` is
    the copy number of a hedged attempt. (A named tuple: immutable, and made on every
    attempt, where a frozen dataclass's checked field-by-field setup would cost three
    times as much.)"""

    provider: str
    model: str | None
    status: str
    error_category: str | None
    error_code: str | None
    latency_ms: int
    timestamp: str
    tokens_in: int
    tokens_out: int
    tokens_total: int
    cost_usd_est: float | None
    category: str
    state: str
    retry: int
    retry_after_ms: int | None
    message: str | None
    http_status: int | None
    next: str
    retry_in_ms: int | None = None
    retry_refused: str | None = None
    ttft_ms: int | None = None
    chunks: int | None = None
    truncated: bool | None = None
    #: a hedged attempt's copy: 0 the attempt itself, 1.. the copies sent after it
    hedge: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metadata contract's dict: every key of an attempt, then those that apply."""
        out: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "error_category": self.error_category,
            "error_code": self.error_code,
            "latency_ms": self.latency_ms,
            "timestamp": self.timestamp,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "tokens_total": self.tokens_total,
            "cost_usd_est": self.cost_usd_est,
            "category": self.category,
            "state": self.state,
            "retry": self.retry,
            "retry_after_ms": self.retry_after_ms,
            "message": self.message,
            "http_status": self.http_status,
            "next": self.next,
        }
        if self.retry_in_ms is not None:
            out["retry_in_ms"] = self.retry_in_ms
        if self.retry_refused is not None:
            out["retry_refused"] = self.retry_refused
        if self.chunks is not None:  # a streamed attempt
            out["ttft_ms"] = self.ttft_ms
            out["chunks"] = self.chunks
            out["truncated"] = self.truncated
        if self.hedge is not None:
            out["hedge"] = self.hedge
        return out
