"""Every socket the default async transport opens is closed on every path: 1,000 calls
through one provider, 256 in flight and the rest waiting, all cancelled while they connect
(to one address, or to several raced by happy eyeballs), during the TLS handshake, while
waiting for the reply's head, or while reading its body. The process's open descriptors are
counted before and after: none is left."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import socket
import ssl
import time

import pytest
import trustme

from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS
from engine.types.request import ChatRequest

CALLS, IN_FLIGHT = 1000, 256
pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


_SILENT = r"""
import socket, sys, threading
then = sys.argv[1]
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
print(sock.getsockname()[1], flush=True)
held = []
def serve(conn):
    if then == "tls":
        return  # answers nothing, TLS or otherwise
    conn.settimeout(10)
    try:
        conn.recv(65536)
        if then == "body":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"cho")
    except OSError:
        pass
while True:
    conn, _ = sock.accept()
    held.append(conn)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@contextlib.contextmanager
def _silent(then: str):
    """A server in a process of its own (its sockets are not this process's) that accepts
    connections and, after ``then``, says nothing more: ``head`` reads the request and never
    answers; ``body`` sends a head and the start of a body; ``tls`` never speaks TLS."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", _SILENT, then], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def _provider(url: str, ca: str | None = None) -> HTTPProvider:
    settings = dataclasses.replace(
        BUILTIN_SETTINGS["openai"], max_in_flight=IN_FLIGHT, max_queue=CALLS, connect_timeout=30
    )
    env = {"OPENAI_API_KEY": "sk-soak-0123456789abcdef", "OPENAI_BASE_URL": url}
    if ca is not None:
        env["SSL_CERT_FILE"] = ca
    return HTTPProvider(resolve(settings, env))


async def _cancel_all(provider: HTTPProvider, wait: float) -> None:
    request = ChatRequest.from_prompt("hi")
    tasks = [
        asyncio.ensure_future(provider.achat(request=request, timeout=30)) for _ in range(CALLS)
    ]
    await asyncio.sleep(wait)  # the first 256 are opening (or waiting), the rest in line
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await provider.aclose()
    for _ in range(5):  # closed transports finish closing on the next turns of the loop
        await asyncio.sleep(0.01)


def _leftover(url: str, wait: float, tls_context: ssl.SSLContext | None = None) -> int:
    before = _descriptors()
    provider = _provider(url)
    if tls_context is not None:  # the server's certificate, trusted for this test
        from engine.providers import network

        network.tls_context.cache_clear()
        original = network.tls_context
        network_context = tls_context

        def trusted() -> ssl.SSLContext:
            return network_context

        network.tls_context = trusted  # type: ignore[assignment]
        try:
            asyncio.run(_cancel_all(provider, wait))
        finally:
            network.tls_context = original
    else:
        asyncio.run(_cancel_all(provider, wait))
    gc.collect()
    time.sleep(0.05)
    return _descriptors() - before


def test_cancelled_while_connecting_to_one_address(black_hole):
    assert _leftover(f"http://127.0.0.1:{black_hole}", 0.3) == 0


def test_cancelled_while_happy_eyeballs_races_two_addresses(black_hole):
    names = {info[4][0] for info in socket.getaddrinfo("localhost", black_hole)}
    if len(names) < 2:
        pytest.skip("localhost has one address here: no race to run")
    assert _leftover(f"http://localhost:{black_hole}", 0.3) == 0


@pytest.mark.parametrize("phase", ["head", "body"])
def test_cancelled_while_waiting_for_the_reply(phase):
    with _silent(phase) as port:
        assert _leftover(f"http://127.0.0.1:{port}", 0.5) == 0


def test_cancelled_during_the_tls_handshake():
    authority = trustme.CA()
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with _silent("tls") as port:
        assert _leftover(f"https://127.0.0.1:{port}", 0.5, context) == 0


@pytest.mark.parametrize("wait", [0.0, 0.002, 0.005, 0.02])
def test_cancelled_as_the_connections_complete(wait):
    """A server that accepts at once: the cancel lands as connections complete (the race in
    which a connected socket was handed to a caller that was gone)."""
    with _silent("head") as port:
        assert _leftover(f"http://127.0.0.1:{port}", wait) == 0
