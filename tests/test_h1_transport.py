"""The default async transport, HTTP/1.1 on asyncio: connections kept alive and dropped when
they must be, every framing of a reply, interim replies, malformed ones, TLS, the connection
limit, cancellation, and proxied hosts left to aiohttp. Real sockets only."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading

import httpx
import pytest
import trustme
import uvloop
from hostile import HostileServer, head, reply

from engine.errors import ProviderError
from engine.providers.h1 import MAX_HEAD_BYTES, H1Transport
from engine.providers.http import HTTPProvider
from engine.providers.network import tls_context
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

KEY = "sk-h1-test-key-0123456789"
ANSWER = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}], "model": "m"}
BODY = json.dumps(ANSWER).encode()


def provider_at(url: str, **env: str) -> HTTPProvider:
    settings = BUILTIN_SETTINGS["openai"]
    return HTTPProvider(resolve(settings, {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": url, **env}))


async def ask(provider: HTTPProvider, times: int = 1) -> list[str]:
    texts = []
    for _ in range(times):
        answer = await provider.achat(request=ChatRequest.from_prompt("hi"), timeout=5)
        texts.append(answer.text)
    return texts


def run(coro):
    return asyncio.run(coro)


def asked(provider: HTTPProvider, times: int = 1) -> list[str]:
    """The provider's answers to ``times`` calls in one event loop, closed after."""

    async def go():
        try:
            return await ask(provider, times)
        finally:
            await provider.aclose()

    return run(go())


def posted_together(
    transport: H1Transport, url: str, count: int, at_once: int | None = None
) -> list[bytes]:
    """The bodies of ``count`` posts through the transport, ``at_once`` at a time (all at
    once by default), closed after."""

    async def go():
        gate = asyncio.Semaphore(at_once or count)

        async def one():
            async with gate:
                response = await transport.post(httpx.URL(url), b"{}", 5)
                body = await response.content.readany()
                response.release()
                return body

        try:
            return await asyncio.gather(*(one() for _ in range(count)))
        finally:
            await transport.aclose()

    return run(go())


def posted(transport: H1Transport, url: str, times: int = 1) -> list[bytes]:
    """The bodies of ``times`` posts through the transport, closed after."""

    async def go():
        try:
            bodies = []
            for _ in range(times):
                response = await transport.post(httpx.URL(url), b"{}", 5)
                bodies.append(await response.content.readany())
                response.release()
            return bodies
        finally:
            await transport.aclose()

    return run(go())


def test_one_connection_carries_sequential_calls_with_the_providers_headers():
    with HostileServer(reply(200, BODY), keep_alive=True) as server:
        port = server.url.rsplit(":", 1)[1]
        provider = provider_at(server.url + "/v1")

        assert asked(provider, 5) == ["fine"] * 5
    assert (server.connections, len(server.requests)) == (1, 5)
    for raw in server.requests:
        request_head, _, body = raw.partition(b"\r\n\r\n")
        lines = request_head.decode().split("\r\n")
        assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        assert fields["host"] == f"127.0.0.1:{port}"
        assert fields["authorization"] == f"Bearer {KEY}"
        assert fields["content-type"] == "application/json"
        assert fields["accept-encoding"] == "gzip, deflate"
        assert int(fields["content-length"]) == len(body)
        assert json.loads(body)["messages"] == [{"role": "user", "content": "hi"}]


