"""The floor ``gateway.py`` measures the gateway against: an ASGI app that forwards each
POST's body to the simulator's DeepSeek endpoint over the engine's own HTTP/1.1 transport,
and hands the reply back as it comes (streams included), with no engine in between: no
chain, no parsing, no record.

Run: .venv/bin/python -m uvicorn passthrough_app:app --app-dir benchmarks --port PORT
(``PASSTHROUGH_UPSTREAM`` is the simulator's base URL), with uvloop and httptools as
``torq-fallback serve`` runs.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx

from engine.providers.h1 import H1Transport

UPSTREAM = httpx.URL(
    os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:1") + "/deepseek/chat/completions"
)
_transport: H1Transport | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _transport
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if _transport is None:
        _transport = H1Transport(
            httpx.Limits(max_connections=1024, max_keepalive_connections=1024),
            ssl.create_default_context(),
            [("content-type", "application/json"), ("authorization", "Bearer load-key")],
        )
    reply = await _transport.post(UPSTREAM, body, 30.0)
    kind = reply.headers.get("content-type", "application/json").encode()
    await send({"type": "http.response.start", "status": reply.status,
                "headers": [(b"content-type", kind)]})  # fmt: skip
    while True:
        data = await reply.content.readany()
        if not data:
            break
        await send({"type": "http.response.body", "body": data, "more_body": True})
    reply.release()
    await send({"type": "http.response.body", "body": b""})
