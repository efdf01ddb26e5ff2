"""Provider objects an application registers, built on the official ``openai`` and
``anthropic`` SDKs (sync and async, ``max_retries=0``), on httpx (sync and async), requests
and aiohttp, fetch the same error replies over loopback as the engine's own HTTP provider:
every recorded error reply of ``tests/corpus``, replies in the vendors' documented shapes,
and transport faults. For each, the attempt records and the chain's path equal those of the
built-in provider on the same bytes.

aiohttp's ``raise_for_status()`` keeps the status and headers, not the body: its verdict is
the built-in provider's on the same status and headers with an empty body (documented in
docs/providers.md)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeClock, closed_port
from hostile import HostileServer
from replay import Case, ReplayServer, load_cases

from engine import LLMManager
from engine.providers.settings import BUILTIN_SETTINGS

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
requests = pytest.importorskip("requests")
aiohttp = pytest.importorskip("aiohttp")
httpx = pytest.importorskip("httpx")

KEY = "sk-foreign-0123456789abcdef"
# wire -> the built-in provider that speaks it
BUILTIN = {"openai": "openai", "compatible": "deepseek", "anthropic": "claude", "ollama": "ollama"}
ENV = {"openai": "OPENAI_BASE_URL", "deepseek": "DEEPSEEK_BASE_URL",
       "claude": "ANTHROPIC_BASE_URL", "ollama": "OLLAMA_HOST"}  # fmt: skip
KEYS = {"openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "claude": "ANTHROPIC_API_KEY"}
# Where each wire posts, after its base URL (the SDKs append theirs: /chat/completions for
# openai's with a /v1 base, /v1/messages for anthropic's).
PATHS = {"openai": "/v1/chat/completions", "compatible": "/v1/chat/completions",
         "anthropic": "/v1/messages", "ollama": "/api/chat"}  # fmt: skip


def _synth(wire: str, cid: str, status: int, body: str, expect: str, **headers: str) -> Case:
    return Case(
        id=cid, wire=wire, source="the vendor's documented error envelope (synthesised)",
        status=status, headers={"content-type": "application/json", **headers},
        body=body.encode(), chunks=None, hold=False, expect={"outcome": expect},
    )  # fmt: skip


def _oa(message: str, type_: str = "invalid_request_error", code: str | None = None) -> str:
    import json

    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def _an(type_: str, message: str) -> str:
    import json

    return json.dumps({"type": "error", "error": {"type": type_, "message": message}})


SYNTHESISED = [
    _synth("openai", "s-oa-429-retry-after", 429, _oa("Rate limit reached for gpt-4o", "requests", "rate_limit_exceeded"), "retryable:429", **{"retry-after": "3"}),
    _synth("openai", "s-oa-429-retry-after-ms", 429, _oa("Rate limit reached", "tokens", "rate_limit_exceeded"), "retryable:429", **{"retry-after-ms": "1500"}),
    _synth("openai", "s-oa-500-no-retry", 500, _oa("The server had an error", "server_error"), "retryable:500", **{"x-should-retry": "false"}),
    _synth("openai", "s-oa-502", 502, _oa("Bad gateway", "server_error"), "retryable:502"),
    _synth("openai", "s-oa-503", 503, _oa("The engine is currently overloaded", "server_error"), "retryable:503"),
    _synth("openai", "s-oa-504", 504, _oa("Gateway timeout", "server_error"), "retryable:504"),
    _synth("openai", "s-oa-529", 529, _oa("Overloaded", "overloaded_error"), "retryable:529"),
    _synth("openai", "s-oa-408", 408, _oa("Request timeout", "timeout"), "retryable:408"),
    _synth("openai", "s-oa-409", 409, _oa("Conflict", "conflict"), "retryable:409"),
    _synth("openai", "s-oa-403", 403, _oa("Country not supported", "permission_denied", "unsupported_country_region_territory"), "retryable:403"),
    _synth("openai", "s-oa-402", 402, _oa("Payment required", "billing_error"), "retryable:insufficient_quota"),
    _synth("openai", "s-oa-400-policy", 400, _oa("Your request was rejected by our safety system", "invalid_request_error", "content_policy_violation"), "non_retryable:content_filter"),
    _synth("openai", "s-oa-400-invalid", 400, _oa("Invalid value for 'temperature'", "invalid_request_error", "invalid_value"), "non_retryable:400"),
    _synth("compatible", "s-mistral-400-context", 400, _oa("Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length"), "retryable:context_length_exceeded"),
    _synth("compatible", "s-groq-400-reduce", 400, _oa("Please reduce the length of the messages or completion.", "invalid_request_error", "context_length_exceeded"), "retryable:context_length_exceeded"),
    _synth("compatible", "s-deepseek-429", 429, _oa("Rate Limit Reached", "rate_limit_error"), "retryable:429", **{"retry-after": "1"}),
    _synth("anthropic", "s-an-529", 529, _an("overloaded_error", "Overloaded"), "retryable:529"),
    _synth("anthropic", "s-an-429", 429, _an("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), "retryable:429", **{"retry-after": "4"}),
    _synth("anthropic", "s-an-500", 500, _an("api_error", "Internal server error"), "retryable:500"),
    _synth("anthropic", "s-an-400-invalid", 400, _an("invalid_request_error", "messages: text content blocks must be non-empty"), "non_retryable:400"),
    _synth("anthropic", "s-an-402", 402, _an("billing_error", "Your credit balance is too low"), "retryable:insufficient_quota"),
    _synth("ollama", "s-ol-503", 503, '{"error":"server busy, please try again. maximum pending requests exceeded"}', "retryable:503"),
    _synth("ollama", "s-ol-400-context", 400, '{"error":"input length exceeds the context length"}', "retryable:context_length_exceeded"),
]  # fmt: skip

RECORDED = [c for c in load_cases() if c.status >= 400]
CASES = RECORDED + SYNTHESISED
# An empty body with the same status and headers: what aiohttp's bodiless error allows.
BODILESS = [dataclasses.replace(c, id=f"{c.id}~bodiless", body=b"{}") for c in CASES]


@pytest.fixture(scope="module")
def replay():
    server = ReplayServer(CASES + BODILESS)
    yield server
    server.close()


# -- the application's own provider objects, one per client --------------------------------


def _body(wire: str, model: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hi"}]
    if wire == "anthropic":
        return {"model": model, "max_tokens": 64, "messages": messages}
    return {"model": model, "messages": messages, **({"stream": False} if wire == "ollama" else {})}


def _headers(wire: str) -> dict[str, str]:
    if wire == "anthropic":
        return {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {KEY}"}


def _own(timeout: float) -> float:
    """The client's own timeout: a little inside the attempt's, as a provider that honours
    the timeout it is given sets it (so that its own timeout is the one that fires)."""
    return timeout * 0.8


class OpenAISDK:
    def __init__(self, base: str, wire: str, model: str) -> None:
        self.model = model
        self.client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)

    def generate_response(self, *, prompt: str, timeout: float) -> str:
        reply = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], timeout=_own(timeout)
        )
        return reply.choices[0].message.content


class AsyncOpenAISDK(OpenAISDK):
    def __init__(self, base: str, wire: str, model: str) -> None:
        self.model = model
        self.client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)

    async def generate_response(self, *, prompt: str, timeout: float) -> str:  # type: ignore[override]
        reply = await self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], timeout=_own(timeout)
        )
        return reply.choices[0].message.content


class AnthropicSDK:
    def __init__(self, base: str, wire: str, model: str) -> None:
        self.model = model
        self.client = anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0)

    def generate_response(self, *, prompt: str, timeout: float) -> str:
        reply = self.client.messages.create(
            model=self.model, max_tokens=64, messages=[{"role": "user", "content": prompt}],
            timeout=_own(timeout),
        )  # fmt: skip
        return reply.content[0].text


class AsyncAnthropicSDK(AnthropicSDK):
    def __init__(self, base: str, wire: str, model: str) -> None:
        self.model = model
        self.client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)

    async def generate_response(self, *, prompt: str, timeout: float) -> str:  # type: ignore[override]
        reply = await self.client.messages.create(
            model=self.model, max_tokens=64, messages=[{"role": "user", "content": prompt}],
            timeout=_own(timeout),
        )  # fmt: skip
        return reply.content[0].text


class _Plain:
    def __init__(self, base: str, wire: str, model: str) -> None:
        self.model, self.wire_name = model, wire
        self.url = base + PATHS[wire]


class HttpxSync(_Plain):
    def generate_response(self, *, prompt: str, timeout: float) -> str:
        reply = httpx.post(self.url, json=_body(self.wire_name, self.model),
                           headers=_headers(self.wire_name), timeout=_own(timeout))  # fmt: skip
        reply.raise_for_status()
        return str(reply.json())


class HttpxAsync(_Plain):
    async def generate_response(self, *, prompt: str, timeout: float) -> str:
        async with httpx.AsyncClient(timeout=_own(timeout)) as client:
            reply = await client.post(self.url, json=_body(self.wire_name, self.model),
                                      headers=_headers(self.wire_name))  # fmt: skip
        reply.raise_for_status()
        return str(reply.json())


class Requests(_Plain):
    def generate_response(self, *, prompt: str, timeout: float) -> str:
        reply = requests.post(self.url, json=_body(self.wire_name, self.model),
                              headers=_headers(self.wire_name), timeout=_own(timeout))  # fmt: skip
        reply.raise_for_status()
        return str(reply.json())


class Aiohttp(_Plain):
    async def generate_response(self, *, prompt: str, timeout: float) -> str:
        # By phase, as the engine times them (a total timeout is a plain TimeoutError).
        limit = aiohttp.ClientTimeout(sock_connect=_own(timeout), sock_read=_own(timeout))
        async with (
            aiohttp.ClientSession(timeout=limit) as session,
            session.post(
                self.url, json=_body(self.wire_name, self.model), headers=_headers(self.wire_name)
            ) as reply,
        ):
            reply.raise_for_status()
            return str(await reply.json())


CLIENTS = {
    "openai-sdk": OpenAISDK, "openai-sdk-async": AsyncOpenAISDK,
    "anthropic-sdk": AnthropicSDK, "anthropic-sdk-async": AsyncAnthropicSDK,
    "httpx": HttpxSync, "httpx-async": HttpxAsync, "requests": Requests, "aiohttp": Aiohttp,
}  # fmt: skip
FOR_WIRE = {
    "openai": ["openai-sdk", "openai-sdk-async", "httpx", "httpx-async", "requests", "aiohttp"],
    "compatible": ["openai-sdk", "openai-sdk-async", "httpx", "requests", "aiohttp"],
    "anthropic": ["anthropic-sdk", "anthropic-sdk-async", "httpx", "httpx-async", "requests", "aiohttp"],
    "ollama": ["httpx", "httpx-async", "requests", "aiohttp"],
}  # fmt: skip


class Backup:
    model = "backup-model"

    def generate_response(self, *, prompt: str, timeout: float) -> str:
        return "the backup answered"


# -- running one chain both ways -----------------------------------------------------------

COMPARED = ("provider", "model", "status", "error_category", "error_code", "category", "state",
            "retry", "retry_after_ms", "http_status", "next", "message")  # fmt: skip


def _chains(folder: Path, name: str, timeout: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yaml").write_text(
        f"deadline: 600\ndefaults: {{timeout: {timeout}, backoff_max: 30}}\n"
        f"steps:\n  - {{provider: {name}, retries: 1}}\n  - backup\n",
        encoding="utf-8",
    )
    return folder


def _run(folder: Path, monkeypatch, name: str, base: str, provider: Any = None) -> list[dict]:
    """The attempts of one request through [name (one retry), backup]: the built-in provider
    when ``provider`` is None, else the application's object registered under ``name``."""
    monkeypatch.setenv(ENV[name], base)
    if name in KEYS:
        monkeypatch.setenv(KEYS[name], KEY)
    objects = {"backup": Backup()}
    if provider is not None:
        objects[name] = provider
    clock = FakeClock()
    manager = LLMManager({"chains_dir": str(folder), "providers": objects}, runtime=clock.runtime())
    try:
        if provider is not None and asyncio.iscoroutinefunction(provider.generate_response):
            _, meta = asyncio.run(manager.agenerate_response("hi"))
        else:
            _, meta = manager.generate_response("hi")
    finally:
        manager.close()
    return [{k: a.get(k) for k in COMPARED} for a in meta.provider_attempts]


