"""The recorded replies read by the providers' official SDKs (``openai``, ``anthropic``)
from the very same bytes, over the same loopback replay: where an SDK reads an answer, the
engine reads the same text, tool calls, usage and finish reason."""

from __future__ import annotations

import json

import pytest
from replay import Case, ReplayServer, load_cases

from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS
from engine.types.request import ChatRequest

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

# Answers both read (errors are classified by the engine more finely than any SDK does).
CASES = [
    c
    for c in load_cases()
    if c.wire in ("openai", "anthropic") and c.expect["outcome"] == "success" and c.sdk_reads
]
_ANTHROPIC_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "tool_use": "tool_calls"}  # fmt: skip


@pytest.fixture(scope="module")
def server():
    replay = ReplayServer(CASES)
    yield replay
    replay.close()


def _engine(case: Case, url: str):
    name = "openai" if case.wire == "openai" else "claude"
    settings = BUILTIN_SETTINGS[name]
    import dataclasses

    settings = dataclasses.replace(settings, base_url=url, base_url_env=None)
    provider = HTTPProvider(resolve(settings, {settings.api_key_env: "sk-replay-0123456789"}))
    try:
        return provider.chat(request=ChatRequest.from_prompt("hi"), timeout=10)
    finally:
        provider.close()


def _streamed(case: Case) -> bool:
    return "event-stream" in case.headers.get("content-type", "")


def _openai_reading(case: Case, url: str) -> dict:
    client = openai.OpenAI(base_url=url, api_key="sk-replay-0123456789", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    if not _streamed(case):
        reply = client.chat.completions.create(model="m", messages=messages)
        choice = reply.choices[0]
        calls = [[c.function.name, c.function.arguments] for c in choice.message.tool_calls or []]
        usage = reply.usage
        return {"text": choice.message.content, "tool_calls": calls, "finish": choice.finish_reason,
                "usage": None if usage is None else (usage.prompt_tokens, usage.completion_tokens)}  # fmt: skip
    text, finish, usage, calls = [], None, None, {}
    for chunk in client.chat.completions.create(model="m", messages=messages, stream=True):
        if chunk.usage is not None:
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices:
            if isinstance(choice.delta.content, str):
                text.append(choice.delta.content)
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, ["", ""])
                if call.function and call.function.name:
                    entry[0] = call.function.name
                if call.function and call.function.arguments:
                    entry[1] += call.function.arguments
            finish = choice.finish_reason or finish
    return {"text": "".join(text), "tool_calls": [calls[i] for i in sorted(calls)],
            "finish": finish, "usage": usage}  # fmt: skip


def _anthropic_reading(case: Case, url: str) -> dict:
    client = anthropic.Anthropic(base_url=url, api_key="sk-replay-0123456789", max_retries=0)
    kwargs = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    if _streamed(case):
        with client.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    blocks = message.content
    usage = message.usage
    return {
        "text": "".join(b.text for b in blocks if b.type == "text"),
        "tool_calls": [[b.name, b.input] for b in blocks if b.type == "tool_use"],
        "finish": _ANTHROPIC_STOP.get(message.stop_reason, message.stop_reason),
        "usage": (usage.input_tokens, usage.output_tokens),
        "cache": (usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0),
    }


def test_most_answers_are_read_by_an_sdk_too():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_engine_reads_what_the_official_sdk_reads(server, case):
    url = server.url(case.id)
    ours = _engine(case, url)
    if case.wire == "openai":
        sdk = _openai_reading(case, url)
        if isinstance(sdk["text"], str):  # an SDK that keeps a parts array as it came: no text
            assert ours.text == sdk["text"]
        assert [[t.name, t.arguments] for t in ours.tool_calls] == sdk["tool_calls"]
    else:
        sdk = _anthropic_reading(case, url)
        assert ours.text == sdk["text"]
        assert [[t.name, json.loads(t.arguments)] for t in ours.tool_calls] == sdk["tool_calls"]
        assert (ours.cache_read_tokens, ours.cache_write_tokens) == sdk["cache"]
    assert ours.finish_reason == sdk["finish"]
    if sdk["usage"] is not None:  # an SDK that does not know a vendor's usage field reads none
        assert (ours.tokens_in, ours.tokens_out) == sdk["usage"]
