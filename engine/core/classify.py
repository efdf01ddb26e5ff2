"""What an attempt's result means: the one function that maps a provider's result or
exception onto the outcome taxonomy (`engine.types.outcomes`).

Every attempt ends in exactly one `Outcome`. Its ``category`` fires the chain's
state machine (``success``, ``retryable``, ``timeout``, ``non_retryable``); its
``error_category`` and ``error_code`` go into the attempt record; ``transient`` says
whether trying the *same* step again can help.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from enum import Enum
from typing import Any, Final

from engine.errors import AIResponseError, AITimeoutError, ProviderError, TorqError
from engine.providers.foreign import read_foreign, wire_named
from engine.providers.mapping import REDACTED_MARK, RETRY_AFTER_CAP
from engine.providers.secrets import redact
from engine.providers.wire import Wire
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
    "HOST_RULES",
    "TAXONOMY",
    "Category",
    "Completion",
    "Outcome",
    "Rule",
    "classify_exception",
    "classify_result",
    "coded",
    "health_verdict",
    "host_rule",
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
_OWN: Final = (ProviderError, AITimeoutError, AIResponseError)

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


def classify_exception(
    exc: BaseException,
    overrides: Mapping[str, Category],
    provider: str | None = None,
    source: Any = None,
) -> Outcome:
    """Map an exception raised by a provider onto the taxonomy.

    ``overrides`` is a chain's ``error_codes``: it changes the category (what the chain does)
    of given codes, never the recorded ``error_category``. ``provider`` names the step's
    provider and ``source`` is the provider object: a failure another client raised (an
    SDK's, httpx's, requests', aiohttp's) is read as the engine's own provider reads the same
    reply (`engine.providers.foreign`; with the wire the object declares, if any), and
    named after ``provider``.
    """
    wire = _declared_wire(source) if source is not None else None
    if isinstance(exc, _OWN):
        said = exc.__dict__.get("error_category")
        # Given explicitly, as a host's class gives it: the raiser's word.
        if isinstance(said, str) and said in HOST_RULES:
            return _host_outcome(exc, said, overrides, provider, wire)
        rule = rule_for(exc.code, type(exc))
        text = str(exc) or type(exc).__name__
        # The engine's own mapping wrote (and redacted) most messages; others are redacted.
        message = _short(text if REDACTED_MARK in exc.__dict__ else redact(text))
        return _outcome(rule, exc.code, overrides, exc, exc.retry_after, exc.should_retry,
                        exc.http_status, message)  # fmt: skip
    said = getattr(exc, "error_category", None)
    if isinstance(said, str) and said in HOST_RULES:  # a host's own class (TORQ Console's)
        return _host_outcome(exc, said, overrides, provider, wire)
    read = read_foreign(exc, provider or "provider", wire)
    if read is not None:  # an SDK's or another client's failure: the engine's own reading
        rule = rule_for(read.code, type(read))
        return _outcome(rule, read.code, overrides, exc, read.retry_after, read.should_retry,
                        read.http_status, _short(read.message))  # fmt: skip
    # A built-in TimeoutError keeps no code (the provider's own timeout, not the engine's);
    # anything else is named by its class.
    code = None if isinstance(exc, TimeoutError) else type(exc).__name__
    rule = rule_for(None, type(exc))
    message = _short(redact(str(exc) or type(exc).__name__))
    return _outcome(rule, code, overrides, exc, None, None, None, message)


def _declared_wire(source: Any) -> Wire | None:
    try:
        return wire_named(getattr(source, "wire", None))
    except Exception:  # a provider object whose attributes misbehave declares nothing
        return None


def _outcome(
    rule: Rule,
    code: str | None,
    overrides: Mapping[str, Category],
    exc: BaseException,
    retry_after: float | None,
    should_retry: bool | None,
    http_status: int | None,
    message: str,
) -> Outcome:
    return Outcome(
        category=overrides.get(code, rule.category) if code is not None else rule.category,
        error_category=rule.error_category,
        error_code=code,
        transient=rule.transient if should_retry is None else should_retry,
        message=message,
        retry_after=retry_after,
        exception=exc,
        http_status=http_status,
    )


#: What a host's ``error_category`` (TORQ Console's four) means when its code says nothing
#: more; the code refines it within its family, never across (`host_rule`).
HOST_RULES: Final[Mapping[str, Rule]] = {
    "timeout": Rule("timeout", "timeout", True),
    "provider_error": Rule("retryable", _PROVIDER, False),
    "ai_error": Rule("non_retryable", "ai_error", False),
    "exception": Rule("retryable", "exception", False),
}


def host_rule(said: str, code: str | None) -> Rule:
    """The rule for a failure its raiser put in category ``said`` with ``code``.

    The raiser's category decides: ``ai_error`` never falls back, whatever its code. A code
    of the taxonomy in the same family is its rule (a ``provider_error`` 429 is transient);
    a code of another family keeps the raiser's category and gives only its transience (a
    ``provider_error`` with code ``400`` stays a provider error).
    """
    base = HOST_RULES[said]
    found = TAXONOMY.get(code) if code is not None else None
    if said == "ai_error" or found is None:
        return base
    if found.error_category == base.error_category:
        return found
    return Rule(base.category, base.error_category, found.transient)


def _code_of(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if isinstance(code, Enum):
        code = code.value
    if isinstance(code, int) and not isinstance(code, bool):
        return str(code)
    if isinstance(code, str) and code.strip():
        return code.strip()
    status = _int_attr(exc, "status_code") or _int_attr(exc, "http_status")
    return str(status) if status else None


def _int_attr(exc: BaseException, name: str) -> int | None:
    value = getattr(exc, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP) if math.isfinite(seconds) else None


def _host_outcome(
    exc: BaseException,
    said: str,
    overrides: Mapping[str, Category],
    provider: str | None,
    wire: Wire | None,
) -> Outcome:
    """A failure whose raiser said its category (a host's class, or ours given one)."""
    code = _code_of(exc)
    retry_after = _seconds(getattr(exc, "retry_after", None))
    should_retry = getattr(exc, "should_retry", None)
    http_status = _int_attr(exc, "http_status") or _int_attr(exc, "status_code")
    read = read_foreign(exc, provider or "provider", wire) if code is None else None
    if read is not None:  # it carries a reply or a transport fault: that names the code
        code, http_status = read.code, read.http_status
        retry_after = read.retry_after if retry_after is None else retry_after
        should_retry = read.should_retry if should_retry is None else should_retry
    if code is None and said == "exception":
        code = type(exc).__name__  # as TORQ Console's executor records an adapter's crash
    return _outcome(
        host_rule(said, code), code, overrides, exc, retry_after,
        should_retry if isinstance(should_retry, bool) else None, http_status,
        _short(redact(str(exc) or type(exc).__name__)),
    )  # fmt: skip


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
         "context_too_small", "hedge_lost", "caller_left"),
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
