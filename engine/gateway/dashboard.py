"""The live dashboard: ``GET /dashboard`` (one self-contained page: every chain's diagram,
its steps' health and the live tail) and ``GET /dashboard/events`` (Server-Sent Events: the
whole picture, pushed at most twice a second and only when it changed).

The diagrams are the SVGs the engine renders (Graphviz's ``dot``; without it, the steps are
listed in text); the page lays the live counts over them. Nothing is loaded from anywhere
else: no script, style or font leaves the gateway. The page is read-only. It is served to
loopback clients, or, when the gateway has keys, to a client presenting one (a header, or
the ``torq_key`` cookie the page's own form sets).
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import os
import signal
import threading
import time
from typing import Any, Final
from urllib.parse import unquote

from engine.gateway.admission import Admission, presented_key
from engine.gateway.asgi import Receive, Send, check_headers, reply
from engine.gateway.board import Board, merged_view
from engine.gateway.failures import GatewayError
from engine.gateway.page import LOGIN, PAGE
from engine.gateway.shared_board import SharedBoard
from engine.manager.llm import LLMManager
from engine.tools.health_view import health_report

__all__ = ["Dashboard"]

#: Seconds between two looks at the aggregate (at most this many pushes a second: 2).
TICK: Final = 0.5
#: Seconds between keep-alive comments when nothing changes (so proxies keep the line).
KEEPALIVE: Final = 15.0


class Dashboard:
    """The dashboard's two pages, on one gateway's manager and board."""

    def __init__(
        self,
        manager: LLMManager,
        board: Board,
        admission: Admission,
        shared: SharedBoard | None = None,
    ) -> None:
        self.manager = manager
        self.board = board
        self.admission = admission
        #: With health in Redis: every worker's aggregate, merged (else this one's alone).
        self.shared = shared
        self.viewers = 0  # event streams open now
        #: Set when the server is asked to stop: open event streams end (cleanly) at once,
        #: so that they do not hold the drain up; the pages reconnect to the next server.
        self.closing = asyncio.Event()
        self._svg: dict[tuple[str, int], str] = {}  # (chain, hash of its spec) -> svg text

    async def page(self, send: Send) -> None:
        """The page, with every chain's diagram in it."""
        sections = "\n".join(self._section(name) for name in sorted(self.manager.chains))
        body = PAGE.replace("<!--CHAINS-->", sections).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            # The page may load only what the gateway serves (no network beyond it).
            (b"content-security-policy", b"default-src 'self'; style-src 'self' 'unsafe-inline';"
             b" script-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self';"
             b" frame-ancestors 'none'"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def _section(self, name: str) -> str:
        chain = self.manager.chains[name].chain
        steps = [{"id": s.id, "provider": s.provider, "breaker": s.key} for s in chain.steps]
        data = html.escape(json.dumps({"name": name, "steps": steps}), quote=True)
        title = html.escape(name)
        return (
            f'<section class="chain" data-chain="{data}"><h2>chain {title}</h2>'
            f'<div class="diagram">{self._diagram(name)}</div>'
            '<table class="steps"><thead><tr><th>step</th><th>provider</th><th>breaker</th>'
            "<th>why</th><th>next probe</th><th>p50 / p95</th><th>quota, last minute</th>"
            "<th>hedges</th><th>last minute</th>"
            "</tr></thead><tbody></tbody></table></section>"
        )

    def _diagram(self, name: str) -> str:
        from engine.tools.diagrams import DotMissingError, render

        chain = self.manager.chains[name].chain
        key = (name, hash(chain.spec.model_dump_json()))
        if key not in self._svg:
            try:
                svg = render(chain, "svg").decode()
                svg = svg[svg.index("<svg") :]  # the XML prologue and doctype stay out
            except DotMissingError:
                svg = '<p class="nodot">(diagram: install Graphviz\'s dot to draw it)</p>'
            if len(self._svg) > 256:
                self._svg.clear()
            self._svg[key] = svg
        return self._svg[key]

    async def events(self, receive: Receive, send: Send) -> None:
        """The event stream: the picture now, then each change, until the page goes."""
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]})  # fmt: skip
        gone = asyncio.ensure_future(_hung_up(receive))
        closing = asyncio.ensure_future(self.closing.wait())
        self.viewers += 1
        try:
            sent, quiet = "", 0.0
            if self.shared is not None:
                self.shared.start()
            while not gone.done():
                # Redis and the health store are read on a thread: the loop serves requests.
                data = json.dumps(await asyncio.to_thread(self.picture), separators=(",", ":"))
                if data != sent:  # traffic, a breaker, a quota: whatever changed, once a tick
                    sent = data
                    event = b"retry: 1000\ndata: " + data.encode() + b"\n\n"
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                    quiet = 0.0
                elif quiet >= KEEPALIVE:
                    ping = b": still here\n\n"
                    await send({"type": "http.response.body", "body": ping, "more_body": True})
                    quiet = 0.0
                if self.closing.is_set():
                    break
                await asyncio.wait({gone, closing}, timeout=TICK)
                quiet += TICK
        finally:
            self.viewers -= 1
            gone.cancel()
            closing.cancel()
        await send({"type": "http.response.body", "body": b""})

    def end_on_exit_signals(self) -> None:
        """End the event streams when the process is told to stop (SIGTERM, SIGINT), before
        the server's own handler drains the rest. Called at the server's start-up, once its
        handlers are in place; a gateway mounted elsewhere leaves its host's signals be."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(number: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.closing.set)
                previous(number, frame)

            signal.signal(sig, handler)

    def picture(self) -> dict[str, Any]:
        """Everything the page shows, as JSON data (blocking: it may read Redis)."""
        if self.shared is not None:
            exports, workers = self.shared.exports()
        else:
            self.board.fold()
            exports, workers = [self.board.export()], [f"{os.uname().nodename}:{os.getpid()}"]
        view = merged_view(exports, time.time())
        report = health_report(self.manager)  # one read of the store (Redis: one round trip)
        view["health"] = report
        shared = report["source"] != "local"
        view["scope"] = {
            "worker": workers[0],
            "workers": workers,
            "health": report["source"],
            "traffic": f"{len(workers)} workers, through Redis"
            if self.shared is not None
            else "this worker only (health is not shared, so neither is traffic)",
            "shared": shared,
            "viewers": self.viewers,  # pages open on this worker now
        }
        return view

    async def serve(self, path: str, scope: Any, receive: Receive, send: Send) -> None:
        """``GET /dashboard`` or ``GET /dashboard/events``, to a client that may see it."""
        refused = self._refused(scope)
        if refused is not None:
            if path.endswith("/events"):
                body = {"error": {"message": refused.message, "code": refused.code}}
                await reply(send, refused.status, body)
            else:
                page = LOGIN.encode() if refused.status == 401 else html.escape(
                    refused.message).encode()  # fmt: skip
                await send(
                    {
                        "type": "http.response.start",
                        "status": refused.status,
                        "headers": [(b"content-type", b"text/html; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": page})
            return
        if path.endswith("/events"):
            await self.events(receive, send)
        else:
            await self.page(send)

    def _refused(self, scope: Any) -> GatewayError | None:
        """Why this client may not see the dashboard (None: it may)."""
        ring = self.admission.ring
        if ring is None:
            client = scope.get("client")
            if client and not _loopback(str(client[0])):
                return GatewayError(403, "loopback_only", "without keys, the dashboard is "
                                    "served to loopback clients only")  # fmt: skip
            return None
        headers = check_headers(scope, 64 * 1024)
        presented = presented_key(headers) or _cookie(headers.get(b"cookie", b""), "torq_key")
        key = ring.find(presented) if presented is not None else None
        if key is None:
            return GatewayError(401, "invalid_api_key", "the dashboard asks for a gateway key")
        if key.chains is not None:  # the page shows every chain's traffic
            why = f"key '{key.name}' may use only some chains; the dashboard shows them all"
            return GatewayError(403, "chain_not_allowed", why + ": use a key for every chain")
        return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return unquote(value)
    return None


async def _hung_up(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
