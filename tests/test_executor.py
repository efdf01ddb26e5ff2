"""Retries, backoff, deadlines, outcome classification and provider kinds, through
LLMManager and chains written as YAML files."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from helpers import AsyncScripted, FakeClock, Scripted, Takes, chains_dir

from engine import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainExhaustedError,
    Completion,
    FallbackExecutor,
    GenerationMeta,
    LLMManager,
    ProviderError,
    compile_chain,
    load_chain,
)

RETRYING = """
deadline: 100
defaults: {timeout: 10, retries: 2, backoff_base: 1, backoff_max: 8}
steps: [deepseek, openai]
"""


def manager(tmp_path, clock: FakeClock, direct: str, **providers) -> LLMManager:
    folder = chains_dir(tmp_path, {"direct": direct})
    return LLMManager(
        config={"chains_dir": str(folder), "providers": providers}, runtime=clock.runtime()
    )


def path(meta: GenerationMeta) -> list[tuple[str, str | None, str]]:
    return [(a["state"], a["error_code"], a["next"]) for a in meta.provider_attempts]


def test_transient_failures_retry_same_step_with_full_jitter(tmp_path, clock):
    deepseek = Scripted(ProviderError("a", code="503"), ProviderError("b", code="502"), "ok")
    m = manager(tmp_path, clock, RETRYING, deepseek=deepseek, openai=Scripted())
    text, meta = m.generate_response("hi")
    assert text == "ok"
    assert path(meta) == [
        ("deepseek", "503", "deepseek"),
        ("deepseek", "502", "deepseek"),
        ("deepseek", None, "succeeded"),
    ]
    assert [a["retry"] for a in meta.provider_attempts] == [0, 1, 2]
    # full jitter with random() = 0.5: 0.5 * min(8, 1 * 2**n)
    assert clock.sleeps == [0.5, 1.0]
    assert meta.fallback_used is True and meta.fallback_reason == "provider_error:503"


def test_retries_are_bounded_then_fall_back(tmp_path, clock):
    deepseek = Scripted(*[ProviderError("x", code="500")] * 3)
    m = manager(tmp_path, clock, RETRYING, deepseek=deepseek, openai=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert [a["state"] for a in meta.provider_attempts] == ["deepseek"] * 3 + ["openai"]
    assert meta.provider_attempts[2]["next"] == "openai"


def test_non_transient_failures_never_retry(tmp_path, clock):
    deepseek = Scripted(ProviderError("no money", code="insufficient_quota"))
    m = manager(tmp_path, clock, RETRYING, deepseek=deepseek, openai=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert path(meta) == [
        ("deepseek", "insufficient_quota", "openai"),
        ("openai", None, "succeeded"),
    ]
    assert clock.sleeps == []


def test_retry_after_is_a_floor_and_too_long_a_wait_falls_back(tmp_path, clock):
    deepseek = Scripted(
        ProviderError("slow down", code="429", retry_after=3),
        ProviderError("slow down", code="429", retry_after=30),
    )
    m = manager(tmp_path, clock, RETRYING, deepseek=deepseek, openai=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert clock.sleeps == [3]
    assert [a["retry_after_ms"] for a in meta.provider_attempts[:2]] == [3000, 30000]
    # 30 s exceeds backoff_max (8 s): move on instead of waiting
    assert path(meta)[1:] == [("deepseek", "429", "openai"), ("openai", None, "succeeded")]


def test_timeouts_retry_only_when_the_step_says_so(tmp_path, clock):
    chain = RETRYING.replace("backoff_max: 8}", "backoff_max: 8, retry_timeouts: true}")
    deepseek = Scripted(AITimeoutError("t", code="read_timeout"), "ok")
    m = manager(tmp_path, clock, chain, deepseek=deepseek, openai=Scripted())
    _, meta = m.generate_response("hi")
    assert path(meta) == [("deepseek", "read_timeout", "deepseek"), ("deepseek", None, "succeeded")]

    deepseek = Scripted(AITimeoutError("t", code="read_timeout"))
    m = manager(tmp_path / "b", clock, RETRYING, deepseek=deepseek, openai=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert path(meta) == [("deepseek", "read_timeout", "openai"), ("openai", None, "succeeded")]


def test_deadline_ends_the_chain_and_no_attempt_starts_without_time(tmp_path, clock):
    chain = "deadline: 25\ndefaults: {timeout: 20}\nsteps: [deepseek, openai, claude]\n"
    deepseek = Scripted(Takes(20, AITimeoutError("t", code="read_timeout")), clock=clock)
    openai = Scripted(Takes(5, ProviderError("x", code="500")), clock=clock)
    claude = Scripted("never")
    m = manager(tmp_path, clock, chain, deepseek=deepseek, openai=openai, claude=claude)
    text, meta = m.generate_response("hi")
    assert claude.calls == []
    # the second attempt got only what was left of the deadline
    assert openai.calls[0]["timeout"] == pytest.approx(5)
    assert meta.error_category == "timeout"
    assert "ran out of time (25s) after 2 attempts" in meta.error
    assert text.startswith("I apologize, but the AI service is currently unavailable")


def test_call_timeout_caps_the_chain_deadline(tmp_path, clock):
    deepseek = Scripted(Takes(4, AITimeoutError("t")), clock=clock)
    m = manager(tmp_path, clock, "steps: [deepseek, openai]\n", deepseek=deepseek)
    _, meta = m.generate_response("hi", timeout=4)
    assert deepseek.calls[0]["timeout"] == 4
    assert len(meta.provider_attempts) == 1 and "ran out of time (4s)" in meta.error


def test_retry_that_would_overrun_the_deadline_is_not_taken(tmp_path, clock):
    chain = "deadline: 10\ndefaults: {retries: 3, backoff_base: 1}\nsteps: [deepseek, openai]\n"
    deepseek = Scripted(Takes(9.8, ProviderError("x", code="503")), clock=clock)
    m = manager(tmp_path, clock, chain, deepseek=deepseek, openai=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert clock.sleeps == []
    assert path(meta)[0] == ("deepseek", "503", "openai")


def test_error_codes_and_goto_in_yaml_change_the_path(tmp_path, clock):
    chain = """
