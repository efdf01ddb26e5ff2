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

Scripts are Python objects (:class:`Script`, :class:`Behaviour`) or YAML::

    deepseek:
      - rate_limit: {retry_after: 30}
    openai:
      - answer: {delay: 3}
    claude:
      - answer: "4"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

from . import simstream
from .errors import ChainConfigError, Problem
from .loader import read_yaml

__all__ = ["PRESETS", "Behaviour", "Request", "Script", "Simulator", "load_script"]

_BUILTIN_ENV: Final = {
    "deepseek": ("DEEPSEEK_BASE_URL", "DEEPSEEK_API_KEY", ""),
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_KEY", "/v1"),
    "claude": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", ""),
    "ollama": ("OLLAMA_HOST", None, ""),
}

#: Error presets: name -> HTTP status.
PRESETS: Final[Mapping[str, int]] = {
    "rate_limit": 429,
    "quota": 429,
    "balance": 402,
    "auth": 401,
    "forbidden": 403,
    "model_not_found": 404,
    "request_timeout": 408,
    "conflict": 409,
    "context_length": 400,
    "bad_request": 400,
    "unprocessable": 422,
    "server_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "gateway_timeout": 504,
    "overloaded": 529,
}
_OTHER_KINDS: Final = frozenset(
    {"answer", "error", "content_filter", "refusal", "stall", "trickle", "cut", "close",
     "malformed", "incomplete", "tool_call"}
)  # fmt: skip
KINDS: Final = frozenset(PRESETS) | _OTHER_KINDS
# What a bare scalar means for each kind (`answer: "4"`, `error: 418`, `trickle: 0.2`).
_SCALAR_FIELD: Final = {
    "answer": "text",
    "error": "status",
    "trickle": "interval",
    "stall": "delay",
}


