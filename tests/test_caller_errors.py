"""A caller's mistake is not a provider's failure: a request no provider could be sent
raises a clear ValueError/TypeError naming the field, before its first attempt; no provider
is called, and no breaker or retry budget hears of it."""

from __future__ import annotations

import asyncio

import pytest

from engine import LLMManager
from engine.tools.simulator import Behaviour, Script, Simulator, environment

HI = [{"role": "user", "content": "hi"}]


def _deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def _tool(name: str = "get_weather", parameters: dict | None = None) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {}}}


BAD = [
    ("a set in a tool schema", {"tools": [_tool(parameters={"enum": {1, 2}})]},
     TypeError, "tools[0].function.parameters.enum: a value of type set is not JSON"),
    ("bytes in response_format", {"response_format": {"type": b"json_object"}},
     TypeError, "response_format.type: a value of type bytes is not JSON"),
    ("an object in tool_choice", {"tools": [_tool()], "tool_choice": {"function": object()}},
     TypeError, "tool_choice.function: a value of type object is not JSON"),
    ("NaN in a tool schema", {"tools": [_tool(parameters={"maximum": float("nan")})]},
     ValueError, "tools[0].function.parameters.maximum: nan is not JSON"),
    ("Infinity in a schema", {"tools": [_tool(parameters={"minimum": float("-inf")})]},
     ValueError, "-inf is not JSON"),
    ("a schema 10,000 deep", {"tools": [_tool(parameters=_deep(10_000))]},
     ValueError, "nested deeper than 64 levels"),
    ("a control character in a tool name", {"tools": [_tool(name="get\x00weather")]},
     ValueError, "tools[0].function.name"),
    ("an assistant first", {"messages": [{"role": "assistant", "content": "Hello"}, *HI]},
     ValueError, "messages[0].role: the conversation starts with 'assistant'"),
    ("a tool result with no call", {"messages": [*HI, {"role": "tool", "tool_call_id": "c9",
                                                       "content": "18 C"}]},
     ValueError, "messages[1].tool_call_id: 'c9' answers no tool call"),
    ("NaN in tool-call arguments", {"messages": [*HI, {"role": "assistant", "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": {"x": float("nan")}}}]}]},
     ValueError, "messages[1].tool_calls[0].function.arguments"),
    ("tool-call arguments that are not an object", {"messages": [*HI, {"role": "assistant",
        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "[1, 2"}}]}]},
     ValueError, "messages[1].tool_calls[0].function.arguments: not a JSON object"),
]  # fmt: skip


@pytest.fixture
def sim():
    script = Script({name: [Behaviour("answer", text="ok")] for name in ("deepseek", "openai", "claude")}, cycle=True)  # fmt: skip
    with Simulator(script) as server, environment(server):
        yield server


@pytest.mark.parametrize(("what", "call", "error", "says"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("how", ["sync", "async", "stream"])
def test_a_bad_request_raises_before_any_attempt(sim, what, call, error, says, how):
    manager = LLMManager()
    kwargs = dict(call)
    messages = kwargs.pop("messages", HI)
    try:
        with pytest.raises(error) as caught:
            if how == "sync":
                manager.chat(messages, **kwargs)
            elif how == "async":
                asyncio.run(manager.achat(messages, **kwargs))
            else:
                list(manager.stream(messages, **kwargs))
    finally:
        manager.close()
    assert says in str(caught.value)
    assert sim.requests == []  # no provider was sent it


def test_bad_calls_never_open_a_healthy_providers_breaker(sim):
    manager = LLMManager()
    try:
        for _, call, error, _ in BAD * 2:
            kwargs = dict(call)
            with pytest.raises(error):
                manager.chat(kwargs.pop("messages", HI), **kwargs)
        completion, meta = manager.chat(HI)
    finally:
        manager.close()
    assert completion.text == "ok" and meta.provider == "deepseek" and not meta.fallback_used
    assert [r.provider for r in sim.requests] == ["deepseek"]
