"""The seed's eight acceptance criteria and TORQ Console's fallback behaviours, as a user of
LLMManager sees them (registered providers, the packaged chains, a fake clock)."""

from __future__ import annotations

import json

import pytest
from helpers import AsyncScripted, FakeClock, Scripted, assert_invariants, chains_dir

from engine import (
    AIResponseError,
    AITimeoutError,
    ExecutionMode,
    GenerationMeta,
    LLMManager,
    ProviderError,
)


def manager_with(clock: FakeClock, config: dict | None = None, **providers) -> LLMManager:
    return LLMManager(config={**(config or {}), "providers": providers}, runtime=clock.runtime())


# 1. Existing code continues to work (backward compatible)
def test_1_existing_calls_keep_working(clock):
    manager = manager_with(clock, deepseek=Scripted("4"), claude=Scripted("4"))
    text, meta = manager.generate_response("What is 2+2?")
    assert text == "4" and isinstance(meta, GenerationMeta)
    text, meta = manager.generate_response("What is 2+2?", provider="claude")
    assert text == "4" and meta.provider == "claude"
    assert_invariants(meta)


# 2. New code gets automatic fallback
def test_2_new_code_gets_fallback(clock):
    manager = manager_with(
        clock,
        claude=Scripted(ProviderError("overloaded", code="529")),
        openai=Scripted("answer"),
    )
    text, meta = manager.generate_response("Explain", mode=ExecutionMode.RESEARCH)
    assert text == "answer"
    assert [a["provider"] for a in meta.provider_attempts] == ["claude", "openai"]
    assert_invariants(meta)


# 3. provider_attempts always populated (length >= 1)
@pytest.mark.parametrize("use_fallback", [True, False])
@pytest.mark.parametrize("outcome", ["ok", ProviderError("down", code="503")])
def test_3_attempts_always_populated(clock, use_fallback, outcome):
    manager = manager_with(clock, deepseek=Scripted(outcome), claude=Scripted(outcome))
    _, meta = manager.generate_response("hi", use_fallback=use_fallback)
    assert len(meta.provider_attempts) >= 1
    assert_invariants(meta)


# 4. fallback_used = True when multiple providers tried
def test_4_fallback_used_exactly_when_several_attempts(clock):
    manager = manager_with(
        clock, deepseek=Scripted(ProviderError("x", code="500")), openai=Scripted("ok")
    )
    _, meta = manager.generate_response("hi")
    assert meta.fallback_used is True and len(meta.provider_attempts) == 2
    manager = manager_with(clock, deepseek=Scripted("ok"))
    _, meta = manager.generate_response("hi")
    assert meta.fallback_used is False and len(meta.provider_attempts) == 1


# 5. fallback_reason set on fallback
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (AITimeoutError("slow"), "timeout"),
        (ProviderError("Rate limited", code="429"), "provider_error:429"),
        (ProviderError("Internal error", code="500"), "provider_error:500"),
    ],
)
def test_5_fallback_reason(clock, failure, reason):
    manager = manager_with(clock, deepseek=Scripted(failure), openai=Scripted("ok"))
    text, meta = manager.generate_response("hi")
    assert text == "ok" and meta.provider == "openai"
    assert meta.fallback_reason == reason
    assert_invariants(meta)


# 6. Single provider mode still works
def test_6_single_provider_mode(clock):
    claude = Scripted("from claude", model="claude-x")
    manager = manager_with(clock, claude=claude, deepseek=Scripted())
    text, meta = manager.generate_response("hi", use_fallback=False)
    assert text == "from claude" and meta.provider == "claude" and meta.model == "claude-x"
    assert len(meta.provider_attempts) == 1 and not meta.fallback_used
    # a named provider skips the chain even when it fails
    failing = manager_with(clock, openai=Scripted(ProviderError("down", code="503")))
    text, meta = failing.generate_response("hi", provider="openai")
    assert text.startswith("I apologize")
    assert [a["provider"] for a in meta.provider_attempts] == ["openai"]
    assert meta.error_category == "provider_error"
    assert_invariants(meta)


# 7. Can disable fallback via config (and via the environment)
def test_7_disable_via_config(clock):
    manager = manager_with(
        clock, {"fallback_enabled": False}, claude=Scripted("c"), deepseek=Scripted()
    )
    assert manager.fallback_enabled is False and manager.fallback_executor is None
    text, meta = manager.generate_response("hi")
    assert text == "c" and len(meta.provider_attempts) == 1


def test_7_disable_via_environment(clock, monkeypatch):
    monkeypatch.setenv("TORQ_FALLBACK_ENABLED", "false")
    manager = manager_with(clock, claude=Scripted(ProviderError("down", code="503")))
    _, meta = manager.generate_response("hi")
    assert [a["provider"] for a in meta.provider_attempts] == ["claude"]
    # the config dict wins over the environment
    manager = manager_with(clock, {"fallback_enabled": True})
    assert manager.fallback_enabled is True


