"""What the HTTP provider's I/O paths need of the provider they serve: its name, wire and
limits, how it builds a request and reads a reply. `HTTPProvider`
is the one implementation; the paths (``replies``, ``exchange``, ``http_stream``,
``http_aio``) depend on this protocol, never on the provider's module, so that the provider
depends on its paths and nothing depends back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import httpx

    from engine.providers.areply import PostTransport
    from engine.providers.body import BodyReader
    from engine.providers.bulkhead import Bulkhead
    from engine.providers.wire import Wire
    from engine.support.loops import LoopClients
    from engine.types.completion import Completion
    from engine.types.request import ChatRequest

__all__ = ["HTTPEndpoint"]


class HTTPEndpoint(Protocol):
    """An HTTP provider, as its I/O paths see it."""

    name: str
    model: str
    wire: Wire
    bulkhead: Bulkhead
    connect_timeout: float
    #: Secret values its messages are redacted of (its key, its base URL's password).
    secrets: tuple[str, ...]
    #: The URL it posts to (its base URL and its wire's path).
    url: httpx.URL
    #: Its async transport, one per event loop.
    async_transports: LoopClients[httpx.AsyncBaseTransport | PostTransport]

    def check_configured(self) -> None:
        """Raise ``not_configured`` when it lacks a usable key."""
        ...

    def request_body(self, request: ChatRequest, model: str | None, stream: bool = False) -> bytes:
        """The JSON body of ``request`` on its wire."""
        ...

    def httpx_request(self, body: bytes, timeout: float) -> httpx.Request:
        """The httpx request for a body, with its timeouts."""
        ...

    def reader_for(self, response: httpx.Response) -> BodyReader:
        """A bounded reader for an httpx response's body."""
        ...

    def body_reader(self, status: int, encoding: str | None) -> BodyReader:
        """A bounded reader for a reply's body (``encoding``: its Content-Encoding)."""
        ...

    def finish_reply(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        model: str | None,
        unreadable: str | None = None,
    ) -> Completion:
        """A whole reply read: its completion, or the outcome error it is (``unreadable``:
        why an error reply's body could not be read)."""
        ...

    def priced(self, completion: Completion) -> Completion:
        """The completion with its estimated cost, when the price is known."""
        ...

    def sync_client(self) -> httpx.Client:
        """Its one sync httpx client (made on first use)."""
        ...
