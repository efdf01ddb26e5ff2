"""What each wire sends for what the caller asked, checked against the providers' published
request types (OpenAI's OpenAPI spec, the Anthropic SDK's request params, Ollama's API):
the output limit's name, structured output, and tool_choice where a wire has none."""

from __future__ import annotations

import json

import httpx
import pytest

from engine import ProviderError
from engine.providers.http import HTTPProvider
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS, ProviderSettings
from engine.types.request import ChatRequest, Tool

WEATHER = Tool("get_weather", "Weather in a city", {"type": "object", "properties": {}})
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
REPLIES = {
    "openai": {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]},
    "anthropic": {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
    "ollama": {"message": {"content": "ok"}, "done": True},
}


def _sent(settings: ProviderSettings, request: ChatRequest) -> dict:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=REPLIES[settings.kind])

    environ = {settings.api_key_env: "sk-test-0123456789"} if settings.api_key_env else {}
    provider = HTTPProvider(resolve(settings, environ), transport=httpx.MockTransport(handler))
    provider.chat(request=request, timeout=5)
    return json.loads(seen[-1].content)


@pytest.mark.parametrize(
    ("name", "field"),
    [("openai", "max_completion_tokens"), ("deepseek", "max_tokens")],
)
def test_the_output_limit_is_named_as_the_endpoint_knows_it(name, field):
    body = _sent(
        BUILTIN_SETTINGS[name], ChatRequest.from_prompt("hi").with_params({"max_tokens": 64})
    )
    assert body[field] == 64
    assert set(body) & {"max_tokens", "max_completion_tokens"} == {field}


def test_a_providers_file_can_name_the_output_limit(tmp_path):
    from engine.providers.settings import load_providers_file

    (tmp_path / "providers.yaml").write_text(
        "providers:\n"
        "  azure:\n    kind: openai\n    base_url: https://example.invalid/v1\n"
        "    model: o3\n    max_tokens_field: max_completion_tokens\n"
    )
    settings = load_providers_file(tmp_path)["azure"]
    body = _sent(settings, ChatRequest.from_prompt("hi").with_params({"max_tokens": 9}))
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


def test_a_wrong_output_limit_name_is_refused_with_its_place(tmp_path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  openai:\n    max_tokens_field: max_output_tokens\n")
    _, problems = check_providers_file(path)
    assert problems and any("max_tokens_field" in str(p) and ":3" in str(p) for p in problems)


def test_claude_gets_structured_output_for_a_json_schema():
    request = ChatRequest.from_prompt("hi").with_params(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}}
    )
    body = _sent(BUILTIN_SETTINGS["claude"], request)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "response_format" not in body


def test_claude_refuses_json_mode_without_a_schema_by_name():
    request = ChatRequest.from_prompt("hi").with_params(
        {"response_format": {"type": "json_object"}}
    )
    with pytest.raises(ProviderError) as caught:
        _sent(BUILTIN_SETTINGS["claude"], request)
    assert caught.value.code == "unsupported_request" and "json_object" in str(caught.value)


@pytest.mark.parametrize(("choice", "tools_sent"), [("auto", True), ("none", False)])
def test_ollama_honours_the_tool_choices_it_can(choice, tools_sent):
    request = ChatRequest.from_prompt("hi").with_params({"tools": [WEATHER], "tool_choice": choice})
    body = _sent(BUILTIN_SETTINGS["ollama"], request)
    assert ("tools" in body) is tools_sent and "tool_choice" not in body


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_ollama_refuses_a_tool_choice_it_cannot_say(choice):
    request = ChatRequest.from_prompt("hi").with_params({"tools": [WEATHER], "tool_choice": choice})
    with pytest.raises(ProviderError) as caught:
        _sent(BUILTIN_SETTINGS["ollama"], request)
    assert caught.value.code == "unsupported_request" and "tool_choice" in str(caught.value)


def test_a_prompts_request_is_the_one_user_message_request():
    # generate_response's request is made without the generated __init__ (every call makes
    # one): it must be the very request the constructor makes, as frozen, with its own tags.
    import dataclasses

    from engine.types.request import Message

    one, two = ChatRequest.from_prompt("hi"), ChatRequest.from_prompt("hi")
    assert one == ChatRequest((Message("user", "hi"),)) == two
    assert one.plain_prompt == "hi" and one.messages[0].tool_calls == ()
    assert one.tags == {} and one.tags is not two.tags
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.system = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.messages[0].content = "x"  # type: ignore[misc]
    assert repr(one) == repr(ChatRequest((Message("user", "hi"),)))
