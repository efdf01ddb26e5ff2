"""A loopback server that replays recorded provider replies byte for byte.

Each case of ``tests/corpus/*.yaml`` is served at ``/case/<id>/...`` (whatever path the
provider appends): its status line, its headers, and its body, written in the chunks the
case names (``chunks: lines`` writes each line on its own; a list of sizes cuts the body
there), with chunked transfer-encoding when it is written in pieces. ``hold: true`` keeps
the connection open after the body, as a server that never closes it would.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

CORPUS = Path(__file__).resolve().parent / "corpus"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
            403: "Forbidden", 404: "Not Found", 413: "Payload Too Large",
            422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            529: "Site Overloaded"}  # fmt: skip


@dataclass
class Case:
    """One recorded reply and what reading it must give."""

    id: str
    wire: str
    source: str
    status: int
    headers: dict[str, str]
    body: bytes
    chunks: Any
    hold: bool
    expect: dict[str, Any]
    file: str = ""
    #: False where the official SDK cannot read the body (said why in the corpus)
    sdk_reads: bool = True

    def pieces(self) -> list[bytes]:
        """The body as the server writes it."""
        if self.chunks is None:
            return [self.body]
        if self.chunks == "lines":
            return self.body.splitlines(keepends=True)
        out, at = [], 0
        for size in self.chunks:
            out.append(self.body[at : at + size])
            at += size
        out.append(self.body[at:])
        return [p for p in out if p]


def load_cases() -> list[Case]:
    """Every case of every corpus file."""
    yaml = YAML(typ="safe")
    cases: list[Case] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"))
        for raw in data["cases"]:
            text = raw["body"]
            if raw.get("crlf"):
                text = text.replace("\n", "\r\n")
            body = text.encode("utf-8")
            escape = raw.get("latin1_escape")
            if escape:  # a byte that is not UTF-8, written in the file as an escape
                body = body.replace(escape.encode(), bytes([int(escape[2:], 16)]))
            cases.append(
                Case(
                    id=raw["id"],
                    wire=data["wire"],
                    source=raw["source"],
                    status=int(raw.get("status", 200)),
                    headers=dict(raw.get("headers") or {"content-type": "application/json"}),
                    body=body,
                    chunks=raw.get("chunks"),
                    hold=bool(raw.get("hold")),
                    expect=dict(raw["expect"]),
                    file=path.name,
                    sdk_reads=raw.get("sdk_reads", True),
                )
            )
    return cases


class _Handler(socketserver.BaseRequestHandler):
    server: ReplayServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(rest) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            rest += piece
        path = lines[0].split(" ")[1]
        case = self.server.cases[path.split("/")[2]]
        self.server.requests.append((case.id, path, rest))
        pieces = case.pieces()
        chunked = len(pieces) > 1 or case.hold
        out = [f"HTTP/1.1 {case.status} {_REASONS.get(case.status, 'Status')}"]
        out += [f"{k}: {v}" for k, v in case.headers.items()]
        out.append("transfer-encoding: chunked" if chunked else f"content-length: {len(case.body)}")
        if not case.hold:
            out.append("connection: close")
        conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        if not chunked:
            conn.sendall(case.body)
            return
        for piece in pieces:
            conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            time.sleep(0.001)  # separate network writes
        if case.hold:
            conn.recv(1)  # until the client hangs up (or the 10 s timeout)
            return
        conn.sendall(b"0\r\n\r\n")


class ReplayServer(socketserver.ThreadingTCPServer):
    """Serves ``cases`` on a free loopback port (``url(case_id)`` is a provider's base URL)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cases: list[Case]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.cases = {c.id: c for c in cases}
        self.requests: list[tuple[str, str, bytes]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def url(self, case_id: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/case/{case_id}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