error_codes:
  "404": non_retryable
  ValueError: timeout
steps:
  - id: first
    provider: deepseek
    goto: {timeout: last}
  - openai
  - id: last
    provider: claude
"""
    m = manager(tmp_path, clock, chain, deepseek=Scripted(ValueError("bug")), claude=Scripted("ok"))
    _, meta = m.generate_response("hi")
    assert path(meta) == [("first", "ValueError", "last"), ("last", None, "succeeded")]
    assert meta.provider_attempts[0]["error_category"] == "exception"

    m = manager(tmp_path / "b", clock, chain, deepseek=Scripted(ProviderError("nf", code=404)))
    _, meta = m.generate_response("hi")
    assert path(meta) == [("first", "404", "aborted")]
    assert meta.error_category == "ai_error"


@pytest.mark.parametrize(
    ("returned", "detail"),
    [
        ({"text": "4"}, "dict"),
        ("Error: upstream failed", "error as text"),
        ("I apologize, but I encountered an error: boom", "error as text"),
        ("   ", "empty answer"),
        (None, "NoneType"),
        (42, "int"),
    ],
)
def test_contract_guard(tmp_path, clock, returned, detail):
    m = manager(
        tmp_path,
        clock,
        "steps: [deepseek, openai]\n",
        deepseek=Scripted(returned),
        openai=Scripted("ok"),
    )
    text, meta = m.generate_response("hi")
    first = meta.provider_attempts[0]
    assert first["error_code"] == "contract_violation" and detail in first["message"]
    assert text == "ok"


def test_completion_objects_carry_model_and_usage(tmp_path, clock):
    usage = SimpleNamespace(prompt_tokens=7, completion_tokens=3)
    openai_like = SimpleNamespace(text="hello", model="gpt-4o-2024", usage=usage)
    m = manager(
        tmp_path,
        clock,
        "steps: [deepseek, {provider: openai, model: gpt-4o}]\n",
        deepseek=Scripted(Completion("", model="x")),
        openai=Scripted(openai_like),
    )
    text, meta = m.generate_response("hi")
    assert text == "hello"
    assert (meta.model, meta.tokens_in, meta.tokens_out, meta.tokens_total) == (
        "gpt-4o-2024",
        7,
        3,
        10,
    )
    assert m.providers["openai"].calls[0]["model"] == "gpt-4o"
    assert "model" not in m.providers["deepseek"].calls[0]


@pytest.mark.parametrize("kind", [Scripted, AsyncScripted])
def test_sync_entry_point_runs_both_provider_kinds(tmp_path, clock, kind):
    m = manager(
        tmp_path, clock, "steps: [deepseek, openai]\n",
        deepseek=kind(ProviderError("x", code="500")), openai=kind(Completion("ok", "m", 1, 2)),
    )  # fmt: skip
    text, meta = m.generate_response("hi")
    assert (text, meta.provider, meta.tokens_total) == ("ok", "openai", 3)


async def test_sync_entry_point_inside_a_running_loop_still_runs_async_providers(tmp_path, clock):
    m = manager(tmp_path, clock, "steps: [deepseek]\n", deepseek=AsyncScripted("ok"))
    text, _ = m.generate_response("hi")
    assert text == "ok"


async def test_async_entry_point_bounds_a_hanging_provider(tmp_path, clock):
    class Hangs:
        async def generate_response(self, *, prompt, timeout):
            await asyncio.Event().wait()

    # a 20 ms attempt timeout: the one real wait in the suite, proving the bound is real
    m = manager(
        tmp_path, clock, "defaults: {timeout: 0.02}\nsteps: [deepseek, openai]\n",
        deepseek=Hangs(), openai=AsyncScripted("ok"),
    )  # fmt: skip
    text, meta = await m.agenerate_response("hi")
    assert text == "ok"
    assert meta.provider_attempts[0]["error_code"] == "attempt_timeout"
    assert meta.fallback_reason == "timeout:attempt_timeout"


def test_executor_raises_typed_errors_with_attempts(tmp_path, clock):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    chain = compile_chain(load_chain(folder / "direct.yaml"))
    providers = {
        "deepseek": Scripted(ProviderError("a", code="500")),
        "openai": Scripted(ProviderError("b", code="503")),
    }
    executor = FallbackExecutor(providers.get, clock.runtime())
    meta = GenerationMeta()
    with pytest.raises(ChainExhaustedError) as caught:
        executor.execute(chain, "hi", meta, timeout=60)
    assert caught.value.code == "503" and len(caught.value.attempts) == 2
    assert caught.value.attempts == meta.provider_attempts
    assert isinstance(caught.value.__cause__, ProviderError)

    blocked = {"deepseek": Scripted(AIResponseError("no", code="refusal"))}
    executor = FallbackExecutor(blocked.get, clock.runtime())
    with pytest.raises(ChainAbortedError) as aborted:
        executor.execute(chain, "hi", GenerationMeta(), timeout=60)
    assert aborted.value.code == "refusal" and aborted.value.error_category == "ai_error"


def test_unexpected_exceptions_are_recorded_not_lost(tmp_path, clock):
    m = manager(
        tmp_path,
        clock,
        "steps: [deepseek, openai]\n",
        deepseek=Scripted(KeyError("k")),
        openai=Scripted("ok"),
    )
    _, meta = m.generate_response("hi")
    first = meta.provider_attempts[0]
    assert (first["error_category"], first["error_code"]) == ("exception", "KeyError")
    assert "'k'" in first["message"]
