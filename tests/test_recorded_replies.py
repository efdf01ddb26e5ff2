"""Real provider replies, replayed byte for byte over loopback to every built-in provider
of their wire, sync and async, streamed and not: each reading must be what the case says
(the way the provider and its official SDK read the same bytes), and the four readings of
one reply must agree with each other: outcome, text, tool calls, usage, finish reason,
reasoning, and the recorded HTTP status. The events of a stream must agree with its
completion."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from replay import Case, ReplayServer, load_cases

from engine.core.classify import classify_exception, classify_result
from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS
from engine.types.deltas import ReasoningDelta, TextDelta, ToolCallDelta
from engine.types.request import ChatRequest
from engine.types.timeouts import StreamTimeouts

CASES = load_cases()
PROVIDERS = {"openai": ["openai", "deepseek"], "anthropic": ["claude"], "ollama": ["ollama"]}
TIMEOUTS = StreamTimeouts(first_token=5, idle=3, total=10)
REQUEST = ChatRequest.from_prompt("hi")


@pytest.fixture(scope="module")
def server():
    replay = ReplayServer(CASES)
    yield replay
    replay.close()


def _provider(name: str, url: str) -> HTTPProvider:
    settings = dataclasses.replace(BUILTIN_SETTINGS[name], base_url=url, base_url_env=None)
    environ = {settings.api_key_env: "sk-replay-0123456789"} if settings.api_key_env else {}
    return HTTPProvider(resolve(settings, environ))


def _reading(ok: bool, value: Any) -> dict[str, Any]:
    outcome = classify_result(value, None, {}) if ok else classify_exception(value, {})
    if outcome.category != "success":
        return {
            "outcome": f"{outcome.category}:{outcome.error_code}",
            "http_status": outcome.http_status,
        }
    c = outcome.completion
    assert c is not None
    return {
        "outcome": "success",
        "text": c.text,
        "tool_calls": [[t.name, t.arguments] for t in c.tool_calls],
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
        "finish": c.finish_reason,
        "reasoning": c.reasoning,
        "cache_read": c.cache_read_tokens,
        "cache_write": c.cache_write_tokens,
    }


def _events_agree(events: list[Any], final: Any) -> None:
    """What a stream handed over is what its completion says."""
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    thought = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            entry = calls.setdefault(e.index, ["", ""])
            entry[0] = e.name or entry[0]
            entry[1] += e.arguments
    assert text == final.text
    assert thought == final.reasoning
    assert [[n, a or "{}"] for _, (n, a) in sorted(calls.items())] == [
        [t.name, t.arguments] for t in final.tool_calls
    ]


def _read_sync(provider: HTTPProvider, streamed: bool) -> dict[str, Any]:
    try:
        if not streamed:
            return _reading(True, provider.chat(request=REQUEST, timeout=10))
        events = list(provider.stream(request=REQUEST, timeouts=TIMEOUTS))
    except Exception as exc:
        return _reading(False, exc)
    *deltas, final = events
    _events_agree(deltas, final)
    return _reading(True, final)


async def _read_async(provider: HTTPProvider, streamed: bool) -> dict[str, Any]:
    try:
        if not streamed:
            return _reading(True, await provider.achat(request=REQUEST, timeout=10))
        events = [e async for e in provider.astream(request=REQUEST, timeouts=TIMEOUTS)]
    except Exception as exc:
        return _reading(False, exc)
    *deltas, final = events
    _events_agree(deltas, final)
    return _reading(True, final)


def _expected(case: Case) -> dict[str, Any]:
    expect = dict(case.expect)
    if expect["outcome"] != "success":
        http = case.status if case.status >= 300 else 200
        return {"outcome": expect["outcome"], "http_status": http}
    return {
        "outcome": "success",
        "text": expect.get("text", ""),
        "tool_calls": [list(c) for c in expect.get("tool_calls", [])],
        "tokens_in": expect.get("tokens_in", 0),
        "tokens_out": expect.get("tokens_out", 0),
        "finish": expect.get("finish"),
        "reasoning": expect.get("reasoning", ""),
        "cache_read": expect.get("cache_read", 0),
        "cache_write": expect.get("cache_write", 0),
    }


def test_the_corpus_is_whole():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        assert case.source.strip(), case.id
        assert case.expect["outcome"] == "success" or ":" in case.expect["outcome"], case.id
    vendors = {c.id.split("-")[0] for c in CASES}
    assert {"openai", "anthropic", "ollama"} <= vendors and len(vendors) >= 6


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_reading_of_a_recorded_reply(server, case):
    expected = _expected(case)
    for name in PROVIDERS[case.wire]:
        provider = _provider(name, server.url(case.id))
        try:
            readings = {
                "chat": _read_sync(provider, False),
                "stream": _read_sync(provider, True),
                "achat": asyncio.run(_read_async(provider, False)),
                "astream": asyncio.run(_read_async(provider, True)),
            }
        finally:
            provider.close()
        for how, reading in readings.items():
            assert reading == expected, f"{name} {how}: {json.dumps(reading)}"
