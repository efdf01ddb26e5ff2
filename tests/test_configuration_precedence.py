"""Configuration precedence: the config dict over the environment over the YAML files."""

from __future__ import annotations

import pytest
from helpers import Scripted, chains_dir

from engine import ChainConfigError, ExecutionMode, LLMManager, ProviderError


def order(manager: LLMManager, mode: ExecutionMode) -> list[str]:
    return [step.provider for step in manager.chain_for(mode).chain.steps]


def test_env_lists_replace_the_yaml_order(monkeypatch):
    monkeypatch.setenv("TORQ_DIRECT_CHAIN", " openai , claude ")
    monkeypatch.setenv("TORQ_RESEARCH_CHAIN", "ollama,claude")
    monkeypatch.setenv("TORQ_CODE_CHAIN", "deepseek")
    manager = LLMManager()
    assert order(manager, ExecutionMode.DIRECT) == ["openai", "claude"]
    assert order(manager, ExecutionMode.RESEARCH) == ["ollama", "claude"]
    assert order(manager, ExecutionMode.CODE_GENERATION) == ["deepseek"]
    assert order(manager, ExecutionMode.COMPOSITION) == ["deepseek", "claude"]


def test_env_order_is_what_runs(monkeypatch, clock):
    monkeypatch.setenv("TORQ_DIRECT_CHAIN", "claude,deepseek")
    claude = Scripted(ProviderError("x", code="503"))
    manager = LLMManager(
        config={"providers": {"claude": claude, "deepseek": Scripted("ok")}},
        runtime=clock.runtime(),
    )
    _, meta = manager.generate_response("hi")
    assert [a["provider"] for a in meta.provider_attempts] == ["claude", "deepseek"]


def test_config_dict_wins_over_env(monkeypatch):
    monkeypatch.setenv("TORQ_DIRECT_CHAIN", "openai")
    monkeypatch.setenv("TORQ_PROVIDER_TIMEOUT", "7")
    manager = LLMManager(config={"chains": {"direct": ["claude", "ollama"]}, "provider_timeout": 3})
    assert order(manager, ExecutionMode.DIRECT) == ["claude", "ollama"]
    assert {s.timeout for s in manager.chain_for("direct").chain.steps} == {3}


def test_provider_timeout_from_env_overrides_every_step(monkeypatch):
    monkeypatch.setenv("TORQ_PROVIDER_TIMEOUT", "12.5")
    manager = LLMManager()
    for chain in manager.chains.values():
        assert {step.timeout for step in chain.chain.steps} == {12.5}


def test_env_order_keeps_the_yaml_step_settings(tmp_path, monkeypatch):
    folder = chains_dir(
        tmp_path,
        {"direct": "steps: [deepseek, {provider: openai, model: gpt-4o-mini, retries: 2}]\n"},
    )
    monkeypatch.setenv("TORQ_DIRECT_CHAIN", "openai,deepseek")
    manager = LLMManager(config={"chains_dir": str(folder)})
    first = manager.chain_for("direct").chain.steps[0]
    assert (first.provider, first.model, first.retries) == ("openai", "gpt-4o-mini", 2)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "TORQ_DIRECT_CHAIN",
            "deepseek,opnai",
            "env TORQ_DIRECT_CHAIN: unknown provider 'opnai' (did you mean 'openai'?)",
        ),
        ("TORQ_CODE_CHAIN", "claude,claude", "duplicate step id 'claude'"),
        ("TORQ_RESEARCH_CHAIN", " , ", "the provider list is empty"),
    ],
)
def test_bad_env_lists_are_clear_errors_at_construction(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ChainConfigError) as caught:
        LLMManager()
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TORQ_PROVIDER_TIMEOUT", "soon", "TORQ_PROVIDER_TIMEOUT='soon' is not a number"),
        ("TORQ_PROVIDER_TIMEOUT", "-1", "must be a positive number"),
        ("TORQ_FALLBACK_ENABLED", "perhaps", "TORQ_FALLBACK_ENABLED='perhaps' is not a boolean"),
    ],
)
def test_bad_env_values_are_clear_errors(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        LLMManager()


def test_chains_dir_lookup_order(tmp_path, monkeypatch):
    env_dir = chains_dir(tmp_path / "env", {"direct": "steps: [ollama]\n"})
    arg_dir = chains_dir(tmp_path / "arg", {"direct": "steps: [claude]\n"})
    monkeypatch.setenv("TORQ_CHAINS_DIR", str(env_dir))
    assert order(LLMManager(), ExecutionMode.DIRECT) == ["ollama"]
    assert order(LLMManager(config={"chains_dir": str(arg_dir)}), ExecutionMode.DIRECT) == [
        "claude"
    ]
    monkeypatch.delenv("TORQ_CHAINS_DIR")
    assert order(LLMManager(), ExecutionMode.DIRECT)[0] == "deepseek"


def test_registering_a_provider_checks_it():
    manager = LLMManager()
    with pytest.raises(TypeError, match="no generate_response"):
        manager.register_provider("deepseek", object())
    provider = Scripted("ok")
    manager.register_provider("deepseek", provider)
    assert manager.get_provider("deepseek") is provider
    assert manager.get_provider("nobody") is None


def test_bad_call_arguments_are_clear_errors():
    manager = LLMManager()
    with pytest.raises(ValueError, match="mode 'fast' names no chain; modes: direct, research"):
        manager.generate_response("hi", mode="fast")
    with pytest.raises(ValueError, match="mode 'drect' names no chain \\(did you mean 'direct'"):
        manager.generate_response("hi", mode="drect")
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        manager.generate_response("hi", timeout=0)