def _chunked(conn, request):
    conn.sendall(head(200, {"content-type": "application/json", "transfer-encoding": "chunked"}))
    for start in range(0, len(BODY), 7):
        piece = BODY[start : start + 7]
        conn.sendall(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
    conn.sendall(b"0\r\n\r\n")


def _until_close(conn, request):
    conn.sendall(head(200, {"content-type": "application/json"}) + BODY)
    conn.shutdown(2)  # the body ends with the connection


def _in_pieces(conn, request):
    whole = head(200, None, len(BODY)) + BODY
    for start in range(0, len(whole), 5):
        conn.sendall(whole[start : start + 5])


@pytest.mark.parametrize(
    ("play", "connections"),
    [(reply(200, BODY), 1), (_chunked, 1), (_in_pieces, 1), (_until_close, 2)],
    ids=["content-length", "chunked", "in-pieces", "until-close"],
)
def test_every_framing_of_a_reply_is_read(play, connections):
    with HostileServer(play, keep_alive=True) as server:
        provider = provider_at(server.url + "/v1")

        assert asked(provider, 2) == ["fine", "fine"]
    # A reply framed by the end of its connection leaves nothing to reuse.
    assert server.connections == connections


def test_a_reply_saying_connection_close_is_not_reused():
    play = reply(200, BODY, {"content-type": "application/json", "connection": "close"})
    with HostileServer(play, keep_alive=True) as server:
        provider = provider_at(server.url + "/v1")

        assert asked(provider, 3) == ["fine"] * 3
    assert server.connections == 3


def test_a_connection_the_server_closed_while_idle_is_not_used_again():
    closed = threading.Event()

    def play(conn, request):
        conn.sendall(head(200, None, len(BODY)) + BODY)
        conn.shutdown(2)  # a keep-alive reply, then the server drops the connection
        closed.set()

    with HostileServer(play) as server:
        provider = provider_at(server.url + "/v1")

        async def go():
            try:
                texts = await ask(provider)
                await asyncio.to_thread(closed.wait, 5)
                for _ in range(3):  # the close is in; let the loop read it
                    await asyncio.sleep(0)
                return texts + await ask(provider)
            finally:
                await provider.aclose()

        assert run(go()) == ["fine", "fine"]
    assert server.connections == 2


def test_interim_replies_are_skipped():
    def play(conn, request):
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + head(200, None, len(BODY)) + BODY)

    with HostileServer(play, keep_alive=True) as server:
        provider = provider_at(server.url + "/v1")

        assert asked(provider, 2) == ["fine", "fine"]
    assert server.connections == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTX/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ncontent-length: nine\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["status-line", "length", "chunk-size"],
)
def test_a_malformed_reply_is_a_malformed_response(raw):
    with HostileServer(lambda conn, request: conn.sendall(raw)) as server:
        provider = provider_at(server.url + "/v1")
        with pytest.raises(ProviderError) as caught:
            asked(provider)
    assert caught.value.code == "malformed_response"  # said as such, never a cut
    assert "malformed reply" in str(caught.value)


def test_a_fault_in_the_body_is_told_as_it_was_even_when_read_later():
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\nzz\r\n"
    with HostileServer(lambda conn, request: conn.sendall(raw)) as server:
        transport = H1Transport(httpx.Limits(), ssl.create_default_context())

        async def go():
            try:
                response = await transport.post(httpx.URL(server.url + "/v1"), b"{}", 5)
                for _ in range(3):  # the connection is closed meanwhile
                    await asyncio.sleep(0)
                first = await response.content.readany()
                with pytest.raises(httpx.RemoteProtocolError) as caught:
                    await response.content.readany()
                response.close()
                return first, str(caught.value)
            finally:
                await transport.aclose()

        first, error = run(go())
    assert first == b"{}"
    assert error.startswith("malformed reply")


def test_a_head_that_never_ends_is_cut_off():
    def play(conn, request):
        conn.sendall(b"HTTP/1.1 200 OK\r\nx-pad: ")
        for _ in range(100):  # 1.6 MB of one header, never ended
            conn.sendall(b"y" * 16384)

    with HostileServer(play) as server:
        provider = provider_at(server.url + "/v1")
        with pytest.raises(ProviderError) as caught:
            asked(provider)
    assert caught.value.code == "malformed_response"
    assert f"past {MAX_HEAD_BYTES} bytes" in str(caught.value)


