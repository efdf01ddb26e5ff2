"""One HTTP/1.1 connection of the asyncio transport (`engine.providers.h1`): it writes
a request, parses its reply with llhttp (through ``httptools``) and hands over the reply's
head (`H1Reply`) and its body as it arrives (flow-controlled); every fault is the
httpx exception that means the same thing. The pool that owns connections is
`engine.providers.h1`'s; a connection sees it as an `Owner`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Final, Protocol, cast

import httptools
import httpx

from engine.providers.leftover import announces_a_body

__all__ = ["MAX_HEAD_BYTES", "H1Reply", "Owner"]

#: A reply's unread body above this pauses reading from its socket (flow control).
_HIGH_WATER = 1 << 18
#: The most a reply's head (status line, headers, interim replies) may take: a server
#: sending endless headers is cut off here, not when memory runs out.
MAX_HEAD_BYTES = 1 << 16


# What no header value may hold, as h11 and httpx read them: NUL and the line breaks
# (LF, VT, FF, CR); llhttp's lenient reading would let them through.
_CONTROL: Final = re.compile(r"[\x00\x0a-\x0d]")


class _Leftover(Exception):
    """Raised in llhttp's callback when a second reply starts after the one asked for."""


def _parser(owner: _Connection) -> httptools.HttpResponseParser:
    """llhttp, reading what RFC 9112 lets a client read: lines ending in a bare LF, and
    header values folded over several lines (read as one, joined by a space)."""
    parser = httptools.HttpResponseParser(owner)
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True, lenient_headers=True)
    return parser


