"""Wire formats at the unit level, through httpx.MockTransport: request shapes, reply
parsing, header handling, transport errors, and secrets kept out of every message."""

from __future__ import annotations

import json
from email.utils import formatdate

import httpx
import pytest

from engine import AIResponseError, AITimeoutError, ProviderError
from engine.providers.http import HTTPProvider
from engine.providers.mapping import RETRY_AFTER_CAP, redact, retry_after
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS, ProviderSettings

SECRET = "sk-test-DISTINCTIVE-0123456789abcdef"


def provider(name: str, handler, env: dict[str, str] | None = None) -> HTTPProvider:
    settings = BUILTIN_SETTINGS[name]
    environ = {settings.api_key_env: SECRET} if settings.api_key_env else {}
    environ.update(env or {})
    return HTTPProvider(
        resolve(settings, environ),
        transport=httpx.MockTransport(handler),
        async_transport=httpx.MockTransport(handler),
    )


def reply(status: int, body, headers=None):
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers or {})

    return handler


def test_openai_request_shape_and_reply():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "model": "gpt-4.1-mini-2025",
                "choices": [{"message": {"content": "4"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1},
            },
        )

    completion = provider("openai", handler).generate_response(prompt="2+2?", timeout=5)
    (request,) = seen
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(request.content) == {
        "model": "gpt-4.1-mini",
        "messages": [{"role": "user", "content": "2+2?"}],
    }
    assert (completion.text, completion.model, completion.tokens_total) == (
        "4",
        "gpt-4.1-mini-2025",
        6,
    )


def test_anthropic_request_shape_and_reply():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "model": "claude-x",
                "content": [{"type": "text", "text": "4"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 9, "output_tokens": 2},
            },
        )

    completion = provider("claude", handler).generate_response(
        prompt="2+2?", timeout=5, model="claude-opus"
    )
    request = seen[0]
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == SECRET
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(request.content)
    assert body["model"] == "claude-opus" and body["max_tokens"] > 0
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("4", 9, 2)


def test_ollama_host_without_scheme_and_no_key():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"model": "llama3.2", "message": {"content": "4"}})

    p = provider("ollama", handler, {"OLLAMA_HOST": "0.0.0.0:11434"})
    assert p.generate_response(prompt="hi", timeout=5).text == "4"
    assert str(seen[0].url) == "http://0.0.0.0:11434/api/chat"
    assert "authorization" not in seen[0].headers
    assert json.loads(seen[0].content)["stream"] is False


@pytest.mark.parametrize(
    ("name", "status", "body", "kind", "code"),
    [
        ("openai", 429, {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}}, ProviderError, "429"),
        ("openai", 429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "quota"}}, ProviderError, "insufficient_quota"),
        ("openai", 400, {"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "long"}}, ProviderError, "context_length_exceeded"),
        ("openai", 400, {"error": {"type": "invalid_request_error", "code": "content_policy_violation", "message": "no"}}, AIResponseError, "content_filter"),
        ("openai", 404, {"error": {"type": "invalid_request_error", "code": "model_not_found", "message": "nf"}}, ProviderError, "404"),
        ("deepseek", 402, {"error": {"message": "Insufficient Balance"}}, ProviderError, "insufficient_quota"),
        ("deepseek", 400, {"error": {"message": "This model's maximum context length is 65536 tokens."}}, ProviderError, "context_length_exceeded"),
        ("deepseek", 422, {"error": {"message": "Invalid Parameters"}}, AIResponseError, "422"),
        ("claude", 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, ProviderError, "529"),
        ("claude", 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 1 > 0"}}, ProviderError, "context_length_exceeded"),
        ("claude", 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low"}}, ProviderError, "insufficient_quota"),
        ("claude", 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, ProviderError, "401"),
        ("ollama", 404, {"error": "model 'x' not found, try pulling it first"}, ProviderError, "404"),
        ("ollama", 503, {"error": "server busy"}, ProviderError, "503"),
        ("openai", 500, b"<html>upstream error</html>", ProviderError, "500"),
        ("openai", 302, b"", ProviderError, "http_302"),
    ],
)  # fmt: skip
def test_error_replies(name, status, body, kind, code):
    with pytest.raises(kind) as caught:
        provider(name, reply(status, body)).generate_response(prompt="p", timeout=5)
    assert type(caught.value) is kind and caught.value.code == code
    assert caught.value.provider == name
    assert f"{name}: HTTP {status}" in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),
        ({"retry-after": formatdate(1_000_030, usegmt=True)}, 30.0),
        ({"retry-after": "86400"}, RETRY_AFTER_CAP),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers, expected):
    assert retry_after(httpx.Headers(headers), now=1_000_000) == expected


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_x_should_retry_is_carried(value, expected):
    handler = reply(401, {"error": {"message": "x"}}, {"x-should-retry": value})
    with pytest.raises(ProviderError) as caught:
        provider("openai", handler).generate_response(prompt="p", timeout=5)
    assert caught.value.should_retry is expected


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), ProviderError, "connect_error"),
        (httpx.ConnectError("[Errno 111] Connection refused"), ProviderError, "connect_error"),
        (httpx.ConnectTimeout("timed out"), AITimeoutError, "connect_timeout"),
        (httpx.ReadTimeout("timed out"), AITimeoutError, "read_timeout"),
        (httpx.RemoteProtocolError("peer closed connection"), ProviderError, "truncated_response"),
        (httpx.UnsupportedProtocol("bad scheme"), ProviderError, "UnsupportedProtocol"),
    ],
)  # fmt: skip
async def test_transport_errors(exc, kind, code):
    def handler(request):
        raise exc

    for call in ("sync", "async"):
        p = provider("openai", handler)
        with pytest.raises(kind) as caught:
            if call == "sync":
                p.generate_response(prompt="p", timeout=5)
            else:
                await p.agenerate_response(prompt="p", timeout=5)
        assert caught.value.code == code
        assert caught.value.__cause__ is exc


