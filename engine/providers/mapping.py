"""The one boundary where HTTP becomes outcomes: statuses, error bodies, headers and httpx
exceptions are mapped onto the taxonomy's codes here, and nowhere else.

Every message leaving this module has been through `redact`
(before it is cut to length), so no API key, whole or in part, nor anything shaped like
one, reaches metadata, logs or exceptions.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

import httpx

from engine.errors import AIResponseError, AITimeoutError, ProviderError
from engine.providers.secrets import excerpt, redact
from engine.providers.wire import ErrorInfo, Wire

OutcomeError = ProviderError | AITimeoutError | AIResponseError

__all__ = [
    "RETRY_AFTER_CAP",
    "error_for_event",
    "error_for_status",
    "error_for_transport",
    "redact",
    "retry_after",
]

#: Longest Retry-After taken from a server, in seconds (a chain's backoff_max decides
#: whether waiting that long is worth it).
RETRY_AFTER_CAP: Final = 300.0

# Every wording of "the request does not fit the model's context" the providers use:
# OpenAI, DeepSeek, vLLM ("This model's maximum context length is N tokens"), OpenRouter
# ("This endpoint's maximum context length"), Anthropic ("prompt is too long: N tokens > M
# maximum", "input length and `max_tokens` exceed context limit: a + b > c"), Mistral
# ("too large for model with N maximum context length"), Groq ("Please reduce the length of
# the messages or completion"), Ollama ("input length exceeds the context length"), xAI
# ("maximum prompt length is N"), Gemini's OpenAI endpoint ("input token count ... exceeds
# the maximum number of tokens allowed"), text-generation-inference ("`inputs` tokens +
# `max_new_tokens` must be <= N").
_CONTEXT: Final = re.compile(
    r"context.length|context.limit|context.window|maximum context|prompt is too long"
    r"|too many tokens|exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context"
    r"|maximum (?:prompt|input) length|reduce the length of the (?:messages|prompt|input)"
    r"|input token count.{0,40}exceeds the maximum|tokens \+ `?max_new_tokens`? must be"
    r"|input (?:is )?too long for (?:the )?model",
    re.IGNORECASE,
)
_UNSUPPORTED: Final = re.compile(
    r"does not support (?:tools|thinking|images|vision|insert|structured outputs)",
    re.IGNORECASE,
)
# Out of money, not out of rate (a rate-limit message may link a billing page: that is not
# a quota error).
_QUOTA: Final = re.compile(
    r"insufficient.(?:balance|quota|credits?)|exceeded your current quota|credit balance"
    r"|billing (?:hard )?limit|requires more credits|can only afford",
    re.IGNORECASE,
)
_QUOTA_CODES: Final = frozenset(
    {"insufficient_quota", "billing_error", "billing_hard_limit_reached"}
)
_FILTER_CODES: Final = frozenset({"content_filter", "content_policy_violation"})
_MESSAGE_LIMIT: Final = 300
_REFUSED: Final = re.compile(r"refused|Connect call failed|Errno 111", re.IGNORECASE)
# How the readers say a reply cannot be read as HTTP: ours ("malformed reply: ..."), h11's
# ("illegal status line", "bad Content-Length", "InformationalResponse status_code should
# be in range ..."), aiohttp's ("Invalid ...", "Bad status line").
_MALFORMED: Final = re.compile(
    r"malformed|illegal|invalid|bad (?:status|header|content-length|chunk)"
    r"|should be in range|unsupported transfer|receive buffer too long",
    re.IGNORECASE,
)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``retry-after`` (seconds or
    an HTTP date), capped at `RETRY_AFTER_CAP`; None when absent or unreadable."""
    raw_ms = headers.get("retry-after-ms")
    seconds: float | None = None
    if raw_ms is not None:
        try:
            seconds = float(raw_ms) / 1000
        except ValueError:
            seconds = None
    raw = headers.get("retry-after")
    if seconds is None and raw is not None:
        try:
            seconds = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                when = None
            if when is not None and when.tzinfo is not None:
                seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry", "").strip().lower()
    return {"true": True, "false": False}.get(value)


def _info(body: bytes, wire: Wire) -> ErrorInfo:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return ErrorInfo(message=body[: _MESSAGE_LIMIT * 4].decode("utf-8", "replace").strip())
    return wire.error(data)


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    wire: Wire,
    provider: str,
    secrets: Iterable[str] = (),
    unreadable: str | None = None,
) -> OutcomeError:
    """The outcome of a non-2xx reply. ``unreadable`` says why its body could not be read
    (an encoding not asked for, a body that does not inflate): the status decides then."""
    info = _info(body, wire)
    # The provider's own words; a body without a message is quoted as it is (never "HTTP
    # 404: HTTP 404").
    said = info.message or body[: _MESSAGE_LIMIT * 4].decode("utf-8", "replace").strip()
    detail = excerpt(said, _MESSAGE_LIMIT, secrets)
    message = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
    if unreadable is not None:
        message += f" (the body could not be read: {unreadable})"
    kinds = {info.type, info.code}
    kind, code = _status_outcome(status, kinds, said)
    return _said(
        kind(
            message,
            code=code,
            provider=provider,
            retry_after=retry_after(headers),
            should_retry=_should_retry(headers),
            http_status=status,
        )
    )


