"""One reply, one reading, whichever transport carries it: the same raw bytes are served to
the sync path (httpx over the engine's network layer), the default async transport
(HTTP/1.1 on asyncio), ``async_transport: httpx`` and ``aiohttp``, and every one reads them
alike: the answer, or the same outcome code. After each reply, a second call is made through
the same provider: what a reply's framing does not account for is never read as the next
reply (RFC 9112: the connection is closed, not reused).

A property test holds the default transport's reader to h11's (a reference reader) on
generated replies: the same status, headers and body, or both refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import socket
import threading

import h11
import httpx
import pytest
from hostile import HostileServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.providers.h1 import H1Transport
from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS
from engine.types.request import ChatRequest

KEY = "sk-agreement-0123456789abcdef"
ANSWER = json.dumps({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}],
                     "model": "m"}).encode()  # fmt: skip
GOOD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(ANSWER), ANSWER,
)  # fmt: skip
TRANSPORTS = ["sync", "asyncio", "httpx", "aiohttp"]
LIMITED = json.dumps({"error": {"message": "slow down", "type": "requests"}}).encode()


def _head(status: str, *lines: str, end: str = "\r\n") -> bytes:
    return (f"HTTP/1.1 {status}{end}" + "".join(line + end for line in lines) + end).encode()


def _json(status: str, body: bytes, *extra: str, end: str = "\r\n") -> bytes:
    lines = ["content-type: application/json", f"content-length: {len(body)}", *extra]
    return _head(status, *lines, end=end) + body


CASES = {
    # framing, each followed by a second call on the same provider
    "content-length": (_json("200 OK", ANSWER), "ok:fine"),
    "chunked": (_head("200 OK", "content-type: application/json", "transfer-encoding: chunked")
                + b"%x;ext=1\r\n%s\r\n0\r\nx-trailer: t\r\n\r\n" % (len(ANSWER), ANSWER), "ok:fine"),
    "close-delimited": (_head("200 OK", "content-type: application/json", "connection: close")
                        + ANSWER, "ok:fine"),
    "interim-then-reply": (_head("100 Continue") + _json("200 OK", ANSWER), "ok:fine"),
    # what other readers accept must be read
    "bare-lf": (_json("200 OK", ANSWER, end="\n"), "ok:fine"),
    "mixed-line-endings": (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\nx-a: a\r\n"
                           b"content-length: %d\n\r\n%s" % (len(ANSWER), ANSWER), "ok:fine"),
    "folded-header": (b"HTTP/1.1 200 OK\r\ncontent-type: application/\r\n json\r\n"
                      b"content-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER), "ok:fine"),
    "folded-retry-after": (_json("429 Too Many Requests", LIMITED, "retry-after:\r\n 7"),
                           "retryable:429"),
    # what no reader accepts: malformed, said at once, never a truncation
    "impossible-status": (_json("099 Weird", ANSWER), "retryable:malformed_response"),
    "bad-status-line": (b"HTTX/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", "retryable:malformed_response"),
    "bad-length": (b"HTTP/1.1 200 OK\r\ncontent-length: nine\r\n\r\n{}", "retryable:malformed_response"),
    "bad-chunk-size": (_head("200 OK", "transfer-encoding: chunked") + b"zz\r\n", "retryable:malformed_response"),
    # more bytes than the reply frames: the reply is read, the connection dropped
    "204-with-a-body": (_head("204 No Content", "content-length: 2") + b"{}", "retryable:malformed_response"),
    "leftover-after-reply": (_json("200 OK", ANSWER) + b"GARBAGE", "ok:fine"),
    "second-reply-after-reply": (_json("200 OK", ANSWER) + GOOD, "ok:fine"),
    # an error reply whose body cannot be decoded keeps its status
    "429-brotli": (_json("429 Too Many Requests", b"\x1b\x0b\x00\xf8", "content-encoding: br",
                         "retry-after: 3"), "retryable:429"),
    "401-brotli": (_json("401 Unauthorized", b"\x8b\x02\x80{}\x03", "content-encoding: br"),
                   "retryable:401"),
    "401-bad-gzip": (_json("401 Unauthorized", gzip.compress(b'{"error": "no"}')[:-9] + b"junkjunk",
                           "content-encoding: gzip"), "retryable:401"),
}  # fmt: skip


# The one reading that differs, and why (docs/providers.md): aiohttp's parser reads all the
# bytes that came in one go, and refuses a reply they do not end with.
OTHERWISE = {("leftover-after-reply", "aiohttp"): "retryable:malformed_response"}


def _provider(url: str, transport: str) -> HTTPProvider:
    settings = BUILTIN_SETTINGS["openai"]
    if transport in ("asyncio", "httpx", "aiohttp"):
        settings = dataclasses.replace(settings, async_transport=transport)
    return HTTPProvider(resolve(settings, {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url}))


def _reading(call) -> str:
    try:
        answer = call()
    except Exception as exc:
        from engine.core.classify import classify_exception

        outcome = classify_exception(exc, {})
        return f"{outcome.category}:{outcome.error_code}"
    return f"ok:{answer.text}"


def _readings(url: str, transport: str) -> tuple[str, str, str]:
    """Two calls through one provider: the first reply's reading, the second's, and the
    first's message."""
    provider = _provider(url, transport)
    request = ChatRequest.from_prompt("hi")
    messages: list[str] = []

    def sync() -> object:
        try:
            return provider.chat(request=request, timeout=3)
        except Exception as exc:
            messages.append(str(exc))
            raise

    if transport == "sync":
        try:
            return _reading(sync), _reading(sync), (messages or [""])[0]
        finally:
            provider.close()

    async def go() -> tuple[str, str, str]:
        async def one() -> object:
            try:
                return await provider.achat(request=request, timeout=3)
            except Exception as exc:
                messages.append(str(exc))
                raise

        try:
            first = await _areading(one)
            second = await _areading(one)
            return first, second, (messages or [""])[0]
        finally:
            await provider.aclose()

    return asyncio.run(go())


