"""Hostile servers: every attempt ends in time and in bounded memory, keys never leak, not
even in part, and replies that cannot be read keep their HTTP status. Real sockets only."""

from __future__ import annotations

import functools
import json
import logging
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import httpx
import pytest
from helpers import ROOT
from hostile import HostileServer, head, reply, trickle

from engine import LLMManager
from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS

KEY = "sk-proj-HOSTILEkey0123456789abcdefTAIL"
ANSWER = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}], "model": "m"}


def openai_at(url: str, key: str = KEY, **env: str) -> HTTPProvider:
    settings = BUILTIN_SETTINGS["openai"]
    return HTTPProvider(resolve(settings, {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": url, **env}))


def key_parts(key: str, size: int = 8) -> list[str]:
    return [key[i : i + size] for i in range(len(key) - size + 1)]


def assert_no_part_of(key: str, *texts: str) -> None:
    for text in texts:
        for part in key_parts(key):
            assert part not in text, f"{part!r} of the key leaked into {text[:200]!r}"


# -- 1. a true deadline on the sync path ------------------------------------------------------


@pytest.mark.parametrize("call", ["sync", "async"])
def test_trickled_status_line_and_headers_end_at_the_timeout(call):
    status = head(200, {"content-type": "application/json", "x-pad": "y" * 200}, 10)
    with HostileServer(trickle(status, 0.1, lambda: server.stopped)) as server:
        manager = LLMManager(config={"providers": {}})
        manager.register_provider("hostile", openai_at(server.url + "/v1"))
        started = time.monotonic()
        if call == "sync":
            _text, meta = manager.generate_response("hi", provider="hostile", timeout=1)
        else:
            import asyncio

            async def go():
                async with manager:
                    return await manager.agenerate_response("hi", provider="hostile", timeout=1)

            _text, meta = asyncio.run(go())
        elapsed = time.monotonic() - started
        manager.close()
    assert elapsed < 3, f"took {elapsed:.1f}s for a 1s timeout"
    attempt = meta.provider_attempts[0]
    assert (attempt["category"], attempt["error_code"]) == ("timeout", "read_timeout")


def test_trickled_body_ends_at_the_timeout_sync():
    body = json.dumps(ANSWER).encode()

    def play(conn, request):
        conn.sendall(head(200, None, len(body)))
        trickle(body, 0.1, lambda: server.stopped)(conn, request)

    with HostileServer(play) as server:
        provider = openai_at(server.url + "/v1")
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            provider.generate_response(prompt="hi", timeout=1)
        elapsed = time.monotonic() - started
        provider.close()
    assert elapsed < 3
    assert getattr(caught.value, "code", None) == "attempt_timeout"


def test_trickled_tls_handshake_ends_at_the_timeout_sync():
    record = b"\x16\x03\x03\x40\x00" + b"\x02" * 400  # a handshake record, arriving slowly
    with HostileServer(trickle(record, 0.05, lambda: server.stopped)) as server:
        url = server.url.replace("http://", "https://") + "/v1"
        provider = openai_at(url)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            provider.generate_response(prompt="hi", timeout=1)
        elapsed = time.monotonic() - started
        provider.close()
    assert elapsed < 3
    assert getattr(caught.value, "code", None) in ("connect_timeout", "read_timeout")


# -- 2. bounded replies ---------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    sys.path.insert(0, {root!r})
    from engine.providers.http import HTTPProvider
    from engine.providers.resolved import resolve
    from engine.providers.settings import BUILTIN_SETTINGS
    env = {{"OPENAI_API_KEY": "sk-child-key-123456", "OPENAI_BASE_URL": sys.argv[1]}}
    provider = HTTPProvider(resolve(BUILTIN_SETTINGS["openai"], env))
    codes = []
    try:
        provider.generate_response(prompt="hi", timeout=10)
        codes.append("success")
    except Exception as exc:
        codes.append(getattr(exc, "code", type(exc).__name__))
    async def go():
        try:
            await provider.agenerate_response(prompt="hi", timeout=10)
            codes.append("success")
        except Exception as exc:
            codes.append(getattr(exc, "code", type(exc).__name__))
        await provider.aclose()
    asyncio.run(go())
    # VmHWM, not ru_maxrss: the latter carries the parent's peak over fork and exec.
    status = open("/proc/self/status").read()
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({{"codes": codes, "peak_mb": peak_mb}}))
    """
)


def _endless(conn: socket.socket, request: bytes) -> None:
    conn.sendall(head(200, {"content-type": "application/json"}))  # no length: until close
    chunk = b"x" * 65536
    while True:
        conn.sendall(chunk)


def _big(conn: socket.socket, request: bytes) -> None:
    text = "a" * (50 * 1024 * 1024)
    body = json.dumps({**ANSWER, "choices": [{"message": {"content": text}}]}).encode()
    conn.sendall(head(200, None, len(body)) + body)


@functools.cache
def _bomb_body() -> bytes:
    """A gzip body of ~250 KB that inflates to 256 MiB (made once, in pieces)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [packer.compress(b"[")]
    block = b" " * (1 << 20)
    parts.extend(packer.compress(block) for _ in range(256))
    parts.append(packer.compress(b"]") + packer.flush())
    return b"".join(parts)


def _bomb(conn: socket.socket, request: bytes) -> None:
    body = _bomb_body()
    conn.sendall(head(200, {"content-type": "application/json", "content-encoding": "gzip"},
                      len(body)) + body)  # fmt: skip


@pytest.mark.parametrize("play", [_big, _endless, _bomb], ids=["50MB", "endless", "gzip-bomb"])
def test_oversized_replies_fail_as_response_too_large_in_bounded_memory(play):
    with HostileServer(play) as server:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD.format(root=str(ROOT)), server.url + "/v1"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["codes"] == ["response_too_large", "response_too_large"]
    assert result["peak_mb"] < 150, result  # not gigabytes


def test_max_response_bytes_is_declared_per_provider(tmp_path: Path):
    body = json.dumps({**ANSWER, "choices": [{"message": {"content": "z" * 5000}}]}).encode()
    with HostileServer(reply(200, body)) as server:
        folder = tmp_path / "chains"
        folder.mkdir()
        (folder / "default.yaml").write_text("steps: [tight, roomy]\n")
        (folder / "providers.yaml").write_text(
            "providers:\n"
            "  tight:\n    kind: openai\n    base_url: " + server.url + "\n    model: m\n"
            "    max_response_bytes: 4096\n"
            "  roomy:\n    kind: openai\n    base_url: " + server.url + "\n    model: m\n"
        )
        with LLMManager(config={"chains_dir": str(folder)}) as manager:
            text, meta = manager.generate_response("hi", timeout=10)
    first, second = meta.provider_attempts
    assert (first["category"], first["error_code"]) == ("retryable", "response_too_large")
    assert first["http_status"] == 200
    assert second["status"] == "success" and text == "z" * 5000


def test_max_response_bytes_is_validated(tmp_path: Path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  openai:\n    max_response_bytes: 10\n")
    settings, problems = check_providers_file(path)
    assert settings is None
    assert [(p.line, p.field) for p in problems] == [(3, "providers.openai.max_response_bytes")]


# -- 5. keys never leak, not even in part -------------------------------------------------------


def test_a_key_with_a_newline_is_not_configured_and_never_quoted():
    key = "sk-AAAAAAAAAAAA\nBBBBSECRETTAIL1234"
    sent = []
    provider = HTTPProvider(
        resolve(BUILTIN_SETTINGS["openai"], {"OPENAI_API_KEY": key}),
        transport=httpx.MockTransport(sent.append),
    )
    assert not provider.configured
    manager = LLMManager()
    manager.register_provider("bad", provider)
    text, meta = manager.generate_response("hi", provider="bad")
    attempt = meta.provider_attempts[0]
    assert attempt["error_code"] == "not_configured"
    assert "OPENAI_API_KEY" in attempt["message"] and "control character" in attempt["message"]
    assert sent == []
    assert_no_part_of(key, text, json.dumps(meta.to_dict()))
    assert_no_part_of("BBBBSECRETTAIL1234", text, json.dumps(meta.to_dict()))


@pytest.mark.parametrize(
    "key",
    [
        "sk-PROBECLxxxxxxxxxxxxxxxxxxxxx",
        "gsk_ProbeGroqKey0000111122223333",
        "plainKEY-0000111122223333",
    ],
)
def test_keys_echoed_in_part_by_a_non_json_reply_are_masked(key):
    echo = f"<html>invalid api key {key[:10]} ... {key[:14]}, tail {key[-9:]}</html>".encode()
    served = HostileServer(reply(200, echo, {"content-type": "text/html"}))
    with served as server, LLMManager() as manager:
        manager.register_provider("hostile", openai_at(server.url, key=key))
        text, meta = manager.generate_response("hi", provider="hostile", timeout=5)
    assert meta.provider_attempts[0]["error_code"] == "malformed_response"
    assert_no_part_of(key, text, json.dumps(meta.to_dict()), meta.error or "")


@pytest.mark.parametrize("status", [401, 500])
def test_keys_echoed_in_error_bodies_are_masked_and_not_logged(status, caplog):
    key = "gsk_ErrorPathKey9876543210zyxw"
    body = json.dumps({"error": {"message": f"bad key {key[:12]}... full {key}"}}).encode()
    caplog.set_level(logging.DEBUG)
    with HostileServer(reply(status, body)) as server, LLMManager() as manager:
        manager.register_provider("hostile", openai_at(server.url, key=key))
        text, meta = manager.generate_response("hi", provider="hostile", timeout=5)
    assert meta.provider_attempts[0]["error_code"] == str(status)
    assert_no_part_of(key, text, json.dumps(meta.to_dict()), caplog.text)


def test_credentials_in_a_base_url_stay_out_of_logs_meta_and_errors(caplog):
    password = "UrlPassw0rd-SECRET-77"
    caplog.set_level(logging.DEBUG)
    with HostileServer(reply(401, b'{"error": {"message": "no"}}')) as server:
        url = server.url.replace("http://", f"http://alice:{password}@") + "/v1"
        settings = BUILTIN_SETTINGS["ollama"]
        provider = HTTPProvider(resolve(settings, {"OLLAMA_HOST": url}))
        with LLMManager() as manager:
            manager.register_provider("withurl", provider)
            text, meta = manager.generate_response("hi", provider="withurl", timeout=5)
        sent = server.requests[0].decode()
    assert "authorization: basic" in sent.lower()  # the credentials still authenticate
    assert "alice:" not in repr(provider) and password not in repr(provider)
    assert_no_part_of(password, text, json.dumps(meta.to_dict()), caplog.text, repr(provider))


# -- 6. replies nested too deeply --------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(200, "malformed_response"), (500, "500")])
def test_deeply_nested_json_keeps_its_status(status, code):
    body = b"[" * 100_000 + b"]" * 100_000
    with HostileServer(reply(status, body)) as server, LLMManager() as manager:
        manager.register_provider("hostile", openai_at(server.url))
        _, meta = manager.generate_response("hi", provider="hostile", timeout=5)
    attempt = meta.provider_attempts[0]
    assert (attempt["error_code"], attempt["http_status"]) == (code, status)
    assert attempt["category"] == "retryable"