_REFERENCE: dict[tuple[str, str], list[dict]] = {}


def _reference(tmp_path_factory, monkeypatch, case_id: str, wire: str, base: str) -> list[dict]:
    key = (case_id, wire)
    if key not in _REFERENCE:
        folder = _chains(tmp_path_factory.mktemp("ref"), BUILTIN[wire], 5)
        _REFERENCE[key] = _run(folder, monkeypatch, BUILTIN[wire], base)
    return _REFERENCE[key]


PAIRS = [(case, client) for case in CASES for client in FOR_WIRE[case.wire]]


@pytest.mark.parametrize(("case", "client"), PAIRS, ids=[f"{c.id}-{k}" for c, k in PAIRS])
def test_an_error_reply_reads_as_the_builtin_provider_reads_it(
    replay, case, client, tmp_path, tmp_path_factory, monkeypatch
):
    name = BUILTIN[case.wire]
    model = BUILTIN_SETTINGS[name].model
    bodiless = client == "aiohttp"
    reference_id = f"{case.id}~bodiless" if bodiless else case.id
    expected = _reference(tmp_path_factory, monkeypatch, reference_id, case.wire,
                          replay.url(reference_id))  # fmt: skip
    provider = CLIENTS[client](replay.url(case.id), case.wire, model)
    got = _run(_chains(tmp_path, name, 5), monkeypatch, name, replay.url(case.id), provider)
    if bodiless:  # the status and headers' verdict; the message says the body was not read
        for attempt in got:
            if attempt["status"] == "failed":
                assert attempt["message"].endswith("(the reply's body was not read)")
        got = [{**a, "message": None} for a in got]
        expected = [{**a, "message": None} for a in expected]
    assert got == expected
    if not bodiless:
        outcome = case.expect["outcome"]
        assert f"{got[0]['category']}:{got[0]['error_code']}" == outcome