async def _areading(call) -> str:
    try:
        answer = await call()
    except Exception as exc:
        from engine.core.classify import classify_exception

        outcome = classify_exception(exc, {})
        return f"{outcome.category}:{outcome.error_code}"
    return f"ok:{answer.text}"


def _server(raw: bytes) -> HostileServer:
    """The first request gets ``raw`` (then the connection closes when its framing is by
    the end of the connection), every later one a good reply on the same connection."""
    served = [0]
    lock = threading.Lock()

    def play(conn: socket.socket, request: bytes) -> None:
        with lock:
            served[0] += 1
            first = served[0] == 1
        conn.sendall(raw if first else GOOD)
        if first and (b"connection: close" in raw.lower() or raw.startswith(b"HTTX")):
            conn.shutdown(socket.SHUT_WR)

    return HostileServer(play, keep_alive=True)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_transport_reads_a_reply_alike(case, transport):
    raw, expected = CASES[case]
    expected = OTHERWISE.get((case, transport), expected)
    with _server(raw) as server:
        first, second, message = _readings(server.url + "/v1", transport)
    assert first == expected, message
    assert second == "ok:fine", f"the next call read what the first reply left: {second}"
    if expected.endswith("malformed_response") and not case.startswith("204"):
        assert "malformed" in message, message  # says what was malformed
    if case.endswith(("brotli", "gzip")):
        assert "could not be read" in message, message


# -- the default transport's reader against h11's -----------------------------------------


def _h11(raw: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """h11's reading of a reply to a POST (None: it refuses it)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, headers, body = 0, {}, b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    key = name.decode("latin-1")
                    text = value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            else:
                return None
    except h11.RemoteProtocolError:
        return None


def _ours(raw: bytes, server: HostileServer, replies: list[bytes]) -> tuple | None:
    replies[:] = [raw]

    async def go():
        transport = H1Transport(
            httpx.Limits(max_connections=1), __import__("ssl").create_default_context()
        )
        try:
            reply = await transport.post(httpx.URL(server.url + "/v1"), b"", 3)
            body = b""
            while chunk := await reply.content.readany():
                body += chunk
            reply.close()
            return reply.status, dict(reply.headers), body
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return None
        finally:
            await transport.aclose()

    return asyncio.run(asyncio.wait_for(go(), 5))


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
_VALUE = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789 /;=,\t\x00\x01\x0b\x0c\x7f\x80", max_size=16
)


@st.composite
def replies(draw) -> bytes:
    status = draw(st.sampled_from([200, 201, 400, 401, 404, 429, 500, 503]))
    headers = draw(st.lists(st.tuples(_TOKEN, _VALUE), max_size=5))
    body = draw(st.binary(max_size=64))
    chunked = draw(st.booleans())
    end = draw(st.sampled_from(["\r\n", "\n"]))
    fold = draw(st.booleans())
    lines = [f"{name}: {value.strip()}" for name, value in headers
             if name not in ("content-length", "transfer-encoding", "connection")]  # fmt: skip
    if fold and lines:
        lines[0] += end + " folded"
    if chunked:
        lines.append("transfer-encoding: chunked")
        cuts = draw(st.lists(st.integers(1, 16), max_size=4))
        pieces, at = [], 0
        for cut in cuts:
            if at < len(body):
                pieces.append(body[at : at + cut])
                at += cut
        if at < len(body):
            pieces.append(body[at:])
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    else:
        lines.append(f"content-length: {len(body)}")
        framed = body
    head = f"HTTP/1.1 {status} X{end}" + "".join(line + end for line in lines) + end
    return head.encode("latin-1") + framed


@pytest.fixture(scope="module")
def raw_server():
    served: list[bytes] = [b""]

    def play(conn: socket.socket, request: bytes) -> None:
        conn.sendall(served[0])
        conn.shutdown(socket.SHUT_WR)

    with HostileServer(play) as server:
        yield server, served


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(replies())
def test_the_default_transport_reads_as_h11_reads(raw_server, raw):
    server, served = raw_server
    reference = _h11(raw)
    ours = _ours(raw, server, served)
    if reference is None or ours is None:
        assert reference is ours is None, f"h11: {reference!r}, ours: {ours!r}"
        return
    status, headers, body = ours
    assert (status, body) == (reference[0], reference[2])
    assert {k.lower(): v for k, v in headers.items()} == {
        k.lower(): v for k, v in reference[1].items()
    }
