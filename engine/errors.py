"""The exception tree of torq-fallback.

::

    TorqError                      base of everything this package raises
    ├── ChainConfigError           a chain file (or an override of it) is invalid; .problems
    ├── ProviderError              error_category "provider_error"
    │   └── ChainExhaustedError    every step of a chain failed (or the deadline passed); .attempts
    │       └── StreamInterruptedError  a stream was cut after its first chunk; .partial_text
    ├── AITimeoutError             error_category "timeout"
    └── AIResponseError            error_category "ai_error": the request itself is refused
        └── ChainAbortedError      a non-retryable outcome stopped the chain; .attempts

``ProviderError``, ``AITimeoutError`` and ``AIResponseError`` are the exceptions a provider
raises to tell the engine what went wrong; ``code`` carries the detail the taxonomy keys on
(``"429"``, ``"context_length_exceeded"``, ``"read_timeout"``, ``"content_filter"``, ...).
The two ``Chain*`` errors are what the engine raises when a whole chain fails.

They take the constructors of TORQ Console's own classes as well
(``AIResponseError(message, error_category="ai_error")``,
``ProviderError(message, code="429", cause=exc)``), so a host can adopt them by import. An
``error_category`` given explicitly is the host's word: it decides the category, as for a
host's own class (docs/outcomes.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AIResponseError",
    "AITimeoutError",
    "ChainAbortedError",
    "ChainConfigError",
    "ChainExhaustedError",
    "Problem",
    "ProviderError",
    "StreamInterruptedError",
    "TorqError",
]


class TorqError(Exception):
    """Base class of every exception raised by torq-fallback."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a chain file, located precisely enough to fix it.

    ``source`` is a file path or a description such as ``"env TORQ_DIRECT_CHAIN"``;
    ``line`` and ``column`` are 1-based and 0 when unknown; ``field`` is a dotted path
    such as ``steps[1].goto.timeout``.
    """

    source: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for ``torq-fallback validate --json``."""
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class ChainConfigError(TorqError, ValueError):
    """A chain file or a chain override is invalid. ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in chain configuration"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class _OutcomeError(TorqError):
    """Shared constructor of the three outcome exceptions (not raised itself)."""

    error_category = "exception"

    def __init__(
        self,
        message: str,
        code: str | int | None = None,
        cause: BaseException | None = None,
        *,
        provider: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        http_status: int | None = None,
        error_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Codes are compared as strings everywhere ("429", not 429).
        self.code: str | None = None if code is None else str(code)
        self.cause = cause
        self.provider = provider
        self.retry_after = retry_after
        # A server's explicit word on retrying (x-should-retry) beats the taxonomy's.
        self.should_retry = should_retry
        # The HTTP status of the reply this outcome came from, when there was one.
        self.http_status = http_status
        if error_category is not None:
            if not isinstance(error_category, str) or not error_category:
                raise TypeError(f"error_category must be a non-empty str, not {error_category!r}")
            # The instance's own: classify reads it as the raiser's explicit word.
            self.error_category = error_category
        if cause is not None:
            self.__cause__ = cause


class ProviderError(_OutcomeError):
    """The provider failed to answer (HTTP error, quota, connection, missing key...)."""

    error_category = "provider_error"


class AITimeoutError(_OutcomeError):
    """The provider did not answer in time (connect, read or whole-attempt timeout)."""

    error_category = "timeout"


class AIResponseError(_OutcomeError):
    """The request itself was refused (policy block, content filter, invalid prompt)."""

    error_category = "ai_error"


class ChainExhaustedError(ProviderError):
    """Every step of the chain failed, or the chain's deadline passed.

    ``attempts`` holds the attempt records (the same dicts as ``meta.provider_attempts``);
    ``code`` is ``"deadline_exceeded"`` when the deadline ended the chain, otherwise the
    code of the last attempt.
    """

    def __init__(
        self,
        message: str,
        code: str | None,
        attempts: Sequence[dict[str, Any]],
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, code, cause)
        self.attempts: list[dict[str, Any]] = list(attempts)
        if self.code == "deadline_exceeded":
            # A deadline is a timeout from the caller's point of view.
            self.error_category = "timeout"


class StreamInterruptedError(ChainExhaustedError):
    """A stream was cut after the caller had received part of it, and the chain's
    ``on_midstream`` policy is ``fail``: the answer is incomplete.

    ``partial_text`` is the text handed over before the cut; ``attempts`` the attempt
    records (the last one has ``truncated: True`` and the number of ``chunks`` delivered).
    """

    def __init__(
        self,
        message: str,
        code: str | None,
        attempts: Sequence[dict[str, Any]],
        partial_text: str,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, code, attempts, cause)
        self.partial_text = partial_text


class ChainAbortedError(AIResponseError):
    """A non-retryable outcome (policy block, invalid request) stopped the chain.

    ``attempts`` holds the attempt records; ``code`` is the code of the aborting attempt.
    """

    def __init__(
        self,
        message: str,
        code: str | None,
        attempts: Sequence[dict[str, Any]],
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, code, cause)
        self.attempts: list[dict[str, Any]] = list(attempts)
