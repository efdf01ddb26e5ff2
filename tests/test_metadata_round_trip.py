"""GenerationMeta round-trips through JSON; the error types carry what callers read."""

from __future__ import annotations

import json

import pytest

from engine import AIResponseError, AITimeoutError, ExecutionMode, GenerationMeta, ProviderError


def test_meta_round_trips_through_json():
    meta = GenerationMeta(
        provider="openai",
        model="gpt-4o",
        mode=ExecutionMode.RESEARCH,
        tools_used=["search"],
        provider_attempts=[{"provider": "openai", "status": "success"}],
    )
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["mode"] == "research"
    assert GenerationMeta.from_dict(data) == meta


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        GenerationMeta.from_dict({"colour": "red"})


def test_every_meta_has_its_own_request_id():
    assert GenerationMeta().request_id != GenerationMeta().request_id


@pytest.mark.parametrize(
    ("kind", "category"),
    [(ProviderError, "provider_error"), (AITimeoutError, "timeout"), (AIResponseError, "ai_error")],
)
def test_outcome_errors(kind, category):
    cause = OSError("reset")
    error = kind("went wrong", code=429, cause=cause, provider="openai", retry_after=2.5)
    assert (error.code, error.error_category, error.provider, error.retry_after) == (
        "429",
        category,
        "openai",
        2.5,
    )
    assert error.__cause__ is cause and str(error) == "went wrong"
    assert kind("plain").code is None


def test_timestamps_format_exactly_as_datetime_does():
    import random
    from datetime import UTC, datetime

    from engine.types.meta import iso_timestamp

    draw = random.Random(7)
    samples = [draw.uniform(0, 4e9) for _ in range(20_000)]
    samples += [0.0, 1.9999999, 1e9 + 0.9999995, 1_700_000_000.0005, 1_779_516_897.4419994]
    for t in samples:
        assert iso_timestamp(t) == datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def test_timestamp_and_request_id_are_made_once_when_first_read():
    meta = GenerationMeta()
    first = meta.request_id
    assert len(first) == 32 and meta.request_id == first
    assert meta.timestamp == meta.to_dict()["timestamp"]
    assert GenerationMeta(timestamp="t", request_id="r").to_dict()["request_id"] == "r"
    assert GenerationMeta.from_dict(meta.to_dict()) == meta


def test_a_calls_record_is_what_the_constructor_makes():
    # LLMManager makes each call's record without the generated __init__ (it is on every
    # call); the record must be the very same: fields, their order, fresh mutable values,
    # its own lazy timestamp and request id.
    from engine import LLMManager

    class Echo:
        def generate_response(self, *, prompt, timeout):
            return prompt

    manager = LLMManager(config={"providers": {"deepseek": Echo(), "openai": Echo()}})
    _, one = manager.generate_response("a", mode="research", tools=["search"])
    _, two = manager.generate_response("b")
    made = GenerationMeta(mode=ExecutionMode.RESEARCH, tools_used=["search"])
    assert list(vars(one)) == list(vars(made))
    for name in ("mode", "tools_used", "tool_results", "cache_hit", "tags", "truncated"):
        assert getattr(one, name) == getattr(made, name), name
    assert one.request_id != two.request_id and len(one.request_id) == 32
    assert one.timestamp.endswith("+00:00") and two.mode is ExecutionMode.DIRECT
    assert two.tools_used == [] and two.tags == {} and two.tool_results == []
    assert one.provider_attempts is not two.provider_attempts
    assert one.tool_results is not two.tool_results and one.tags is not two.tags
