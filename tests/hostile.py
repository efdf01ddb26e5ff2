"""A raw-socket HTTP server that misbehaves on purpose, for the hardening tests.

Each connection reads one request (head and body) and then runs a ``play`` function that
writes whatever it likes to the socket: trickled headers, endless bodies, bombs. With
``keep_alive``, it goes on reading requests on the same connection (one ``play`` each) until
the client hangs up. With ``tls``, connections are wrapped in that server-side TLS context.
Runs in its own thread; every connection in its own thread too, stopped when the server
stops. It counts connections: accepted, open now, most open at once, and hung up by the
client.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

Play = Callable[[socket.socket, bytes], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class HostileServer:
    """``with HostileServer(play) as server: server.url``."""

    def __init__(
        self, play: Play, keep_alive: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.play = play
        self.keep_alive = keep_alive
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        #: Connections the client closed while the server waited for a request.
        self.hung_up = 0
        self._count = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> HostileServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with self._count:
            self.connections += 1
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                while True:
                    request = _read_request(conn)
                    if not request:
                        with self._count:
                            self.hung_up += 1
                        return
                    self.requests.append(request)
                    self.play(conn, request)
                    if not self.keep_alive:
                        return
        except OSError:
            pass
        finally:
            with self._count:
                self.open_now -= 1


def head(
    status: int = 200, headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    for name, value in (headers or {"content-type": "application/json"}).items():
        lines.append(f"{name}: {value}")
    if length is not None:
        lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def trickle(data: bytes, interval: float, stop: Callable[[], bool]) -> Play:
    """Send ``data`` one byte every ``interval`` seconds (until the client goes away)."""

    def play(conn: socket.socket, request: bytes) -> None:
        for byte in data:
            if stop():
                return
            conn.sendall(bytes([byte]))
            time.sleep(interval)

    return play


def reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Play:
    def play(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head(status, headers, len(body)) + body)

    return play