@dataclass(frozen=True)
class Behaviour:
    """What the simulator does with one request."""

    kind: str = "answer"
    text: str = "Hello from the simulator."
    model: str | None = None
    tokens_in: int = 12
    tokens_out: int = 7
    status: int | None = None
    body: str | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    retry_after_date: float | None = None
    should_retry: bool | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    interval: float = 0.05
    #: For ``tool_call``: the tool the model asks to call, and its arguments.
    tool: str = "get_weather"
    arguments: Mapping[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    #: Streamed replies (when the request asks to stream): the answer in ``chunks`` pieces,
    #: ``chunk_interval`` seconds apart, the first after ``first_token_delay``; and a fault
    #: after that many content pieces: the connection cut, the stream stalled, an error
    #: event, a garbled frame.
    chunks: int = 5
    chunk_interval: float = 0.0
    first_token_delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    error_after: int | None = None
    garble_after: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour {self.kind!r}; known: {', '.join(sorted(KINDS))}")
        if self.kind == "error" and self.status is None:
            raise ValueError("behaviour 'error' needs a status")
        if self.delay < 0 or self.interval < 0:
            raise ValueError("delay and interval must be 0 or more")


@dataclass(frozen=True)
class Request:
    """One request the simulator received (no secrets: only whether a key was sent)."""

    provider: str
    path: str
    wire: str
    body: Any
    key_sent: bool
    behaviour: str


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


class Script:
    """Per-provider lists of behaviours, played in order (deterministic).

    ``prompts`` maps a piece of a prompt to per-provider behaviours of its own: a request
    whose last user message contains it plays those, so replies follow the prompt, not
    the order in which requests happen to arrive.
    """

    def __init__(
        self,
        providers: Mapping[str, Sequence[Behaviour]] | None = None,
        *,
        cycle: bool = False,
        prompts: Mapping[str, Mapping[str, Sequence[Behaviour]]] | None = None,
    ) -> None:
        self.providers = {name: list(items) for name, items in (providers or {}).items()}
        self.cycle = cycle
        self._next = dict.fromkeys(self.providers, 0)
        self._prompts = {
            key: Script(per_provider, cycle=cycle) for key, per_provider in (prompts or {}).items()
        }

    def take(self, provider: str, prompt: str = "") -> Behaviour:
        """The behaviour for the next request to ``provider`` (about ``prompt``)."""
        for key, script in self._prompts.items():
            if key in prompt and provider in script.providers:
                return script.take(provider)
        items = self.providers.get(provider) or []
        index = self._next.get(provider, 0)
        self._next[provider] = index + 1
        if index < len(items):
            return items[index]
        if self.cycle and items:
            return items[index % len(items)]
        return Behaviour()


def behaviour_from(item: Any) -> Behaviour:
    """A behaviour from its YAML form: a name, or ``{name: scalar-or-mapping}``."""
    if isinstance(item, str):
        return Behaviour(kind=item)
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError("a behaviour is a name or a mapping with one name as its key")
    ((kind, value),) = item.items()
    if value is None:
        params: dict[str, Any] = {}
    elif isinstance(value, dict):
        params = dict(value)
    elif kind in _SCALAR_FIELD:
        params = {_SCALAR_FIELD[kind]: value}
    else:
        raise ValueError(f"'{kind}' takes a mapping of settings, not {value!r}")
    allowed = {f.name for f in fields(Behaviour)} - {"kind"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for '{kind}'")
    return Behaviour(kind=str(kind), **params)


def load_script(path: str | os.PathLike[str]) -> Script:
    """Read a YAML script; raise :class:`ChainConfigError` with file:line problems."""
    file = Path(path)
    data, values, _, problems = read_yaml(file, list_prefix=())
    if problems:
        raise ChainConfigError(problems)
    if not isinstance(data, dict):
        raise ChainConfigError([Problem(str(file), 1, 1, "", "expected provider: [behaviours]")])
    cycle = bool(data.pop("cycle", False))
    providers: dict[str, list[Behaviour]] = {}
    for name, items in data.items():
        line, column = values.get((str(name),), (0, 0))
        if not isinstance(items, list):
            problems.append(Problem(str(file), line, column, str(name), "expected a list"))
            continue
        providers[str(name)] = []
        for index, item in enumerate(items):
            try:
                providers[str(name)].append(behaviour_from(item))
            except (TypeError, ValueError) as exc:
                line, column = values.get((str(name), index), (line, column))
                problems.append(Problem(str(file), line, column, f"{name}[{index}]", str(exc)))
    if problems:
        raise ChainConfigError(problems)
    return Script(providers, cycle=cycle)


# -- wire formats ------------------------------------------------------------------------

_WIRE_SUFFIX: Final = (
    ("/chat/completions", "openai"),
    ("/v1/messages", "anthropic"),
    ("/api/chat", "ollama"),
)


def _tool_answer(wire: str, b: Behaviour, model: str) -> dict[str, Any]:
    arguments = dict(b.arguments)
    if wire == "openai":
        call = {
            "id": "call_sim_1",
            "type": "function",
            "function": {"name": b.tool, "arguments": json.dumps(arguments)},
        }
        return {
            "id": "chatcmpl-sim", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
            "usage": {"prompt_tokens": b.tokens_in, "completion_tokens": b.tokens_out},
        }  # fmt: skip
    if wire == "anthropic":
        return {
            "id": "msg_sim", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": "toolu_sim_1", "name": b.tool,
                         "input": arguments}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": b.tokens_in, "output_tokens": b.tokens_out},
        }  # fmt: skip
    return {
        "model": model, "created_at": "2026-01-01T00:00:00Z", "done": True,
        "message": {"role": "assistant", "content": "",
                    "tool_calls": [{"function": {"name": b.tool, "arguments": arguments}}]},
        "done_reason": "stop", "prompt_eval_count": b.tokens_in, "eval_count": b.tokens_out,
    }  # fmt: skip


def _answer(wire: str, b: Behaviour, model: str) -> dict[str, Any]:
    if b.kind == "tool_call":
        return _tool_answer(wire, b, model)
    if wire == "openai":
        finish: str = "stop"
        content: str | None = b.text
        refusal: str | None = None
        if b.kind == "content_filter":
            finish, content = "content_filter", ""
        elif b.kind == "refusal":
            content, refusal = None, b.message or "I can't help with that."
        return {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": b.tokens_in,
                "completion_tokens": b.tokens_out,
                "total_tokens": b.tokens_in + b.tokens_out,
            },
        }
    if wire == "anthropic":
        refused = b.kind == "refusal"
        return {
            "id": "msg_sim",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [] if refused else [{"type": "text", "text": b.text}],
            "stop_reason": "refusal" if refused else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": b.tokens_in, "output_tokens": b.tokens_out},
        }
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": b.text},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": b.tokens_in,
        "eval_count": b.tokens_out,
    }


