"""What an attempt's result means: the one function that maps a provider's result or
exception onto the outcome taxonomy (:mod:`engine.types.outcomes`).

Every attempt ends in exactly one :class:`Outcome`. Its ``category`` fires the chain's
state machine (``success``, ``retryable``, ``timeout``, ``non_retryable``); its
``error_category`` and ``error_code`` go into the attempt record; ``transient`` says
whether trying the *same* step again can help.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from engine.errors import AIResponseError, AITimeoutError, ProviderError, TorqError
from engine.types.completion import Completion
from engine.types.outcomes import (
    CATEGORIES,
    FAILURE_CATEGORIES,
    TAXONOMY,
    Category,
    Outcome,
    Rule,
)
from engine.types.request import ToolCall

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
    "health_verdict",
    "rule_for",
]

_PROVIDER: Final = "provider_error"

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


# What a code says of the provider's health, where the category does not: None for codes
# that say nothing of it (the engine's own or the caller's doing), False for a live answer
# that the chain's accept rules turned down.
_CODE_HEALTH: Final[Mapping[str | None, bool | None]] = {
    **dict.fromkeys(
        ("provider_not_found", "not_configured", "unsupported_request", "overloaded",
         "queue_timeout", "circuit_open", "context_length_exceeded", "quota_exhausted",
         "context_too_small", "hedge_lost"),
        None,
    ),
    "answer_rejected": False,
}  # fmt: skip
_HEALTH_FAILURES: Final = frozenset({"retryable", "timeout"})


def health_verdict(outcome: Outcome) -> bool | None:
    """Whether an attempt counts as a failure of its provider's health (None: not at all)."""
    return _CODE_HEALTH.get(outcome.error_code, outcome.category in _HEALTH_FAILURES)


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
