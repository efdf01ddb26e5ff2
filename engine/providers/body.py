"""Reading a reply body under a size bound, decoding it as it arrives.

httpx would decode ``gzip``/``deflate`` for us, but a decoder that inflates each chunk in
full lets a 1 MB body that inflates to 1 GiB cost gigabytes before anyone counts. Here the
raw bytes are inflated with an output bound of what is left under the limit, so memory stays
near the limit whatever the server sends, and both the raw and the decoded byte counts are
bounded (a stream of empty deflate blocks inflates to nothing, forever).
"""

from __future__ import annotations

import zlib
from typing import Final

from engine.errors import ProviderError

__all__ = ["ACCEPT_ENCODING", "DEFAULT_MAX_RESPONSE_BYTES", "ERROR_BODY_BYTES", "BodyReader"]

#: What the engine asks servers for; anything else they send is refused.
ACCEPT_ENCODING: Final = "gzip, deflate"
#: Largest decoded reply accepted by default (providers.yaml ``max_response_bytes``).
DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
#: An error reply is read only this far: its message is all the engine needs of it.
ERROR_BODY_BYTES: Final = 64 * 1024


class BodyTooLarge(ProviderError):
    """The reply grew past its bound (code ``response_too_large``)."""


class BodyReader:
    """Collects a reply body: ``feed`` raw chunks as they arrive, then ``finish``.

    ``limit`` bounds the decoded body (and the raw one). With ``truncate`` the body is cut
    at the limit and `full` becomes true instead of raising.
    """

    def __init__(
        self, limit: int, content_encoding: str | None, provider: str, *, truncate: bool = False
    ) -> None:
        self.limit = limit
        self.provider = provider
        self.truncate = truncate
        self.full = False
        #: Why an error reply's body (``truncate``) could not be read; its status decides.
        self.unreadable: str | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._raw = 0
        encoding = (content_encoding or "identity").strip().lower()
        self._inflate: zlib._Decompress | None = None
        self._deflate_raw_fallback = False
        if encoding in ("", "identity"):
            pass
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            # "deflate" is meant to be zlib-wrapped; some servers send raw deflate.
            self._inflate = zlib.decompressobj()
            self._deflate_raw_fallback = True
        elif truncate:  # an error reply: its status says enough; its body is let go
            self.unreadable = (
                f"content-encoding {encoding[:40]!r}, not one of the requested ({ACCEPT_ENCODING})"
            )
            self.full = True
        else:
            raise ProviderError(
                f"{provider}: reply uses content-encoding {encoding[:40]!r}, "
                f"not one of the requested ({ACCEPT_ENCODING})",
                code="malformed_response",
                provider=provider,
            )

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"{self.provider}: reply is larger than {self.limit} bytes (max_response_bytes)",
            code="response_too_large",
            provider=self.provider,
        )

    def _keep(self, data: bytes) -> None:
        room = self.limit - self._size
        if len(data) > room:
            if not self.truncate:
                raise self._too_large()
            data = data[:room]
            self.full = True
        self._parts.append(data)
        self._size += len(data)

    def feed(self, chunk: bytes) -> None:
        """Add the next raw chunk (raises ``response_too_large`` past the limit)."""
        if self.full or not chunk:
            return
        self._raw += len(chunk)
        if self._raw > self.limit and not self.truncate:
            raise self._too_large()
        if self._inflate is None:
            self._keep(chunk)
            return
        try:
            # At most one byte more than fits: enough to know the limit was passed.
            out = self._inflate.decompress(chunk, self.limit - self._size + 1)
        except zlib.error as exc:
            if self._deflate_raw_fallback and self._size == 0 and self._raw == len(chunk):
                self._deflate_raw_fallback = False
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                self._raw = 0
                self.feed(chunk)
                return
            if self.truncate:  # an error reply: its status says enough
                self.unreadable = f"it does not inflate ({exc})"
                self.full = True
                self._parts.clear()
                self._size = 0
                return
            raise ProviderError(
                f"{self.provider}: reply could not be decoded: {exc}",
                code="malformed_response",
                provider=self.provider,
            ) from None
        self._deflate_raw_fallback = False
        self._keep(out)

    def finish(self) -> bytes:
        """The decoded body."""
        return b"".join(self._parts)

    def take(self, chunk: bytes) -> bytes:
        """Decode the next raw chunk of a stream and hand it back instead of keeping it;
        the bound counts everything taken so far."""
        size = len(chunk)
        if self._inflate is None and self._size + size <= self.limit and not self.full:
            # The usual chunk (plain bytes, well inside the bound): what feed would keep and
            # hand back is the chunk itself. (Runs once per streamed chunk.)
            self._raw += size
            self._size += size
            return chunk
        self.feed(chunk)
        out = b"".join(self._parts)
        self._parts.clear()
        return out


__all__ += ["BodyTooLarge"]