# 8. All metadata invariants preserved, for success, fallback, abort and exhaustion
@pytest.mark.parametrize(
    "script",
    [
        {"deepseek": ["ok"]},
        {"deepseek": [ProviderError("r", code="429")], "openai": ["ok"]},
        {"deepseek": [AIResponseError("blocked", code="content_filter")]},
        {
            "deepseek": [ProviderError("a", code="500")],
            "openai": [AITimeoutError("b")],
            "claude": [RuntimeError("c")],
            "ollama": [ProviderError("d", code="connect_error")],
        },
    ],
)
def test_8_invariants(clock, script):
    manager = manager_with(clock, **{name: Scripted(*items) for name, items in script.items()})
    _, meta = manager.generate_response("hi")
    assert_invariants(meta)
    assert GenerationMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


# TORQ behaviours -------------------------------------------------------------------------


def test_policy_block_stops_after_one_attempt(clock):
    openai = Scripted("never")
    manager = manager_with(
        clock,
        deepseek=Scripted(AIResponseError("policy block", code="content_filter")),
        openai=openai,
    )
    text, meta = manager.generate_response("something disallowed")
    assert len(meta.provider_attempts) == 1 and openai.calls == []
    assert meta.error_category == "ai_error"
    assert meta.provider_attempts[0]["error_code"] == "content_filter"
    assert meta.provider_attempts[0]["next"] == "aborted"
    assert text.startswith("I apologize, but I encountered an error")


def test_prompt_reaches_every_provider_unchanged(clock):
    prompt = "  Exactly this\nprompt, ünïcode and {braces} %s  "
    providers = {
        "deepseek": Scripted(ProviderError("a", code="500")),
        "openai": Scripted(AITimeoutError("b")),
        "claude": Scripted("done"),
    }
    manager = manager_with(clock, **providers)
    text, _ = manager.generate_response(prompt)
    assert text == "done"
    for provider in providers.values():
        assert [call["prompt"] for call in provider.calls] == [prompt]


def test_missing_provider_is_recorded_and_skipped(clock, tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [mistral, openai]\n"})
    # Declared as registered by the application, which then never registers it.
    config = {"chains_dir": str(folder), "registered_providers": ["mistral"]}
    manager = manager_with(clock, config, openai=Scripted("ok"))
    text, meta = manager.generate_response("hi")
    assert text == "ok"
    first = meta.provider_attempts[0]
    assert (first["provider"], first["error_code"]) == ("mistral", "provider_not_found")
    assert meta.fallback_reason == "provider_error:provider_not_found"


def test_all_providers_missing_is_a_clear_all_failed_error(clock, tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [mistral, groq, local]\n"})
    config = {"chains_dir": str(folder), "registered_providers": ["mistral", "groq", "local"]}
    manager = LLMManager(config=config, runtime=clock.runtime())
    text, meta = manager.generate_response("hi")
    assert [a["error_code"] for a in meta.provider_attempts] == ["provider_not_found"] * 3
    assert meta.error.startswith("all providers failed for chain 'direct' after 3 attempts")
    for name in ("mistral", "groq", "local"):
        assert f"no provider named '{name}' is registered" in meta.error
    assert meta.error_category == "provider_error"
    assert "currently unavailable" in text


def test_built_in_providers_without_keys_are_not_configured(clock):
    manager = LLMManager(runtime=clock.runtime())
    text, meta = manager.generate_response("hi")
    codes = [(a["provider"], a["error_code"]) for a in meta.provider_attempts]
    assert codes == [
        ("deepseek", "not_configured"),
        ("openai", "not_configured"),
        ("claude", "not_configured"),
        ("ollama", "connect_error"),  # keyless, and nothing listens where it points
    ]
    assert "DEEPSEEK_API_KEY is not set" in meta.provider_attempts[0]["message"]
    assert text.startswith("I apologize")


def test_default_chain_serves_modes_without_a_file(clock):
    for mode in (ExecutionMode.COMPOSITION, ExecutionMode.HIERARCHICAL):
        manager = manager_with(
            clock, deepseek=Scripted(ProviderError("x", code="503")), claude=Scripted("ok")
        )
        text, meta = manager.generate_response("hi", mode=mode)
        assert text == "ok" and meta.mode is mode
        assert [a["provider"] for a in meta.provider_attempts] == ["deepseek", "claude"]


@pytest.mark.parametrize("kind", [Scripted, AsyncScripted])
async def test_async_twin_behaves_the_same(clock, kind):
    manager = manager_with(
        clock, deepseek=kind(ProviderError("r", code="429")), openai=kind("4", model="gpt-4")
    )
    text, meta = await manager.agenerate_response("What is 2+2?")
    assert text == "4" and meta.provider == "openai" and meta.model == "gpt-4"
    assert meta.fallback_reason == "provider_error:429"
    assert_invariants(meta)
