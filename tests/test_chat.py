"""Chat requests through the chains: every wire protocol x {text, tool call}, sync and
async, over loopback HTTP; what each protocol is sent; plain providers and requests they
cannot express; step params; argument checks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import Scripted, assert_invariants

from engine import Completion, LLMManager, Message, ToolCall
from engine.tools.simulator import Behaviour, Script, Simulator

WIRES = {"deepseek": "openai", "openai": "openai", "claude": "anthropic", "ollama": "ollama"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 C, sunny"},
    {"role": "user", "content": "And should I take a coat?"},
]  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


_OPEN: list[LLMManager] = []


@pytest.fixture(autouse=True)
def _close_managers():
    yield
    while _OPEN:
        _OPEN.pop().close()


def manager_at(sim: Simulator, monkeypatch, tmp_path: Path, chain: str | None = None):
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    config: dict = {"registered_providers": ["legacy"]}  # registered after it is built
    if chain is not None:
        folder = tmp_path / "chains"
        folder.mkdir(exist_ok=True)
        (folder / "default.yaml").write_text(chain)
        config["chains_dir"] = str(folder)
    manager = LLMManager(config=config)
    _OPEN.append(manager)
    return manager


def run(manager: LLMManager, call: str, messages, **kwargs):
    if call == "sync":
        return manager.chat(messages, **kwargs)

    async def go():
        async with manager:
            return await manager.achat(messages, **kwargs)

    return asyncio.run(go())


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize("provider", list(WIRES))
def test_text_answer_with_system_history_tools_and_params(
    sim, monkeypatch, tmp_path, provider, call
):
    sim.script = Script({provider: [Behaviour("answer", text="Yes, a light one.")]})
    manager = manager_at(sim, monkeypatch, tmp_path)
    completion, meta = run(
        manager, call, HISTORY, system="Be brief.", provider=provider, tools=[WEATHER],
        temperature=0.2, max_tokens=100, stop=["\n\n"], tags={"team": "docs"}, seed=7,
    )  # fmt: skip
    assert isinstance(completion, Completion)
    assert completion.text == "Yes, a light one." and completion.tool_calls == ()
    assert completion.usage == {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}
    assert meta.tags == {"team": "docs"} and meta.provider == provider
    assert_invariants(meta)
    body = sim.requests[-1].body
    wire = WIRES[provider]
    if wire == "openai":
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert body["messages"][3] == {
            "role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}  # fmt: skip
        assert body["tools"] == [WEATHER]
        # OpenAI itself is sent max_completion_tokens (its reasoning models refuse
        # max_tokens); other OpenAI-compatible endpoints keep max_tokens.
        limit = "max_completion_tokens" if provider == "openai" else "max_tokens"
        assert "max_tokens" not in body or limit == "max_tokens"
        assert (body["temperature"], body[limit], body["stop"]) == (0.2, 100, ["\n\n"])
        assert body["seed"] == 7
    elif wire == "anthropic":
        assert body["system"] == "Be brief."
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "user"]
        assert body["messages"][1]["content"] == [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
        ]
        assert body["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C, sunny"}
        ]
        assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
        assert (body["max_tokens"], body["temperature"], body["stop_sequences"]) == (
            100,
            0.2,
            ["\n\n"],
        )
        assert "seed" not in body  # Messages has no seed: best effort, so answered without
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["messages"][2]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ]
        assert body["messages"][3]["tool_name"] == "get_weather"
        assert body["options"] == {
            "temperature": 0.2, "num_predict": 100, "seed": 7, "stop": ["\n\n"]}  # fmt: skip
        assert body["stream"] is False


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize("provider", list(WIRES))
def test_tool_call_answer(sim, monkeypatch, tmp_path, provider, call):
    sim.script = Script({provider: [
        Behaviour("tool_call", tool="get_weather", arguments={"city": "Lyon"})]})  # fmt: skip
    manager = manager_at(sim, monkeypatch, tmp_path)
    completion, meta = run(
        manager, call, [{"role": "user", "content": "Weather in Lyon?"}],
        provider=provider, tools=[WEATHER], tool_choice="auto",
    )  # fmt: skip
    (tool_call,) = completion.tool_calls
    assert isinstance(tool_call, ToolCall)
    assert (tool_call.name, json.loads(tool_call.arguments)) == ("get_weather", {"city": "Lyon"})
    assert tool_call.id
    assert completion.finish_reason == "tool_calls" if provider != "ollama" else True
    assert meta.tools_used == ["get_weather"] and meta.error is None
    assert_invariants(meta)


def test_generate_response_keeps_the_seed_meaning_of_tools(sim, monkeypatch, tmp_path):
    sim.script = Script({"claude": [Behaviour("answer", text="4")]})
    manager = manager_at(sim, monkeypatch, tmp_path)
    text, meta = manager.generate_response("2+2?", provider="claude", tools=["web_search"])
    assert text == "4" and meta.tools_used == ["web_search"]
    body = sim.requests[-1].body
    assert "tools" not in body and body["messages"] == [{"role": "user", "content": "2+2?"}]


def test_a_plain_provider_is_skipped_for_what_it_cannot_express(sim, monkeypatch, tmp_path):
    sim.script = Script({"openai": [Behaviour("answer", text="from openai")]})
    manager = manager_at(sim, monkeypatch, tmp_path, "steps: [legacy, openai]\n")
    legacy = Scripted("plain answer")  # only generate_response(prompt=..., timeout=...)
    manager.register_provider("legacy", legacy)
    completion, meta = manager.chat(
        [{"role": "user", "content": "hi"}], system="Be brief.", tools=[WEATHER]
    )
    first, second = meta.provider_attempts
    assert (first["provider"], first["error_code"]) == ("legacy", "unsupported_request")
    assert "a system prompt" in first["message"] and "tools" in first["message"]
    assert legacy.calls == []  # never called with something it would misread
    assert second["status"] == "success" and completion.text == "from openai"
    # a plain request still reaches it, as generate_response always did
    completion, meta = manager.chat([Message("user", "hi")])
    assert completion.text == "plain answer" and legacy.calls[0]["prompt"] == "hi"


def test_anthropic_cannot_do_json_mode_so_the_chain_moves_on(sim, monkeypatch, tmp_path):
    sim.script = Script({"openai": [Behaviour("answer", text='{"a": 1}')]})
    manager = manager_at(sim, monkeypatch, tmp_path, "steps: [claude, openai]\n")
    completion, meta = manager.chat(
        [{"role": "user", "content": "json please"}], response_format={"type": "json_object"}
    )
    assert meta.provider_attempts[0]["error_code"] == "unsupported_request"
    assert completion.text == '{"a": 1}'
    assert sim.requests[-1].body["response_format"] == {"type": "json_object"}


def test_step_params_fill_in_and_call_params_win(sim, monkeypatch, tmp_path):
    sim.script = Script({"openai": [Behaviour("answer")]}, cycle=True)
    chain = (
        "defaults: {params: {temperature: 0.1, max_tokens: 50}}\n"
        "steps:\n  - {provider: openai, params: {max_tokens: 70, stop: [END]}}\n"
    )
    manager = manager_at(sim, monkeypatch, tmp_path, chain)
    manager.chat([{"role": "user", "content": "hi"}])
    body = sim.requests[-1].body
    # the chain's max_tokens, sent to OpenAI under the name it takes
    assert (body["temperature"], body["max_completion_tokens"], body["stop"]) == (0.1, 70, ["END"])
    manager.chat([{"role": "user", "content": "hi"}], temperature=0.9)
    assert sim.requests[-1].body["temperature"] == 0.9


def test_step_params_are_validated(tmp_path):
    from engine import check_file

    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - provider: openai\n    params: {temprature: 3}\n")
    _, problems = check_file(path)
    assert [p.field for p in problems] == ["steps[0].params.temprature"]
    assert "did you mean 'temperature'" in problems[0].message


@pytest.mark.parametrize(
    ("messages", "kwargs", "kind", "fragment"),
    [
        ("hi", {}, TypeError, "messages must be a list"),
        ([], {}, ValueError, "messages must not be empty"),
        ([{"role": "robot", "content": "x"}], {}, ValueError, "messages[0].role: 'robot'"),
        ([{"role": "user"}], {}, ValueError, "messages[0].content: is missing"),
        ([{"role": "tool", "content": "x"}], {}, ValueError, "messages[0].tool_call_id"),
        ([{"role": "user", "content": "x"}], {"temperature": 5}, ValueError, "temperature must be between 0 and 2"),
        ([{"role": "user", "content": "x"}], {"temprature": 1}, TypeError, "unknown parameter 'temprature'"),
        ([{"role": "user", "content": "x"}], {"tools": [{"function": {}}]}, ValueError, "tools[0].function.name"),
        ([{"role": "user", "content": "x"}], {"tool_choice": "always"}, ValueError, "tool_choice must be"),
        ([{"role": "user", "content": "x"}], {"tags": {"a": 1}}, TypeError, "tags must be a dict of str"),
    ],
)  # fmt: skip
def test_bad_chat_arguments_name_what_is_wrong(messages, kwargs, kind, fragment):
    with pytest.raises(kind) as caught:
        LLMManager().chat(messages, **kwargs)
    assert fragment in str(caught.value)


def test_when_every_provider_fails_chat_returns_the_apology_and_the_record(tmp_path, monkeypatch):
    from engine import ProviderError

    manager = LLMManager(config={"providers": {"claude": Scripted(ProviderError("x", code="503"))}})
    completion, meta = manager.chat([{"role": "user", "content": "hi"}], provider="claude")
    assert completion.finish_reason == "error" and completion.text.startswith("I apologize")
    assert meta.error and meta.provider_attempts[0]["error_code"] == "503"
