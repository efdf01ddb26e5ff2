"""One HTTP exchange of an attempt, and the one place where what goes wrong in it becomes
an outcome.

Every I/O path of the HTTP provider (sync and async, plain and streamed) runs inside an
`Exchange` (a context manager): transport errors and timeouts become the taxonomy's
outcomes (named after where the exchange was: waiting for the reply or reading it; for a
stream, the gap that was too long), an error read from the reply is named after the
provider and carries the reply's status, and the provider's bulkhead slot is given back.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import httpx

from engine.errors import AIResponseError, ProviderError
from engine.providers.mapping import attempt_timeout, error_for_transport
from engine.providers.replies import owned
from engine.providers.streamwire import ErrorEvent
from engine.providers.timeouts import stream_timeout
from engine.types.timeouts import StreamTimeouts

if TYPE_CHECKING:  # the provider these serve, as they see it
    from engine.providers.endpoint import HTTPEndpoint

__all__ = ["Exchange"]


@dataclass
class Exchange:
    """The state of one exchange: where it is (``wait`` for the reply, then ``body``), the
    reply once it came, and, for a stream, whether a delta was handed over yet."""

    provider: HTTPEndpoint
    timeout: float
    stream: StreamTimeouts | None = None
    phase: str = "wait"
    response: httpx.Response | None = None
    delivered: bool = False
    #: The reply's status, when it came without an httpx response (the async hot path).
    status: int | None = None

    def __enter__(self) -> Exchange:
        """Run the exchange (``with Exchange(...) as exchange:``): failures leave as
        outcomes, and the bulkhead slot (taken before) is released, however it ends."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        # A class, not a generator-based context manager: this runs on every call.
        try:
            if exc is None:
                return False
            if isinstance(exc, httpx.HTTPError | TimeoutError):
                raise self._transport(exc) from exc
            if isinstance(exc, ErrorEvent | ProviderError | AIResponseError):
                status = self.response.status_code if self.response is not None else self.status
                found = owned(self.provider, exc, status)
                if found is not exc:
                    raise found from None
            return False
        finally:
            self.provider.bulkhead.release()

    def _transport(self, exc: BaseException) -> Exception:
        name = self.provider.name
        gap = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        if (
            self.stream is not None
            and gap
            and isinstance(exc, TimeoutError | httpx.TimeoutException)
        ):
            return stream_timeout(name, self.stream, self.delivered)  # named by the gap
        if isinstance(exc, httpx.HTTPError):
            return error_for_transport(exc, name, self.phase, self.provider.secrets)
        return attempt_timeout(name, self.timeout, self.phase)
