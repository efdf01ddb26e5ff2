"""A loopback HTTP server that speaks the providers' wire protocols and follows a script.

Each provider gets a path prefix on one server (``http://127.0.0.1:PORT/deepseek``,
``.../openai``, ``.../claude``, ``.../ollama``, or any name); the rest of the path picks the
wire protocol (``/chat/completions``: OpenAI, ``/v1/messages``: Anthropic, ``/api/chat``:
Ollama). Every request takes the next behaviour of its provider's script; when a script
runs out, the provider answers (or, with ``cycle``, the script starts over).

Behaviours (``delay`` seconds before the headers may be added to any of them):

=================  ==========================================================================
``answer``         a normal reply (``text``, ``model``, ``tokens_in``, ``tokens_out``)
error presets      ``rate_limit`` (429), ``quota`` (429 insufficient_quota), ``balance`` (402),
                   ``auth`` (401), ``forbidden`` (403), ``model_not_found`` (404),
                   ``request_timeout`` (408), ``conflict`` (409), ``context_length`` (400),
                   ``bad_request`` (400), ``unprocessable`` (422), ``server_error`` (500),
                   ``bad_gateway`` (502), ``unavailable`` (503), ``gateway_timeout`` (504),
                   ``overloaded`` (529) -- each with the provider's real error body;
                   ``retry_after``, ``retry_after_ms``, ``retry_after_date``,
                   ``should_retry`` add those headers
``error``          any ``status`` with an optional raw ``body``
``content_filter`` a 200 whose answer was filtered (OpenAI); ``refusal`` a refusal (OpenAI,
                   Anthropic)
``tool_call``      a reply asking to call ``tool`` with ``arguments`` (each wire's format)
``stall``          headers, then nothing until the client gives up
``trickle``        the reply one byte every ``interval`` seconds
``cut``            headers and half the body, then the connection closes
``close``          the connection closes without any reply
``malformed``      a 200 that is not JSON; ``incomplete``: JSON without the answer
=================  ==========================================================================

Scripts are Python objects (`Script`, `Behaviour`) or YAML::

    deepseek:
      - rate_limit: {retry_after: 30}
    openai:
      - answer: {delay: 3}
    claude:
      - answer: "4"
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from email.utils import formatdate
from typing import Final

from engine.tools import simstream
from engine.tools.simreplies import (
    _answer,
    _error_body,
    _head,
)
from engine.tools.simscript import (
    PRESETS,
    Behaviour,
    Request,
    Script,
    _last_user_text,
    fake_key,
    load_script,
)

__all__ = ["PRESETS", "Behaviour", "Request", "Script", "Simulator", "load_script"]

_BUILTIN_ENV: Final = {
    "deepseek": ("DEEPSEEK_BASE_URL", "DEEPSEEK_API_KEY", ""),
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY", "/v1"),
    "claude": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", ""),
    "ollama": ("OLLAMA_HOST", None, ""),
}


# -- wire formats ------------------------------------------------------------------------

_WIRE_SUFFIX: Final = (
    ("/chat/completions", "openai"),
    ("/v1/messages", "anthropic"),
    ("/api/chat", "ollama"),
)


# What active health checks ask (the wires' model lists).
_PROBE_SUFFIXES: Final = ("/models", "/api/tags")


# -- the server --------------------------------------------------------------------------


class Simulator:
    """The loopback server. Use as a context manager, or `start` / `stop`.

    ``script`` is a `Script` or a mapping provider -> behaviours. ``host`` must be a
    loopback address; ``port`` 0 picks a free one. ``rate_limits`` makes providers rate
    limited deployments: provider -> requests allowed per ``rate_window`` seconds (a
    sliding window); one more is answered 429 with a Retry-After, and counted in
    ``limited``.
    """

    def __init__(
        self,
        script: Script | Mapping[str, Sequence[Behaviour]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: Mapping[str, int] | None = None,
        rate_window: float = 60.0,
    ) -> None:
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise ValueError(f"the simulator serves loopback only, not {host!r}")
        self.script = script if isinstance(script, Script) else Script(script)
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        #: Health checks asked (GET of a wire's model list), per provider: never requests.
        self.probes: dict[str, int] = {}
        #: Providers in an outage: every request and every health check gets a 503.
        self.down: set[str] = set()
        #: Connections open right now, and opened in all (to check clients close theirs).
        self.open_connections = 0
        self.total_connections = 0
        #: Requests whose client hung up while the reply was being delayed.
        self.hung_up = 0
        self.rate_limits = dict(rate_limits or {})
        self.rate_window = rate_window
        #: 429s sent for going over ``rate_limits``, per provider.
        self.limited: dict[str, int] = {}
        self._admitted: dict[str, collections.deque[float]] = {}
        #: Requests being answered right now, and the most there ever were at once.
        self.in_flight = 0
        self.peak_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    # lifecycle

    def start(self) -> Simulator:
        """Start serving on a background thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._run, name="torq-simulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() when it happens before binding
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # addresses

    def base_url(self, provider: str) -> str:
        """The base URL a provider named ``provider`` should use."""
        suffix = _BUILTIN_ENV.get(provider, ("", "", ""))[2]
        return f"http://{self.host}:{self.port}/{provider}{suffix}"

    def env(self, keys: bool = True) -> dict[str, str]:
        """Environment variables pointing the four built-in providers here (with fake keys)."""
        out: dict[str, str] = {}
        for name, (url_env, key_env, _) in _BUILTIN_ENV.items():
            out[url_env] = self.base_url(name)
            if keys and key_env:
                out[key_env] = fake_key(name)
        return out

    # requests

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_connections += 1
        self.total_connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            pass  # the simulator is stopping
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        provider, _, rest = path.lstrip("/").partition("/")
        if method == "GET" and ("/" + rest).endswith(_PROBE_SUFFIXES):
            return await self._health_check(writer, provider)
        wire = next((w for suffix, w in _WIRE_SUFFIX if ("/" + rest).endswith(suffix)), None)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if wire is None:
            payload = json.dumps({"error": f"no such endpoint: {path}"}).encode()
            writer.write(_head(404, {"content-type": "application/json"}, len(payload)) + payload)
            await writer.drain()
            return True
        behaviour = (
            Behaviour("unavailable")
            if provider in self.down
            else self._over_limit(provider) or self.script.take(provider, _last_user_text(body))
        )
        key_sent = bool(headers.get("authorization") or headers.get("x-api-key"))
        self.requests.append(Request(provider, path, wire, body, key_sent, behaviour.kind))
        model = (body or {}).get("model") if isinstance(body, dict) else None
        stream = isinstance(body, dict) and body.get("stream") is True
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if stream and behaviour.kind in ("answer", "tool_call"):
                if behaviour.delay:
                    await self._pause(reader, behaviour.delay)
                return await simstream.write_stream(
                    writer, reader, wire, behaviour, model or "sim-model", self._pause
                )
            return await self._respond(
                writer, reader, wire, provider, behaviour, model or "sim-model"
            )
        finally:
            self.in_flight -= 1

    async def _health_check(self, writer: asyncio.StreamWriter, provider: str) -> bool:
        """A wire's model list (what active health checks ask): 503 in an outage."""
        self.probes[provider] = self.probes.get(provider, 0) + 1
        status, data = (
            (503, {"error": {"message": f"{provider} is down", "type": "server_error"}})
            if provider in self.down
            else (200, {"object": "list", "data": [{"id": "sim-model", "object": "model"}]})
        )
        payload = json.dumps(data).encode()
        writer.write(_head(status, {"content-type": "application/json"}, len(payload)) + payload)
        await writer.drain()
        return True

    def outage(self, provider: str, down: bool = True) -> None:
        """Take ``provider`` down (every request and health check a 503), or back up."""
        (self.down.add if down else self.down.discard)(provider)

    async def _pause(self, reader: asyncio.StreamReader, seconds: float) -> None:
        """Wait ``seconds`` before replying, unless the client hangs up first (counted in
        ``hung_up``, and the connection ends): nothing else can arrive while a reply is
        due, so a read that returns is the client going away."""
        try:
            async with asyncio.timeout(seconds):
                data = await reader.read(1)
        except TimeoutError:
            return
        if data:  # a client that pipelines: not ours to judge; the reply is still due
            raise ConnectionError("the client sent more before its reply")
        self.hung_up += 1
        raise ConnectionError("the client hung up before its reply")

    def _over_limit(self, provider: str) -> Behaviour | None:
        """A 429 when ``provider`` is rate limited and over its limit, else None (counted)."""
        limit = self.rate_limits.get(provider)
        if limit is None:
            return None
        now = time.monotonic()
        times = self._admitted.setdefault(provider, collections.deque())
        while times and times[0] <= now - self.rate_window:
            times.popleft()
        if len(times) < limit:
            times.append(now)
            return None
        self.limited[provider] = self.limited.get(provider, 0) + 1
        return Behaviour("rate_limit", retry_after=max(times[0] + self.rate_window - now, 0.001))

    async def _respond(
        self,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        wire: str,
        provider: str,
        b: Behaviour,
        model: str,
    ) -> bool:
        if b.delay:
            await self._pause(reader, b.delay)
        if b.kind == "close":
            return False
        headers = {"content-type": "application/json", **b.headers}
        if b.retry_after is not None:
            headers["retry-after"] = f"{b.retry_after:g}"
        if b.retry_after_ms is not None:
            headers["retry-after-ms"] = str(b.retry_after_ms)
        if b.retry_after_date is not None:
            headers["retry-after"] = formatdate(time.time() + b.retry_after_date, usegmt=True)
        if b.should_retry is not None:
            headers["x-should-retry"] = "true" if b.should_retry else "false"
        status = 200
        if b.kind in PRESETS:
            status, data = _error_body(wire, provider, b, model)
            payload = json.dumps(data).encode()
        elif b.kind == "error":
            status = b.status or 500
            payload = (b.body if b.body is not None else json.dumps({"error": b.message})).encode()
        elif b.kind == "malformed":
            payload = b'{"id": "chatcmpl-sim", "choices": [{"message": {"content": "4"'
        elif b.kind == "incomplete":
            payload = json.dumps({"id": "sim", "object": "chat.completion"}).encode()
        else:
            payload = json.dumps(_answer(wire, b, b.model or model)).encode()

        writer.write(_head(status, headers, len(payload)))
        if b.kind == "stall":
            await writer.drain()
            await reader.read()  # until the client gives up and closes
            return False
        if b.kind == "cut":
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            return False
        if b.kind == "trickle":
            for index in range(len(payload)):
                writer.write(payload[index : index + 1])
                await writer.drain()
                await asyncio.sleep(b.interval)
            return True
        writer.write(payload)
        await writer.drain()
        return True


@contextlib.contextmanager
def environment(sim: Simulator, keys: bool = True) -> Iterator[dict[str, str]]:
    """Temporarily point the built-in providers at ``sim`` through the environment."""
    values = sim.env(keys)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


__all__ += ["environment", "fake_key"]