# -- transport faults ------------------------------------------------------------------------


def _silent(conn: socket.socket, request: bytes) -> None:
    conn.settimeout(3)  # never answers: waits until the client gives up and hangs up
    with contextlib.suppress(OSError):
        conn.recv(1)


def _hang_up(conn: socket.socket, request: bytes) -> None:
    conn.close()  # reads the request, answers nothing


def _cut(conn: socket.socket, request: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                 b"content-length: 400\r\n\r\n{\"id\": \"x\", \"cho")  # fmt: skip
    conn.close()


FAULTS = {
    "refused": ("connect_error", None),
    "dns": ("connect_error", None),
    "connect_timeout": ("connect_timeout", None),
    "read_timeout": ("read_timeout", _silent),
    "hang_up": ("truncated_response", _hang_up),
    "cut_body": ("truncated_response", _cut),
}
FAULT_CLIENTS = ["openai-sdk", "openai-sdk-async", "anthropic-sdk", "httpx", "httpx-async",
                 "requests", "aiohttp"]  # fmt: skip
FAULT_WIRE = {"anthropic-sdk": "anthropic"}


@pytest.mark.parametrize("client", FAULT_CLIENTS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_transport_fault_reads_as_the_builtin_provider_reads_it(
    fault, client, black_hole, tmp_path, monkeypatch
):
    code, play = FAULTS[fault]
    wire = FAULT_WIRE.get(client, "openai")
    name = BUILTIN[wire]
    model = BUILTIN_SETTINGS[name].model
    server = HostileServer(play) if play is not None else None
    with server if server is not None else contextlib.nullcontext():
        base = {
            "refused": f"http://127.0.0.1:{closed_port()}",
            "dns": "http://no-such-host.invalid",
            "connect_timeout": f"http://127.0.0.1:{black_hole}",
        }.get(fault) or server.url
        folder = _chains(tmp_path / "ref", name, 0.5)
        expected = _run(folder, monkeypatch, name, base)
        provider = CLIENTS[client](base, wire, model)
        got = _run(_chains(tmp_path / "app", name, 0.5), monkeypatch, name, base, provider)
    verdict = ("status", "error_category", "error_code", "category", "state", "retry", "next")
    assert [{k: a[k] for k in verdict} for a in got] == [
        {k: a[k] for k in verdict} for a in expected
    ]
    assert got[0]["error_code"] == code
    assert got[0]["message"].startswith(f"{name}: ")