def test_header_names_are_read_in_any_case_and_repeats_are_joined():
    error = json.dumps({"error": {"message": "slow down", "type": "rate_limit"}}).encode()
    headers = {"Content-Type": "application/json", "Retry-After": "7"}

    def play(conn, request):
        conn.sendall(
            head(429, headers, len(error))[:-2] + b"X-Note: a\r\nX-Note: b\r\n\r\n" + error
        )

    with HostileServer(play) as server:
        transport = H1Transport(httpx.Limits(), ssl.create_default_context())

        async def go():
            try:
                response = await transport.post(httpx.URL(server.url + "/v1"), b"{}", 5)
                body = await response.content.readany()
                response.release()
                return response, body
            finally:
                await transport.aclose()

        response, body = run(go())
        provider = provider_at(server.url + "/v1")

        async def via_provider():
            try:
                await ask(provider)
            finally:
                await provider.aclose()

        with pytest.raises(ProviderError) as caught:
            run(via_provider())
    assert (response.status, body) == (429, error)
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-note"] == "a, b"
    assert (caught.value.code, caught.value.retry_after) == ("429", 7)


def test_the_connection_limit_holds_and_connections_are_shared():
    both_in = threading.Barrier(2, timeout=5)

    def play(conn, request):
        both_in.wait()  # two requests are held at once, never three
        conn.sendall(head(200, None, len(BODY)) + BODY)

    with HostileServer(play, keep_alive=True) as server:
        transport = H1Transport(httpx.Limits(max_connections=2), ssl.create_default_context())
        assert posted_together(transport, server.url + "/v1/chat/completions", 6) == [BODY] * 6
    assert (server.connections, server.most_open) == (2, 2)


def test_many_calls_share_few_connections_and_closing_closes_them_all():
    with HostileServer(reply(200, BODY), keep_alive=True) as server:
        transport = H1Transport(httpx.Limits(max_connections=8), ssl.create_default_context())
        url = server.url + "/v1/chat/completions"
        assert posted_together(transport, url, 300, at_once=50) == [BODY] * 300
        for _ in range(500):  # the server's threads see the hang-ups as they come
            if server.open_now == 0:
                break
            threading.Event().wait(0.01)
        assert server.open_now == 0
    assert server.most_open <= 8
    assert server.connections <= 8
    assert len(server.requests) == 300


def test_a_reply_released_twice_gives_its_connection_back_once():
    both_in = threading.Barrier(2, timeout=5)

    def play(conn, request):
        if len(server.requests) > 1:
            both_in.wait()  # the two later requests are in flight at once
        conn.sendall(head(200, None, len(BODY)) + BODY)

    with HostileServer(play, keep_alive=True) as server:
        transport = H1Transport(httpx.Limits(), ssl.create_default_context())
        url = httpx.URL(server.url + "/v1/chat/completions")

        async def one():
            response = await transport.post(url, b"{}", 5)
            body = await response.content.readany()
            response.release()
            response.release()
            response.close()
            return body

        async def go():
            try:
                first = await one()
                return [first, *await asyncio.gather(one(), one())]
            finally:
                await transport.aclose()

        assert run(go()) == [BODY] * 3
    # one connection for the first call, reused by one of the next two; the other opened anew
    assert server.connections == 2


def test_cancelling_a_call_closes_its_connection():
    got = threading.Event()
    answer_next = threading.Event()

    def play(conn, request):
        got.set()
        if answer_next.is_set():
            conn.sendall(head(200, None, len(BODY)) + BODY)
            return
        conn.settimeout(5)
        conn.recv(1)  # hold the reply until the client hangs up

    with HostileServer(play, keep_alive=True) as server:
        provider = provider_at(server.url + "/v1")

        async def go():
            try:
                call = asyncio.create_task(ask(provider))
                await asyncio.to_thread(got.wait, 5)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                answer_next.set()
                return await ask(provider)  # on a new connection
            finally:
                await provider.aclose()

        assert run(go()) == ["fine"]
    assert server.connections == 2


