"""What an attempt's result means: the outcome taxonomy, as data, and the one function
that maps a provider's result or exception onto it.

Every attempt ends in exactly one :class:`Outcome`. Its ``category`` fires the chain's
state machine (``success``, ``retryable``, ``timeout``, ``non_retryable``); its
``error_category`` and ``error_code`` go into the attempt record; ``transient`` says
whether trying the *same* step again can help.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from .errors import AIResponseError, AITimeoutError, ProviderError, TorqError
from .request import ToolCall

__all__ = [
    "CATEGORIES",
    "FAILURE_CATEGORIES",
    "TAXONOMY",
    "Category",
    "Completion",
    "Outcome",
    "Rule",
    "classify_exception",
    "classify_result",
    "coded",
    "rule_for",
]

Category = Literal["success", "retryable", "timeout", "non_retryable"]
CATEGORIES: Final = ("success", "retryable", "timeout", "non_retryable")
FAILURE_CATEGORIES: Final = ("retryable", "timeout", "non_retryable")


@dataclass(frozen=True, slots=True)
class Completion:
    """A provider's answer: the text, the tools it asks to call, why it stopped, the model
    that produced it, and token usage if known."""

    text: str
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: ``stop``, ``length``, ``tool_calls``, ``content_filter`` (OpenAI's words), or None.
    finish_reason: str | None = None
    #: The model's reasoning, when it showed it (DeepSeek's ``reasoning_content``, Claude's
    #: thinking blocks, Mistral's thinking parts, ...): never part of :attr:`text`.
    reasoning: str = ""
    #: Prompt tokens read from the provider's prompt cache, and written to it, as the
    #: provider reports them (priced apart: see the price table's ``cache_read`` /
    #: ``cache_write``). OpenAI-style replies count cache reads inside ``tokens_in``
    #: (``prompt_tokens``); Anthropic's ``input_tokens`` count neither.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def tokens_total(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    @property
    def usage(self) -> dict[str, int]:
        """``{"input_tokens", "output_tokens", "total_tokens"}``."""
        return {
            "input_tokens": self.tokens_in,
            "output_tokens": self.tokens_out,
            "total_tokens": self.tokens_total,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the taxonomy: what a given error code means."""

    category: Category
    error_category: str
    transient: bool


@dataclass(frozen=True, slots=True)
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
    # A provider that cannot express the request (a plain one given tools, say): next step.
    "unsupported_request": Rule("retryable", _PROVIDER, False),
    "response_too_large": Rule("retryable", _PROVIDER, False),
    "overloaded": Rule("retryable", _PROVIDER, False),
    # The provider's breaker is open: no call was made (status "skipped").
    "circuit_open": Rule("retryable", _PROVIDER, False),
    "contract_violation": Rule("retryable", _PROVIDER, False),
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
    "refusal": Rule("non_retryable", "ai_error", False),
}

# When the code is absent or not in the table, the exception type decides.
_BY_TYPE: Final[Mapping[type[TorqError], Rule]] = {
    AITimeoutError: Rule("timeout", "timeout", True),
    AIResponseError: Rule("non_retryable", "ai_error", False),
    ProviderError: Rule("retryable", _PROVIDER, False),
}

_OTHER_EXCEPTION: Final = Rule("retryable", "exception", False)

# TORQ's contract guard: adapters that swallow an error and return its text instead.
_ERROR_TEXT = re.compile(
    r"^\s*(error\b|exception\b|traceback \(most recent call last\)|\[error\]"
    r"|api error|http error|i apologize, but (?:i encountered an error|the ai service))",
    re.IGNORECASE,
)
_MESSAGE_LIMIT = 500


