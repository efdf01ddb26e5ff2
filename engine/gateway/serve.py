"""``torq-fallback serve``: the gateway under uvicorn (uvloop and httptools), one process or
``--workers N``.

Everything is checked before the port is bound: the chains (every worker loads the same
ones, and reloads them when they change), the keys file, and the address: without a keys
file the gateway binds only to loopback, unless ``--no-auth`` says that is intended. On
SIGTERM (or Ctrl-C) it stops accepting, lets requests and streams in flight finish for up
to ``--drain-timeout`` seconds, then exits.

Workers get their settings through the environment (``TORQ_GATEWAY``, JSON, and the
``TORQ_*`` variables of the manager), so each builds the same gateway.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from engine.gateway.app import Gateway, GatewaySettings, create_app
from engine.gateway.keys import load_keys
from engine.manager.llm import LLMManager

__all__ = ["ServeOptions", "check", "serve", "worker_app"]

_ENV = "TORQ_GATEWAY"
_log = logging.getLogger("torq.gateway")


@dataclass(frozen=True)
class ServeOptions:
    """What ``serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    keys: str | None = None
    no_auth: bool = False
    drain_timeout: float = 30.0
    max_in_flight: int = 1024
    max_body_bytes: int = 16 * 1024 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(options: ServeOptions) -> str:
    """Every check ``serve`` makes before binding (a ``ValueError``, or the chains' and
    keys' `ChainConfigError`, naming what is wrong); returns the startup line's detail."""
    if options.keys is None and not options.no_auth and not _loopback(options.host):
        raise ValueError(
            f"--host {options.host}: without --keys FILE the gateway serves loopback only; "
            "give a keys file (torq-fallback keys add NAME), or --no-auth to serve anyone"
        )
    if options.workers < 1 or options.max_in_flight < 1 or options.drain_timeout < 0:
        raise ValueError("--workers and --max-in-flight must be at least 1, --drain-timeout >= 0")
    ring = load_keys(options.keys) if options.keys is not None else None
    with LLMManager() as manager:  # the chains every worker will load, checked once here
        modes = manager.chainset.mode_names()
        health = type(manager.health.store).__name__
    who = f"{len(ring.keys)} keys from {options.keys}" if ring is not None else "no auth"
    shared = "shared through Redis" if health == "RedisHealthStore" else "local to each worker"
    return f"{len(modes)} chains ({', '.join(modes)}); {who}; health {shared}"


def worker_app() -> Gateway:
    """One worker's gateway, from the settings ``serve`` put in the environment."""
    data: dict[str, Any] = json.loads(os.environ.get(_ENV, "{}"))
    keys = data.get("keys")
    settings = GatewaySettings(
        keys=load_keys(keys) if keys else None,
        max_in_flight=int(data.get("max_in_flight", 1024)),
        max_body_bytes=int(data.get("max_body_bytes", 16 * 1024 * 1024)),
    )
    return create_app(settings=settings, config={"reload": True})


def serve(options: ServeOptions) -> int:
    """Run the gateway until SIGTERM or Ctrl-C (the checks first: `check`)."""
    import uvicorn

    detail = check(options)
    os.environ[_ENV] = json.dumps(
        {
            "keys": os.path.abspath(options.keys) if options.keys else None,
            "max_in_flight": options.max_in_flight,
            "max_body_bytes": options.max_body_bytes,
        }
    )
    workers = f"{options.workers} worker{'s' if options.workers != 1 else ''}"
    print(
        f"torq-fallback gateway on http://{options.host}:{options.port} ({workers}; {detail})",
        flush=True,
    )
    uvicorn.run(
        "engine.gateway.serve:worker_app",
        factory=True,
        host=options.host,
        port=options.port,
        workers=options.workers,
        loop=_loop(),
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=int(options.drain_timeout) or None,
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    return 0


def _loop() -> str:
    try:
        import uvloop  # noqa: F401  (the fastest loop where it runs)
    except ImportError:
        return "asyncio"
    return "uvloop"
