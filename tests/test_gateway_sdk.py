"""The gateway as its users reach it: the official ``openai`` and ``anthropic`` SDKs against
a ``torq-fallback serve`` subprocess, the engine's simulator behind it. Sync, async,
streaming and tools, the headers (``with_raw_response``), the attempt history in every
body and in every stream's last event, and failures in each API's own error format."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from gateway_setup import chains_folder, script
from served import Served

from engine.simulator import Simulator

HI = [{"role": "user", "content": "What is 2+2?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with Simulator(script()) as sim:
        served = Served(sim, chains_folder(tmp_path_factory.mktemp("gw")))
        try:
            yield served
        finally:
            served.stop()


@pytest.fixture
def oai(gateway):
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(gateway):
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as client:
        yield client


def test_openai_sync_with_the_headers_and_the_history(oai):
    raw = oai.chat.completions.with_raw_response.create(
        model="direct", messages=[{"role": "user", "content": "RATE: what is 2+2?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "4"
    assert completion.model == "gpt-4.1-mini"  # the model of the attempt that answered
    assert completion.usage.total_tokens == 19  # the answer's usage only: the 429 is not billed
    head = raw.headers
    assert (head["x-torq-chain"], head["x-torq-provider"], head["x-torq-model"]) == (
        "direct", "openai", "gpt-4.1-mini")  # fmt: skip
    assert head["x-torq-attempts"] == "2" and head["x-torq-fallback-reason"] == "provider_error:429"
    assert len(head["x-torq-request-id"]) == 32 and int(head["x-torq-duration-ms"]) >= 0
    torq = completion.model_extra["torq"]
    assert [(a["provider"], a["status"], a["error_code"]) for a in torq["provider_attempts"]] == [
        ("deepseek", "failed", "429"), ("openai", "success", None)]  # fmt: skip
    assert torq["chain"] == "direct" and torq["request_id"] == head["x-torq-request-id"]


async def test_openai_async_and_an_alias(gateway):
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0) as c:
        completion = await c.chat.completions.create(model="gpt-4o", messages=HI, seed=7,
                                                     user="u-1", max_completion_tokens=50)  # fmt: skip
    assert completion.choices[0].message.content == "4"
    assert completion.model_extra["torq"]["chain"] == "direct"
    assert completion.model_extra["torq"]["tags"]["user"] == "u-1"


def test_openai_stream_with_usage_and_the_history_last(oai):
    chunks = list(oai.chat.completions.create(
        model="direct", messages=[{"role": "user", "content": "LONG story"}], stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Once upon a time") and text.endswith("every attempt.")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert last.model_extra["torq"]["provider_attempts"][0]["status"] == "success"


def test_openai_tools_whole_and_streamed(oai):
    ask = [{"role": "user", "content": "ROUNDTRIP: weather in Paris?"}]
    completion = oai.chat.completions.create(model="direct", messages=ask, tools=[WEATHER])
    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    reply = [*ask, {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
             {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]  # fmt: skip
    answer = oai.chat.completions.create(model="direct", messages=reply, tools=[WEATHER])
    assert answer.choices[0].message.content == "It is sunny in Paris."
    stream_ask = [{"role": "user", "content": "TOOL: weather in Paris?"}]
    with oai.chat.completions.stream(
        model="direct", messages=stream_ask, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }


def test_anthropic_sync_stream_and_tools(claude):
    message = claude.messages.create(model="solo", max_tokens=100, system="Be brief.",
                                     messages=HI, stop_sequences=["END"])  # fmt: skip
    assert message.content[0].text == "4" and message.stop_reason == "end_turn"
    assert message.model_extra["torq"]["provider"] == "claude"
    with claude.messages.stream(model="direct", max_tokens=100,
                                messages=[{"role": "user", "content": "LONG story"}]) as stream:  # fmt: skip
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Once upon a time") and final.content[0].text == text
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
    message = claude.messages.create(model="solo", max_tokens=100, tools=tools,
                                     messages=[{"role": "user", "content": "TOOL: Paris?"}])  # fmt: skip
    block = message.content[-1]
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert message.stop_reason == "tool_use"
    with claude.messages.stream(model="solo", max_tokens=100, tools=tools,
                                messages=[{"role": "user", "content": "TOOL: Paris?"}]) as stream:  # fmt: skip
        final = stream.get_final_message()
    assert final.content[-1].input == {"city": "Paris"}
    answered = claude.messages.create(model="solo", max_tokens=100, tools=tools, messages=[
        {"role": "user", "content": "TOOL: Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": block.id,
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                      "content": "sunny"}]},
    ])  # fmt: skip
    assert answered.content[0].text == "4"


def test_failures_in_each_apis_format(oai, claude):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="drect", messages=HI)
    error = missing.value.body
    assert error["code"] == "model_not_found" and "(did you mean 'direct'?)" in error["message"]
    assert "models: direct, research" in error["message"] and "gpt-4o" in error["message"]
    with pytest.raises(openai.InternalServerError) as down:
        oai.chat.completions.create(model="direct", messages=[{"role": "user", "content": "DOWN"}])
    assert down.value.status_code == 502 and down.value.body["code"] == "503"
    torq = down.value.response.json()["torq"]
    assert [a["error_code"] for a in torq["provider_attempts"]] == ["503", "503"]
    with pytest.raises(openai.BadRequestError) as filtered:
        oai.chat.completions.create(
            model="direct", messages=[{"role": "user", "content": "FILTER"}]
        )
    assert filtered.value.body["code"] == "content_filter"
    with pytest.raises(openai.BadRequestError) as unsupported:
        oai.chat.completions.create(model="direct", messages=HI, frequency_penalty=0.5)
    assert unsupported.value.body["param"] == "frequency_penalty"
    assert oai.chat.completions.create(model="direct", messages=HI, n=1, frequency_penalty=0)
    with pytest.raises(anthropic.NotFoundError) as gone:
        claude.messages.create(model="nosuch", max_tokens=10, messages=HI)
    assert gone.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as image:
        claude.messages.create(model="solo", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}]}])  # fmt: skip
    assert "messages[0].content[0]" in image.value.body["error"]["message"]


def test_a_stream_cut_after_its_first_token_ends_in_an_error(oai, claude):
    cut = [{"role": "user", "content": "CUT story"}]
    with pytest.raises(openai.APIError) as raised:
        for _ in oai.chat.completions.create(model="direct", messages=cut, stream=True):
            pass
    assert "cut" in str(raised.value) or "truncated" in str(raised.value)
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(model="direct", max_tokens=50, messages=cut) as stream,
    ):
        for _ in stream.text_stream:
            pass


def test_models_lists_chains_and_aliases(oai, claude):
    names = [m.id for m in oai.models.list()]
    assert names[:5] == ["direct", "research", "code_generation", "composition", "hierarchical"]
    assert "solo" in names and "gpt-4o" in names and "claude-sonnet-4-5" in names
    assert [m.id for m in claude.models.list()] == names