def rule_for(code: str | None, exc_type: type[BaseException]) -> Rule:
    """The taxonomy rule for an error code raised with an exception of ``exc_type``."""
    if code is not None:
        rule = TAXONOMY.get(code)
        if rule is not None:
            return rule
    for known, rule in _BY_TYPE.items():
        if issubclass(exc_type, known):
            return rule
    if issubclass(exc_type, TimeoutError):
        return _BY_TYPE[AITimeoutError]
    return _OTHER_EXCEPTION


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def classify_exception(exc: BaseException, overrides: Mapping[str, Category]) -> Outcome:
    """Map an exception raised by a provider onto the taxonomy.

    ``overrides`` is a chain's ``error_codes``: it changes the category (what the chain does)
    of given codes, never the recorded ``error_category``.
    """
    code: str | None
    if isinstance(exc, ProviderError | AITimeoutError | AIResponseError):
        code, retry_after, should_retry = exc.code, exc.retry_after, exc.should_retry
        rule = rule_for(code, type(exc))
    else:  # a built-in TimeoutError keeps no code; anything else is named by its class
        code = None if isinstance(exc, TimeoutError) else type(exc).__name__
        retry_after, should_retry = None, None
        rule = rule_for(None, type(exc))
    return Outcome(
        category=overrides.get(code, rule.category) if code is not None else rule.category,
        error_category=rule.error_category,
        error_code=code,
        transient=rule.transient if should_retry is None else should_retry,
        message=_short(str(exc) or type(exc).__name__),
        retry_after=retry_after,
        exception=exc,
        http_status=getattr(exc, "http_status", None),
    )


def coded(code: str, message: str, overrides: Mapping[str, Category]) -> Outcome:
    """The outcome the engine itself records under a taxonomy ``code`` (a provider that is
    unknown, not configured, or that broke the contract)."""
    rule = TAXONOMY[code]
    return Outcome(
        overrides.get(code, rule.category), rule.error_category, code, rule.transient, message
    )


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def classify_result(
    value: Any, default_model: str | None, overrides: Mapping[str, Category]
) -> Outcome:
    """Map what a provider returned onto the taxonomy.

    A ``str`` or a completion-like object (a ``text`` str attribute, optionally ``model``,
    ``tokens_in``/``tokens_out`` or ``usage``) is a success, unless it breaks the contract:
    a dict, an empty answer, or text that is an error message in disguise.
    """
    calls: tuple[ToolCall, ...] = ()
    finish: str | None = None
    whole: Completion | None = None
    if isinstance(value, str):
        text, model, tokens_in, tokens_out, cost = value, default_model, 0, 0, None
    elif isinstance(value, Completion):
        text, model = value.text, value.model or default_model
        calls, whole = value.tool_calls, value
    elif isinstance(value, dict):
        return coded("contract_violation", "provider returned a dict instead of text", overrides)
    elif isinstance(getattr(value, "text", None), str):
        text = value.text
        model = getattr(value, "model", None)
        model = model if isinstance(model, str) and model else default_model
        usage = getattr(value, "usage", None)
        tokens_in = _as_int(getattr(value, "tokens_in", getattr(usage, "prompt_tokens", 0)))
        tokens_out = _as_int(getattr(value, "tokens_out", getattr(usage, "completion_tokens", 0)))
        raw_cost = getattr(value, "cost_usd", None)
        cost = float(raw_cost) if isinstance(raw_cost, int | float) else None
    else:
        detail = f"provider returned {type(value).__name__}, expected str or a completion"
        return coded("contract_violation", detail, overrides)
    if not text.strip() and not calls:  # a tool call is an answer without text
        return coded("contract_violation", "provider returned an empty answer", overrides)
    if _ERROR_TEXT.match(text):
        detail = f"provider returned an error as text: {_short(text)!r}"
        return coded("contract_violation", detail, overrides)
    if whole is not None:  # kept whole: reasoning, cache tokens and all
        if whole.model != model:
            whole = replace(whole, model=model)
        return Outcome(category="success", completion=whole)
    return Outcome(
        category="success",
        completion=Completion(text, model, tokens_in, tokens_out, cost, calls, finish),
    )
