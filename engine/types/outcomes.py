"""The outcome taxonomy, as data: the categories that drive a chain's machine, and what
each error code means (its category, its TORQ ``error_category``, and whether trying the
same step again can help). `engine.core.classify` maps results and exceptions onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from engine.types.completion import Completion

__all__ = ["CATEGORIES", "FAILURE_CATEGORIES", "TAXONOMY", "Category", "Outcome", "Rule"]

Category = Literal["success", "retryable", "timeout", "non_retryable"]
CATEGORIES: Final = ("success", "retryable", "timeout", "non_retryable")
FAILURE_CATEGORIES: Final = ("retryable", "timeout", "non_retryable")


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the taxonomy: what a given error code means."""

    category: Category
    error_category: str
    transient: bool


@dataclass(slots=True)
class Outcome:
    """How one attempt ended."""

    category: Category
    error_category: str | None = None
    error_code: str | None = None
    transient: bool = False
    message: str | None = None
    retry_after: float | None = None
    completion: Completion | None = None
    exception: BaseException | None = None
    http_status: int | None = None


_PROVIDER = "provider_error"

#: The taxonomy table: error code -> rule. Codes not listed fall back on the exception type.
TAXONOMY: Final[Mapping[str, Rule]] = {
    "429": Rule("retryable", _PROVIDER, True),
    "insufficient_quota": Rule("retryable", _PROVIDER, False),
    "402": Rule("retryable", _PROVIDER, False),
    "401": Rule("retryable", _PROVIDER, False),
    "403": Rule("retryable", _PROVIDER, False),
    "404": Rule("retryable", _PROVIDER, False),
    "408": Rule("retryable", _PROVIDER, True),
    "409": Rule("retryable", _PROVIDER, True),
    "500": Rule("retryable", _PROVIDER, True),
    "502": Rule("retryable", _PROVIDER, True),
    "503": Rule("retryable", _PROVIDER, True),
    "504": Rule("retryable", _PROVIDER, True),
    "529": Rule("retryable", _PROVIDER, True),
    "connect_error": Rule("retryable", _PROVIDER, False),
    "provider_not_found": Rule("retryable", _PROVIDER, False),
    "not_configured": Rule("retryable", _PROVIDER, False),
    "malformed_response": Rule("retryable", _PROVIDER, True),
    "truncated_response": Rule("retryable", _PROVIDER, True),
    # An error event in the middle of a stream that names no known kind.
    "stream_error": Rule("retryable", _PROVIDER, True),
    # The model wrote a tool call its server could not parse (Groq's 400 tool_use_failed):
    # the model failed, not the request; sampling again may succeed.
    "tool_use_failed": Rule("retryable", _PROVIDER, True),
    "context_length_exceeded": Rule("retryable", _PROVIDER, False),
    # The model's window (the catalogue) cannot hold the request: skipped, no call made.
    "context_too_small": Rule("retryable", _PROVIDER, False),
    # A provider that cannot express the request (a plain one given tools, say): next step.
    "unsupported_request": Rule("retryable", _PROVIDER, False),
    "response_too_large": Rule("retryable", _PROVIDER, False),
    "overloaded": Rule("retryable", _PROVIDER, False),
    # The provider's breaker is open: no call was made (status "skipped").
    "circuit_open": Rule("retryable", _PROVIDER, False),
    "contract_violation": Rule("retryable", _PROVIDER, False),
    # The provider's quota (rpm, tpm in providers.yaml) is used up: no call made (skipped).
    "quota_exhausted": Rule("retryable", _PROVIDER, False),
    # Timeouts are transient here; whether a step retries them is the step's retry_timeouts.
    "connect_timeout": Rule("timeout", "timeout", True),
    "read_timeout": Rule("timeout", "timeout", True),
    "attempt_timeout": Rule("timeout", "timeout", True),
    # Waiting in line for the provider's bulkhead took the attempt's time: try elsewhere.
    "queue_timeout": Rule("timeout", "timeout", False),
    # Streams: no first token in time, or a gap between chunks longer than allowed.
    "first_token_timeout": Rule("timeout", "timeout", True),
    "idle_timeout": Rule("timeout", "timeout", True),
    "400": Rule("non_retryable", "ai_error", False),
    "422": Rule("non_retryable", "ai_error", False),
    "content_filter": Rule("non_retryable", "ai_error", False),
    # The answer came back but failed the step's accept rules (not JSON, a schema, a tool's
    # arguments, too long, a validator): another provider may answer better.
    "answer_rejected": Rule("retryable", "ai_error", False),
    "refusal": Rule("non_retryable", "ai_error", False),
    # A hedged copy still running when another answered first: cancelled (status
    # "cancelled"); slower than another, which says nothing of the provider's health.
    "hedge_lost": Rule("retryable", "timeout", False),
    # The caller went away mid-call (a stream closed early, a gateway's client hung up):
    # the call was cancelled (status "cancelled"); nothing said of the provider's health.
    "caller_left": Rule("retryable", "timeout", False),
}