_LOW_CREDIT: Final = "Your credit balance is too low to access the Anthropic API."


def _openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _error_body(wire: str, provider: str, b: Behaviour, model: str) -> tuple[int, Any]:
    """Status and body of an error preset, as the real provider writes them."""
    kind = b.kind
    status = b.status or PRESETS[kind]
    msg = b.message
    if wire == "anthropic":
        status = 400 if kind == "quota" else status
        anthropic = {
            "rate_limit": ("rate_limit_error",
                           "Number of request tokens has exceeded your per-minute rate limit."),
            "quota": ("invalid_request_error", _LOW_CREDIT),
            "balance": ("billing_error", _LOW_CREDIT),
            "auth": ("authentication_error", "invalid x-api-key"),
            "forbidden": ("permission_error",
                          "Your API key does not have permission to use the specified resource."),
            "model_not_found": ("not_found_error", f"model: {model}"),
            "context_length": ("invalid_request_error",
                               "prompt is too long: 215000 tokens > 200000 maximum"),
            "bad_request": ("invalid_request_error", "messages: at least one message is required"),
            "unprocessable": ("invalid_request_error", "Invalid request."),
            "request_timeout": ("timeout_error", "Request timed out."),
            "conflict": ("api_error", "Conflict."),
            "server_error": ("api_error", "Internal server error"),
            "bad_gateway": ("api_error", "Bad gateway"),
            "unavailable": ("api_error", "Service unavailable"),
            "gateway_timeout": ("api_error", "Gateway timeout"),
            "overloaded": ("overloaded_error", "Overloaded"),
        }  # fmt: skip
        type_, text = anthropic[kind]
        return status, _anthropic_error(type_, msg or text)
    if wire == "ollama":
        ollama = {
            "model_not_found": f"model '{model}' not found, try pulling it first",
            "unavailable": "server busy, please try again.  maximum pending requests exceeded",
            "context_length": "input length exceeds maximum context length",
        }
        return status, {"error": msg or ollama.get(kind, f"{kind.replace('_', ' ')}")}
    deepseek = provider == "deepseek"
    openai = {
        "rate_limit": (
            f"Rate limit reached for {model} on requests per min (RPM): Limit 500. "
            "Please try again in 1s.", "requests", "rate_limit_exceeded"),
        "quota": ("You exceeded your current quota, please check your plan and billing details.",
                  "insufficient_quota", "insufficient_quota"),
        "balance": ("Insufficient Balance", "unknown_error", "invalid_request_error"),
        "auth": ("Incorrect API key provided: sk-sim***1234. You can find your API key at "
                 "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                 "invalid_api_key"),
        "forbidden": ("You are not allowed to sample from this model", "invalid_request_error",
                      None),
        "model_not_found": (f"The model `{model}` does not exist or you do not have access to it.",
                            "invalid_request_error", "model_not_found"),
        "context_length": (
            f"This model's maximum context length is {65536 if deepseek else 128000} tokens. "
            "However, you requested 210000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "invalid_request_error" if deepseek else "context_length_exceeded"),
        "bad_request": ("Invalid request: messages must not be empty", "invalid_request_error",
                        None),
        "unprocessable": ("Invalid Parameters", "invalid_request_error", None),
        "request_timeout": ("Request timed out.", "timeout", None),
        "conflict": ("Conflict with a concurrent request.", "invalid_request_error", None),
        "server_error": ("The server had an error while processing your request. Sorry about that!",
                         "server_error", None),
        "bad_gateway": ("Bad gateway.", "server_error", None),
        "unavailable": ("Server overloaded" if deepseek else "The engine is currently overloaded, "
                        "please try again later", "server_error", None),
        "gateway_timeout": ("Gateway timeout.", "server_error", None),
        "overloaded": ("The server is overloaded.", "server_error", None),
    }  # fmt: skip
    text, type_, code = openai[kind]
    if kind == "overloaded":
        status = b.status or 503
    return status, _openai_error(msg or text, type_, code)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Site Overloaded" if status == 529 else "Unknown"


def _head(status: int, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", f"content-length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- the server --------------------------------------------------------------------------


class Simulator:
    """The loopback server. Use as a context manager, or :meth:`start` / :meth:`stop`.

    ``script`` is a :class:`Script` or a mapping provider -> behaviours. ``host`` must be a
    loopback address; ``port`` 0 picks a free one.
    """

    def __init__(
        self,
        script: Script | Mapping[str, Sequence[Behaviour]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise ValueError(f"the simulator serves loopback only, not {host!r}")
        self.script = script if isinstance(script, Script) else Script(script)
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        #: Connections open right now, and opened in all (to check clients close theirs).
        self.open_connections = 0
        self.total_connections = 0
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
                out[key_env] = f"sim-{name}-key"
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
        _method, path, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        provider, _, rest = path.lstrip("/").partition("/")
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
        behaviour = self.script.take(provider, _last_user_text(body))
        key_sent = bool(headers.get("authorization") or headers.get("x-api-key"))
        self.requests.append(Request(provider, path, wire, body, key_sent, behaviour.kind))
        model = (body or {}).get("model") if isinstance(body, dict) else None
        stream = isinstance(body, dict) and body.get("stream") is True
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if stream and behaviour.kind in ("answer", "tool_call"):
                if behaviour.delay:
                    await asyncio.sleep(behaviour.delay)
                return await self._stream(writer, reader, wire, behaviour, model or "sim-model")
            return await self._respond(
                writer, reader, wire, provider, behaviour, model or "sim-model"
            )
        finally:
            self.in_flight -= 1

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        wire: str,
        b: Behaviour,
        model: str,
    ) -> bool:
        """A streamed reply (chunked transfer), with the behaviour's stream fault."""
        tool = (b.tool, dict(b.arguments)) if b.kind == "tool_call" else None
        parts = simstream.frames(
            wire, b.text, b.model or model, b.chunks, (b.tokens_in, b.tokens_out), tool
        )
        head = (
            f"HTTP/1.1 200 OK\r\ncontent-type: {parts.content_type}\r\n"
            "transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        writer.write(head.encode("latin-1"))

        async def send(frame: bytes) -> None:
            writer.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            await writer.drain()

        for frame in parts.head:
            await send(frame)
        if b.first_token_delay:
            await asyncio.sleep(b.first_token_delay)
        for index, frame in enumerate(parts.content):
            if index == b.cut_after:
                return False  # the connection closes mid-stream
            if index == b.stall_after:
                await reader.read()  # nothing more, until the client gives up
                return False
            if index == b.error_after:
                await send(simstream.stream_error(wire))
                await send(b"")
                return True
            if index == b.garble_after:
                await send(simstream.garbled(wire))
                await send(b"")
                return True
            if index and b.chunk_interval:
                await asyncio.sleep(b.chunk_interval)
            await send(frame)
        for frame in parts.tail:
            await send(frame)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

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
            await asyncio.sleep(b.delay)
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


def demo_script() -> Script:
    """The scenario ``torq-fallback demo`` plays, mode by mode (direct, research,
    code_generation, composition, hierarchical): real fallbacks, a breaker that opens and
    is skipped, and one abort. Replies are chosen by prompt, so a different attempt timeout
    changes which attempts time out, never which answer a prompt gets."""
    return Script(
        prompts={
            "What is 2 + 2?": {  # direct
                # rate-limited for 30 s: deepseek's breaker opens, and every later chain
                # skips it (circuit_open, no call) instead of asking again
                "deepseek": [Behaviour("rate_limit", retry_after=30)],
                "openai": [Behaviour("answer", text="4.", delay=1.5)],  # slower than 1 s
                "claude": [Behaviour("answer", text="2 + 2 = 4.")],
            },
            "What do the sources say": {  # research
                "claude": [Behaviour("overloaded")],  # 529
                "openai": [Behaviour("malformed")],  # a reply that is not JSON
                "ollama": [Behaviour("answer", text="Three sources agree: the answer is 4.")],
            },
            "Write a Python function": {  # code_generation
                "claude": [Behaviour("context_length")],  # prompt too long
                "openai": [
                    Behaviour("answer", text="def add(a: int, b: int) -> int:\n    return a + b")
                ],
            },
            "Plan an essay": {  # composition
                "claude": [Behaviour("answer", text="Plan: outline, draft, review.")],
            },
            "Split this task": {  # hierarchical
                "claude": [Behaviour("refusal")],  # the model refuses: the chain aborts
            },
        },
        cycle=True,
    )


__all__ += ["demo_script"]


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


__all__ += ["environment"]
