"""The host's exception classes: each failure names its category (``error_category``) and
may carry a code, a cause and a Retry-After, as TORQ Console's classes do."""

from __future__ import annotations


class HostError(Exception):
    """A failure the host's providers raise."""

    category = "exception"

    def __init__(
        self,
        message: str,
        error_category: str | None = None,
        code: str | None = None,
        cause: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_category = error_category or self.category
        self.code = code
        self.cause = cause
        self.retry_after = retry_after
        if cause is not None:
            self.__cause__ = cause


class ProviderError(HostError):
    """The provider failed (rate limit, outage, missing key, ...)."""

    category = "provider_error"


class AITimeoutError(HostError):
    """The provider took too long."""

    category = "timeout"


class AIResponseError(HostError):
    """The request itself was refused (a policy block, an invalid prompt)."""

    category = "ai_error"
