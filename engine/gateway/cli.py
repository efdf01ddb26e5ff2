"""The gateway's commands of ``torq-fallback``: ``serve``, ``keys`` and ``dashboard``. Thin:
parsing and printing; the work is `engine.gateway.serve`'s, `.keys`' and `.standalone`'s."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["register"]

Command = Callable[..., argparse.ArgumentParser]


def _need_uvicorn(command: str) -> None:
    """A clear line, not a traceback, when the serve extra is not installed."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{command} needs uvicorn, which the plain install leaves out: "
            "pip install 'torq-fallback[serve]'"
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    _need_uvicorn("serve")
    from engine.gateway.serve import ServeOptions, serve

    if args.chains:
        import os

        os.environ["TORQ_CHAINS_DIR"] = args.chains  # what every worker's manager reads
    return serve(ServeOptions(
        host=args.host, port=args.port, workers=args.workers, keys=args.keys,
        no_auth=args.no_auth, drain_timeout=args.drain_timeout,
        max_in_flight=args.max_in_flight, max_body_bytes=args.max_body_bytes,
    ))  # fmt: skip


def cmd_keys(args: argparse.Namespace) -> int:
    from engine.gateway.keys import add_key, load_keys

    if args.action == "add":
        if not args.name:
            raise ValueError("keys add: give the key's NAME")
        chains = [c.strip() for c in args.chains.split(",") if c.strip()] if args.chains else None
        made = add_key(args.keys, args.name, chains=chains, rpm=args.rpm, tpm=args.tpm,
                       daily_usd=args.daily_usd)  # fmt: skip
        print(made)
        print(f"(key '{args.name}' added to {args.keys}, which keeps only its SHA-256: "
              "this is the only time the key is shown)")  # fmt: skip
        return 0
    ring = load_keys(args.keys)
    for entry in ring.keys:
        limits = ", ".join(
            f"{name} {getattr(entry, name)}" for name in ("rpm", "tpm", "daily_usd")
            if getattr(entry, name) is not None
        )  # fmt: skip
        allowed = ", ".join(entry.chains) if entry.chains is not None else "every chain"
        print(f"{entry.name}: {allowed}" + (f"; {limits}" if limits else ""))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    _need_uvicorn("dashboard")
    import os

    import uvicorn

    from engine.gateway.keys import load_keys
    from engine.gateway.standalone import DashboardApp
    from engine.manager.llm import LLMManager

    if args.chains:
        os.environ["TORQ_CHAINS_DIR"] = args.chains
    ring = load_keys(args.keys) if args.keys else None
    if ring is None and args.host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"--host {args.host}: without --keys the dashboard serves loopback only")
    manager = LLMManager()
    app = DashboardApp(manager, ring, publish=False)
    if app.dashboard.shared is None:
        print("note: health is local to this process, so the page shows no traffic; set "
              "TORQ_REDIS_URL to see a deployment, or embed the dashboard in the application "
              "(engine.gateway.start_dashboard)")  # fmt: skip
    print(f"torq-fallback dashboard on http://{args.host}:{args.port}/dashboard", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=2)  # fmt: skip
    manager.close()
    return 0


def register(commands: Any, command: Command) -> None:
    """Add ``serve``, ``keys`` and ``dashboard`` to the command's subcommands."""
    serve = command(
        commands, "serve", cmd_serve,
        "serve the chains as an OpenAI- and Anthropic-compatible HTTP gateway",
        "Serve POST /v1/chat/completions (OpenAI) and POST /v1/messages (Anthropic): the "
        "request's model names a chain (or an alias a chain declares); every reply carries "
        "the attempts. Without --keys it binds to loopback only (or give --no-auth). "
        "Workers share breakers, budgets and quotas through Redis when TORQ_REDIS_URL (or "
        "health: in providers.yaml) is set. SIGTERM drains requests in flight.",
        ["torq-fallback serve --port 8000",
         "torq-fallback serve --host 0.0.0.0 --keys keys.yaml --workers 4",
         "curl localhost:8000/v1/chat/completions -d '{\"model\": \"direct\", \"messages\": "
         "[{\"role\": \"user\", \"content\": \"Hi\"}]}'"],
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    serve.add_argument("--chains", metavar="DIR", help="chains directory (default: in use)")
    serve.add_argument("--keys", metavar="FILE", help="keys file (torq-fallback keys add)")
    serve.add_argument(
        "--no-auth", action="store_true", help="serve without keys beyond loopback too"
    )
    serve.add_argument(
        "--drain-timeout", type=float, default=30.0, metavar="S",
        help="on SIGTERM, seconds requests in flight may take to finish (default 30)",
    )  # fmt: skip
    serve.add_argument(
        "--max-in-flight", type=int, default=1024, metavar="N",
        help="requests one worker answers at once; beyond, 503 (default 1024)",
    )  # fmt: skip
    serve.add_argument(
        "--max-body-bytes", type=int, default=16 * 1024 * 1024, metavar="N",
        help="largest request body (default 16 MiB)",
    )  # fmt: skip

    keys = command(
        commands, "keys", cmd_keys,
        "make gateway keys (only their SHA-256 is stored) and list them",
        "Keys file of the gateway: `keys add NAME` makes a key, prints it once and adds its "
        "hash, chains and limits to the file (made readable by its owner only); `keys list` "
        "shows each key's name, chains and limits.",
        ["torq-fallback keys add team-a --keys keys.yaml --chains direct,research --rpm 60",
         "torq-fallback keys list --keys keys.yaml"],
    )  # fmt: skip
    keys.add_argument("action", choices=["add", "list"], help="add a key, or list them")
    keys.add_argument("name", nargs="?", metavar="NAME", help="the new key's name (add)")
    keys.add_argument("--keys", metavar="FILE", default="keys.yaml", help="keys file")
    keys.add_argument("--chains", help="chains it may use, comma-separated (default: all)")
    keys.add_argument("--rpm", type=int, help="requests per minute, at most")
    keys.add_argument("--tpm", type=int, help="tokens per minute, at most")
    keys.add_argument("--daily-usd", type=float, help="estimated cost per UTC day, at most")

    dashboard = command(
        commands, "dashboard", cmd_dashboard,
        "a live page of every chain: traffic, breakers, quotas and recent requests",
        "Serve the live dashboard (GET /dashboard) from a process of its own. With health in "
        "Redis (TORQ_REDIS_URL, or health: in providers.yaml) it shows the whole deployment: "
        "breakers and quotas from Redis, traffic and recent requests as every gateway worker "
        "publishes them. A gateway serves the same page at /dashboard itself; an application "
        "embedding the engine serves its own with engine.gateway.start_dashboard(manager).",
        ["torq-fallback dashboard --port 8001",
         "TORQ_REDIS_URL=redis://127.0.0.1:6379/0 torq-fallback dashboard"],
    )  # fmt: skip
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    dashboard.add_argument("--chains", metavar="DIR", help="chains directory (default: in use)")
    dashboard.add_argument("--keys", metavar="FILE", help="keys file: a key opens the page")