def test_missing_key_is_not_configured_and_sends_nothing():
    sent = []
    settings = BUILTIN_SETTINGS["openai"]
    p = HTTPProvider(resolve(settings, {}), transport=httpx.MockTransport(sent.append))
    assert not p.configured
    with pytest.raises(ProviderError) as caught:
        p.generate_response(prompt="p", timeout=5)
    assert caught.value.code == "not_configured" and "OPENAI_API_KEY is not set" in str(
        caught.value
    )
    assert sent == []


def test_secrets_never_reach_messages():
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}. Bearer {SECRET}"}}
    with pytest.raises(ProviderError) as caught:
        provider("openai", reply(401, echo)).generate_response(prompt="p", timeout=5)
    assert SECRET not in str(caught.value) and "[redacted]" in str(caught.value)
    assert "sk-" not in redact("key sk-abcdef123456 here", [])


def test_header_values_read_the_environment_and_count_as_secrets():
    settings = ProviderSettings(
        "gateway", "openai", "https://gw.example/v1", "m", headers={"X-Gw-Auth": "${GW_TOKEN}"}
    )
    resolved = resolve(settings, {"GW_TOKEN": "tok-DISTINCT-42"})
    assert resolved.headers == {"X-Gw-Auth": "tok-DISTINCT-42"}
    assert "tok-DISTINCT-42" in resolved.secrets


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (b"not json", ProviderError, "malformed_response"),
        ({"id": "x"}, ProviderError, "malformed_response"),
        ({"choices": []}, ProviderError, "malformed_response"),
        ({"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]}, AIResponseError, "content_filter"),
        ({"choices": [{"message": {"content": None, "refusal": "No."}}]}, AIResponseError, "refusal"),
    ],
)  # fmt: skip
def test_bad_success_bodies(body, kind, code):
    with pytest.raises(kind) as caught:
        provider("openai", reply(200, body)).generate_response(prompt="p", timeout=5)
    assert caught.value.code == code


def test_threads_racing_on_a_new_provider_leave_no_connection_open_after_close():
    import threading
    import time

    from engine.tools.simulator import Behaviour, Script, Simulator

    with Simulator(Script({"openai": [Behaviour("answer", delay=0.02)]}, cycle=True)) as sim:
        settings = BUILTIN_SETTINGS["openai"]
        env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": sim.base_url("openai")}
        p = HTTPProvider(resolve(settings, env))
        barrier = threading.Barrier(8)
        answers = []

        def worker():
            barrier.wait()
            answers.append(p.generate_response(prompt="p", timeout=5).text)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.close()
        for _ in range(100):  # the server notices closed sockets asynchronously
            if sim.open_connections == 0:
                break
            time.sleep(0.01)
        assert len(answers) == 8
        assert sim.open_connections == 0
