"""The gateway: the engine on the wire, as an OpenAI- and Anthropic-compatible HTTP API.

`create_app` builds an ASGI application on a `LLMManager` (mount it in FastAPI or
Starlette, or run it with ``torq-fallback serve``): ``POST /v1/chat/completions`` (OpenAI's
Chat Completions), ``POST /v1/messages`` (Anthropic's Messages), ``GET /v1/models`` (the
chains and their aliases), ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/torq/health``
and the live ``/dashboard`` (`start_dashboard` serves that page alone, on an application's
own manager).
A request's ``model`` names a chain (a mode, or an alias a chain file declares); every reply
carries the whole attempt history. This is the top layer: nothing of the engine imports it.
"""

from __future__ import annotations

from engine.gateway.app import Gateway, GatewaySettings, create_app
from engine.gateway.keys import GatewayKey, KeyRing, load_keys
from engine.gateway.standalone import DashboardApp, DashboardServer, start_dashboard

__all__ = [
    "DashboardApp",
    "DashboardServer",
    "Gateway",
    "GatewayKey",
    "GatewaySettings",
    "KeyRing",
    "create_app",
    "load_keys",
    "start_dashboard",
]
