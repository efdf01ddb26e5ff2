"""The dashboard without the gateway: for an application that embeds the engine and wants
the same live page on its own `LLMManager` (`DashboardApp`, an ASGI app to mount, or
`start_dashboard`, a server on a thread of its own), and for ``torq-fallback dashboard``,
which shows a deployment whose health lives in Redis from a process of its own.

The page, its event stream and its rules are the gateway's (`engine.gateway.dashboard`):
read-only, loopback only unless keys are given.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from engine.gateway.admission import Admission
from engine.gateway.asgi import Receive, Send, reply
from engine.gateway.board import Board
from engine.gateway.dashboard import Dashboard
from engine.gateway.keys import KeyRing
from engine.gateway.shared_board import shared_board
from engine.manager.llm import LLMManager

__all__ = ["DashboardApp", "DashboardServer", "start_dashboard"]


class DashboardApp:
    """``GET /dashboard`` and ``GET /dashboard/events`` on ``manager`` (what it runs is what
    the page shows). ``publish``: with health in Redis, also publish this process's
    traffic for the deployment's other pages (a viewer-only process gives False)."""

    def __init__(
        self, manager: LLMManager, keys: KeyRing | None = None, publish: bool = True
    ) -> None:
        self.manager = manager
        self.board = Board()
        manager.add_sink(self.board)
        shared = shared_board(manager, self.board, publish=publish)
        self.dashboard = Dashboard(manager, self.board, Admission(keys, manager.health.store, 1),
                                   shared)  # fmt: skip

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.dashboard.end_on_exit_signals()
                    if self.dashboard.shared is not None:
                        self.dashboard.shared.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.dashboard.shared is not None:
                        self.dashboard.shared.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if scope["method"] == "GET" and path in ("/dashboard", "/dashboard/", "/dashboard/events"):
            await self.dashboard.serve(path, scope, receive, send)
        elif scope["method"] == "GET" and path == "/":
            await send({"type": "http.response.start", "status": 307,
                        "headers": [(b"location", f"{root}/dashboard".encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
        else:
            error = {"message": f"{path[:200]}: no such page; see /dashboard", "code": "not_found"}
            await reply(send, 404, {"error": error})


class DashboardServer:
    """A dashboard served on a thread (`start_dashboard`); ``url`` is its page."""

    def __init__(self, server: Any, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    def stop(self) -> None:
        """Stop serving (open pages are told to reconnect)."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_dashboard(
    manager: LLMManager, host: str = "127.0.0.1", port: int = 8001, keys: KeyRing | None = None
) -> DashboardServer:
    """Serve ``manager``'s dashboard at ``http://host:port/dashboard`` on a daemon thread
    (uvicorn: ``pip install 'torq-fallback[serve]'``) and return once it listens."""
    import uvicorn

    if keys is None and host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"host {host}: without keys the dashboard serves loopback only")
    app = DashboardApp(manager, keys)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="torq-dashboard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f"the dashboard could not listen on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1] if port == 0 else port
    return DashboardServer(server, thread, f"http://{host}:{bound}/dashboard")