def test_idle_connections_expire():
    with HostileServer(reply(200, BODY), keep_alive=True) as server:
        transport = H1Transport(httpx.Limits(keepalive_expiry=1e-9), ssl.create_default_context())
        assert posted(transport, server.url + "/v1/chat/completions", 3) == [BODY] * 3
    assert server.connections == 3


def _tls_server(authority, play) -> HostileServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return HostileServer(play, keep_alive=True, tls=context)


def test_every_client_shares_one_tls_context():
    # Loading the CA bundle costs tens of milliseconds: it happens once, not per client.
    assert tls_context() is tls_context()


def test_tls_with_a_trusted_certificate():
    authority = trustme.CA()
    with _tls_server(authority, reply(200, BODY)) as server:
        client = ssl.create_default_context()
        authority.configure_trust(client)
        transport = H1Transport(httpx.Limits(), client)
        url = server.url.replace("http://", "https://") + "/v1/chat/completions"
        assert posted(transport, url, 2) == [BODY, BODY]
    assert server.connections == 1


def test_tls_with_an_untrusted_certificate_is_a_connect_error():
    with _tls_server(trustme.CA(), reply(200, BODY)) as server:
        transport = H1Transport(httpx.Limits(), ssl.create_default_context())
        url = server.url.replace("http://", "https://") + "/v1/chat/completions"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            posted(transport, url)


def test_a_proxied_host_goes_through_aiohttp(monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with HostileServer(reply(200, BODY)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        provider = provider_at("http://upstream.invalid/v1")

        assert asked(provider) == ["fine"]
    assert proxy.requests[0].startswith(b"POST http://upstream.invalid/v1/chat/completions ")


def test_credentials_in_the_url_authenticate_and_stay_out_of_the_host_header():
    ollama = {"message": {"role": "assistant", "content": "fine"}, "done": True, "model": "m"}
    with HostileServer(reply(200, json.dumps(ollama).encode()), keep_alive=True) as server:
        port = server.url.rsplit(":", 1)[1]
        url = server.url.replace("http://", "http://al%40ice:p%3Ass@")
        provider = HTTPProvider(resolve(BUILTIN_SETTINGS["ollama"], {"OLLAMA_HOST": url}))
        assert asked(provider) == ["fine"]
    sent = server.requests[0].decode().lower()
    assert f"host: 127.0.0.1:{port}\r\n" in sent
    assert "authorization: basic " + base64.b64encode(b"al@ice:p:ss").decode().lower() in sent
    assert "al%40ice" not in sent


def _sse(conn, request):
    events = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in ("a", "b")]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    conn.sendall(head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
    for data in [*(json.dumps(e) for e in events), "[DONE]"]:
        piece = f"data: {data}\n\n".encode()
        conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.sendall(b"0\r\n\r\n")


def test_the_transport_runs_on_uvloop():
    # uvloop's create_connection takes fewer arguments than asyncio's: plain calls and
    # streams must work on it all the same.
    plays = iter([reply(200, BODY), reply(200, BODY), _sse])
    with HostileServer(lambda conn, request: next(plays)(conn, request), keep_alive=True) as server:
        provider = provider_at(server.url + "/v1")

        async def go():
            try:
                texts = await ask(provider, 2)
                timeouts = StreamTimeouts(first_token=5, idle=5, total=5)
                request = ChatRequest.from_prompt("hi")
                items = [i async for i in provider.astream(request=request, timeouts=timeouts)]
                return texts, [getattr(i, "text", None) for i in items]
            finally:
                await provider.aclose()

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            texts, streamed = runner.run(go())
    assert texts == ["fine", "fine"]
    assert streamed == ["a", "b", "ab"]  # two deltas, then the whole answer
    assert server.connections == 1


def test_a_header_with_a_line_break_is_refused_without_its_value():
    with pytest.raises(ValueError, match="x-team") as caught:
        H1Transport(httpx.Limits(), ssl.create_default_context(), [("x-team", "a\r\nb: secret")])
    assert "secret" not in str(caught.value)