def _status_outcome(
    status: int, kinds: set[str], text: str
) -> tuple[type[ProviderError] | type[AIResponseError], str]:
    if kinds & _FILTER_CODES:
        return AIResponseError, "content_filter"
    if status == 413 or (
        status in (400, 422)
        and (
            kinds & {"context_length_exceeded", "string_above_max_length"} or _CONTEXT.search(text)
        )
    ):
        return ProviderError, "context_length_exceeded"
    if status == 400 and _UNSUPPORTED.search(text):
        # The model cannot do what was asked (Ollama: "... does not support tools"):
        # another provider may well be able to.
        return ProviderError, "unsupported_request"
    if "tool_use_failed" in kinds:
        # The model wrote a tool call its server could not parse (Groq): the model failed,
        # not the request; sampled again, or on another model, it may well succeed.
        return ProviderError, "tool_use_failed"
    if status == 402 or kinds & _QUOTA_CODES or (status in (400, 403, 429) and _QUOTA.search(text)):
        return ProviderError, "insufficient_quota"
    if status in (400, 422):
        return AIResponseError, str(status)
    # Known statuses keep their number as code; unknown ones are recorded as they are.
    return ProviderError, str(status) if status >= 400 else f"http_{status}"


#: The HTTP status an error event's type stands for (a stream's error event has no status
#: line of its own; the same error sent as an HTTP reply would have had this one).
_EVENT_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "billing_error": 402,
    "api_error": 500,
    "server_error": 500,
    "internal_server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_for_event(
    payload: object,
    wire: Wire,
    provider: str,
    secrets: Iterable[str] = (),
    http_status: int | None = 200,
) -> OutcomeError:
    """The outcome of an error event inside a stream: read as the same error sent as an
    HTTP reply would be (one reply, one reading); an event that names no known kind is
    ``stream_error``. ``http_status`` is the reply's own (recorded, not used to classify)."""
    info = wire.error(payload)
    status = info.status or _EVENT_STATUS.get(info.type) or _EVENT_STATUS.get(info.code, 0)
    detail = excerpt(info.message, _MESSAGE_LIMIT, secrets)
    named = info.type or info.code
    message = f"{provider}: stream error" + (f" {named}" if named else "")
    message += f": {detail}" if detail else ""
    kind: type[ProviderError] | type[AIResponseError] = ProviderError
    if status:
        kind, code = _status_outcome(status, {info.type, info.code}, info.message)
    elif _CONTEXT.search(info.message):
        code = "context_length_exceeded"
    else:
        code = "stream_error"
    return _said(kind(message, code=code, provider=provider, http_status=http_status))


def error_for_transport(
    exc: httpx.HTTPError, provider: str, phase: str, secrets: Iterable[str] = ()
) -> OutcomeError:
    """The outcome of an httpx exception. ``phase`` is ``wait`` (no reply yet) or ``body``
    (reading the reply)."""
    return _said(_transport_error(exc, provider, phase, secrets))


def _transport_error(
    exc: httpx.HTTPError, provider: str, phase: str, secrets: Iterable[str]
) -> OutcomeError:
    text = excerpt(str(exc) or type(exc).__name__, _MESSAGE_LIMIT, secrets)
    if isinstance(exc, httpx.ConnectError) and _REFUSED.search(text):
        # httpx and aiohttp word it differently; one wording for sync and async calls.
        text = "connection refused"
    message = f"{provider}: {text}"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return AITimeoutError(message, code="connect_timeout", cause=exc, provider=provider)
    if isinstance(exc, httpx.TimeoutException):
        # No reply in time is a read timeout; a reply that stopped coming, an attempt timeout.
        code = "attempt_timeout" if phase == "body" else "read_timeout"
        return AITimeoutError(message, code=code, cause=exc, provider=provider)
    if isinstance(exc, httpx.ConnectError):
        return ProviderError(message, code="connect_error", cause=exc, provider=provider)
    if isinstance(exc, httpx.RemoteProtocolError) and _MALFORMED.search(text):
        # A reply that came but cannot be read as HTTP (a status line, a header, a length,
        # a chunk size no reader accepts): malformed, said as such, not a cut.
        if "malformed" not in text.lower():
            message = f"{provider}: malformed reply: {text}"
        return ProviderError(message, code="malformed_response", cause=exc, provider=provider)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.DecodingError):
        # The connection dropped or broke protocol once open: the reply was cut short.
        return ProviderError(message, code="truncated_response", cause=exc, provider=provider)
    return ProviderError(message, code=type(exc).__name__, cause=exc, provider=provider)


def attempt_timeout(provider: str, seconds: float, phase: str) -> AITimeoutError:
    """The outcome of an attempt cut off by its own timeout, named after where it was."""
    code = "read_timeout" if phase == "wait" else "attempt_timeout"
    what = "waiting for a reply" if phase == "wait" else "reading the reply"
    return _said(
        AITimeoutError(
            f"{provider}: no complete answer within {seconds:g}s (still {what})",
            code=code,
            provider=provider,
        )
    )


_E = TypeVar("_E", bound=BaseException)


def _said(exc: _E) -> _E:
    """Mark an outcome error whose message this module wrote (redacted already): the
    classifier then need not redact it again (a few microseconds on every failure)."""
    exc.__dict__[REDACTED_MARK] = True
    return exc


#: Set in an outcome error's ``__dict__`` when its message was redacted as it was written.
REDACTED_MARK: Final = "_torq_redacted"

__all__ += ["REDACTED_MARK", "attempt_timeout"]