class Owner(Protocol):
    """The pool a connection belongs to, as the connection sees it."""

    loop: asyncio.AbstractEventLoop

    def give_back(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next request (it is idle now)."""
        ...

    def forget(self, conn: _Connection) -> None:
        """``conn`` closed."""
        ...


class _Body:
    """A reply's body as it arrives (`BodyStream`)."""

    __slots__ = ("_chunks", "_conn", "_error", "_paused", "_size", "_waiter", "complete")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        #: The whole body has come.
        self.complete = False

    # -- the connection's side -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause()
        self._wake()

    def end(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self._error is None:  # the first fault is the one to tell (not the close after it)
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side -----------------------------------------------------------------

    async def readany(self) -> bytes:
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._size = 0
                if self._paused:
                    self._paused = False
                    self._conn.resume()
                return data
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def is_eof(self) -> bool:
        return self.complete


class H1Reply:
    """A reply whose head has come (`AsyncReply`)."""

    __slots__ = ("_conn", "content", "headers", "status")

    def __init__(
        self, conn: _Connection, status: int, headers: dict[str, str], body: _Body
    ) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        #: Lower-case names; a repeated header's values joined by ", " (as httpx reads them).
        self.headers: Mapping[str, str] = headers
        self.content = body

    def release(self) -> None:
        """Give the connection back to its pool (closed instead if it cannot be reused).
        Only the first release or close of a reply counts."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done_with(self.content.complete)

    def close(self) -> None:
        """Close the connection now."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done_with(False)


class _Connection(asyncio.Protocol):
    """One connection: at most one exchange at a time, parsed by llhttp."""

    def __init__(self, pool: Owner) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = _parser(self)
        #: The reply's head, awaited by the request in progress (None between exchanges).
        self._head: asyncio.Future[H1Reply] | None = None
        self._body: _Body | None = None
        self._raw: list[tuple[bytes, bytes]] = []
        self._interim = False
        self._head_bytes = 0
        self._eof_ends = False  # the body ends with the connection (no length, not chunked)
        self._done = False  # this exchange's reply (not an interim one) has been read whole
        self._announced = False
        self.busy = False
        self.reusable = False
        self.closed = False
        self.paused = False
        self.idle_since = 0.0

    # -- the request's side ----------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[H1Reply]:
        """Write a request; the future is the reply's head."""
        assert self.transport is not None
        self.busy = True
        self.reusable = False
        self._body = None
        self._done = False
        self._head_bytes = 0
        head = self._head = self.loop.create_future()
        self.transport.write(data)
        return head

    def done_with(self, reuse: bool) -> None:
        """The exchange is over: back to the pool (when ``reuse`` and the server lets it),
        or closed."""
        self.busy = False
        self._head = None
        if reuse and self.reusable and not self.closed:
            self._body = None
            if self.paused:  # a reply read no further after it filled the buffer
                self.resume()
            self.pool.give_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()  # connection_lost follows: the pool forgets it then

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    # -- asyncio's side --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport: no isinstance).
        self.transport = cast(asyncio.Transport, transport)

    def eof_received(self) -> bool | None:
        self.reusable = False
        if not self.busy:
            self.closed = True  # the server is done with it: an idle one is not taken again
        return None  # the transport closes; connection_lost follows

    def data_received(self, data: bytes) -> None:
        if not self.busy or self._done:
            # Bytes nobody asked for (on an idle connection, or after a whole reply): the
            # connection is out of step with the server and is never used again (RFC 9112:
            # what a reply's framing does not account for is not the next reply's).
            self._out_of_step()
            return
        in_head = self._body is None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc
            if isinstance(cause, _Leftover):  # more bytes after the whole reply
                self._out_of_step()
            else:  # a head that cannot be read, or one of ours failed
                self._fail(cause)
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._done:  # the reply was whole; what followed it is garbage
                self._out_of_step()
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed reply: {exc}"))
            return
        if in_head and self._body is None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(
                    httpx.RemoteProtocolError(
                        f"malformed reply: its head went past {MAX_HEAD_BYTES} bytes without ending"
                    )
                )

    def _out_of_step(self) -> None:
        self.reusable = False
        if not self.busy:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.busy:
            return
        body = self._body
        if body is None:
            error: BaseException
            if exc is None:
                error = httpx.RemoteProtocolError("server disconnected without sending a reply")
            else:
                error = httpx.ReadError(f"{type(exc).__name__}: {exc}")
            head = self._head
            if head is not None and not head.done():
                head.set_exception(error)
            return
        if body.complete:
            return
        if exc is None and self._eof_ends:
            body.end()  # a reply framed by the end of its connection
        elif exc is None:
            body.fail(
                httpx.RemoteProtocolError(
                    "server closed the connection without sending the complete body"
                )
            )
        else:
            body.fail(httpx.ReadError(f"{type(exc).__name__}: {exc}"))

    def _fail(self, error: BaseException) -> None:
        head = self._head
        if self._body is not None and not self._body.complete:
            self._body.fail(error)
        elif head is not None and not head.done():
            head.set_exception(error)
        self.reusable = False
        self.abort()

    # -- llhttp's callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:  # a second reply where one was asked for
            raise _Leftover
        self._raw = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 100:  # no such status (HTTP/1.1 099): said now, not at the timeout
            raise httpx.RemoteProtocolError(f"malformed reply: no such status {status:03d}")
        if status < 200:  # 1xx: an interim reply, the real one follows
            self._interim = True
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if _CONTROL.search("".join(headers.values())):
            # Folded lines and bare LFs are read (RFC 9112 lets a client); a NUL or a line
            # break in a value is not (as h11 and httpx refuse it).
            raise httpx.RemoteProtocolError(
                "malformed reply: a header value holds a NUL or a line break"
            )
        self._announced = announces_a_body(status, headers)  # a 204/304 with a "body"
        self._eof_ends = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        body = self._body = _Body(self)
        head = self._head
        if head is not None and not head.done():
            head.set_result(H1Reply(self, status, headers, body))

    def on_body(self, data: bytes) -> None:
        if self._body is not None:
            self._body.feed(data)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._done = True
        self.reusable = self._parser.should_keep_alive() and not self._announced
        if self._body is not None:
            self._body.end()
