"""Context windows: the model catalogue (built-in defaults, providers.yaml overrides) and the
pre-call estimate skip a step, or take a pool member out of the draw, when the model cannot
hold the request plus the output it asks for; over loopback, with nothing sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_invariants, run_cli

from engine import LLMManager
from engine.tools.simulator import Behaviour, Script, Simulator

PROVIDERS = """\
providers:
  small: {kind: openai, base_url: "{sim}/small/v1", model: tiny, api_key_env: SMALL_KEY,
          models: {tiny: {context: 200, max_output: 100}}}
  exact: {kind: openai, base_url: "{sim}/exact/v1", model: gpt-4o-tiny, api_key_env: BIG_KEY,
          models: {gpt-4o-tiny: {context: 1000}}}
  big: {kind: openai, base_url: "{sim}/big/v1", model: huge, api_key_env: BIG_KEY,
        models: {huge: {context: 1000000}}}
"""


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.setenv("SMALL_KEY", "k1")
    monkeypatch.setenv("BIG_KEY", "k2")
    with Simulator() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def manager_for(tmp_path: Path, sim: Simulator, chain: str) -> LLMManager:
    folder = tmp_path / "chains"
    folder.mkdir(exist_ok=True)
    base = f"http://{sim.host}:{sim.port}"
    (folder / "providers.yaml").write_text(PROVIDERS.replace("{sim}", base))
    (folder / "default.yaml").write_text(chain)
    return LLMManager(config={"chains_dir": str(folder)})


def test_a_step_whose_window_is_too_small_is_skipped_unsent(tmp_path, sim):
    sim.script = Script({"big": [Behaviour("answer", text="held")]})
    with manager_for(tmp_path, sim, "steps: [small, big]\n") as manager:
        completion, meta = manager.chat([{"role": "user", "content": "x" * 2000}])
    assert completion.text == "held"
    first, second = meta.provider_attempts
    assert (first["status"], first["error_code"], first["provider"]) == (
        "skipped", "context_too_small", "small")  # fmt: skip
    assert "tiny holds 200 tokens; the request needs about 5" in first["message"]
    assert second["provider"] == "big"
    assert [r.provider for r in sim.requests] == ["big"]  # nothing sent to small
    assert meta.fallback_reason == "provider_error:context_too_small"
    assert_invariants(meta)


def test_the_output_asked_for_counts(tmp_path, sim):
    sim.script = Script({"small": [Behaviour("answer", text="fits")],
                         "big": [Behaviour("answer", text="held")]})  # fmt: skip
    with manager_for(tmp_path, sim, "steps: [small, big]\n") as manager:
        completion, _ = manager.chat([{"role": "user", "content": "short"}], max_tokens=50)
        assert completion.text == "fits"
        completion, meta = manager.chat([{"role": "user", "content": "short"}], max_tokens=400)
    assert completion.text == "held"
    assert "+ 400 out" in meta.provider_attempts[0]["message"]


def test_a_built_in_models_window_is_known(tmp_path, sim):
    sim.script = Script({"big": [Behaviour("answer", text="held")]})
    chain = "steps:\n  - provider: openai\n    model: gpt-4o-mini\n  - big\n"
    with manager_for(tmp_path, sim, chain) as manager:
        # ~140,000 tokens counted (o200k): more than gpt-4o-mini's 128,000
        completion, meta = manager.chat([{"role": "user", "content": "word " * 140_000}])
    assert completion.text == "held"
    assert meta.provider_attempts[0]["error_code"] == "context_too_small"
    assert "gpt-4o-mini holds 128000 tokens; the request needs counted 1400" in \
        meta.provider_attempts[0]["message"]  # fmt: skip


def test_a_pool_member_too_small_leaves_the_draw(tmp_path, sim):
    sim.script = Script({"big": [Behaviour("answer", text="held")] * 5})
    chain = "steps:\n  - id: p\n    pool: [small, big]\n"
    with manager_for(tmp_path, sim, chain) as manager:
        for _ in range(5):
            completion, meta = manager.chat([{"role": "user", "content": "x" * 2000}])
            assert completion.text == "held" and len(meta.provider_attempts) == 1
    assert {r.provider for r in sim.requests} == {"big"}


def test_a_pool_that_cannot_hold_the_request_is_skipped(tmp_path, sim):
    chain = "steps:\n  - id: p\n    pool: [small]\n  - big\n"
    sim.script = Script({"big": [Behaviour("answer", text="held")]})
    with manager_for(tmp_path, sim, chain) as manager:
        completion, meta = manager.chat([{"role": "user", "content": "x" * 2000}])
    first = meta.provider_attempts[0]
    assert (first["status"], first["state"], first["error_code"]) == (
        "skipped", "p", "context_too_small")  # fmt: skip
    assert "no member of pool 'p' can hold the request" in first["message"]
    assert completion.text == "held"


def test_a_models_entry_is_validated(tmp_path):
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  openai:\n    models:\n      gpt-4o: {context: 0, max_ouput: 5}\n"
    )
    (tmp_path / "default.yaml").write_text("steps: [openai]\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "providers.openai.models.gpt-4o.context: must be 1 or more" in result.stdout
    assert "unknown key 'max_ouput' (did you mean 'max_output'?)" in result.stdout


def test_openai_models_are_counted_exactly_both_ways(tmp_path, sim):
    """The estimate (4 characters a token) is wrong both ways for these: English words are
    5 characters a token here, a rare Chinese character two tokens. Counting decides."""
    sim.script = Script({"exact": [Behaviour("answer", text="counted in")],
                         "big": [Behaviour("answer", text="held")] * 2})  # fmt: skip
    with manager_for(tmp_path, sim, "steps: [exact, big]\n") as manager:
        english = "word " * 900  # 4,500 characters: ~1,125 by the estimate, ~900 counted
        completion, meta = manager.chat([{"role": "user", "content": english}])
        assert completion.text == "counted in" and len(meta.provider_attempts) == 1
        rare = "龘" * 1000  # 1,000 characters: ~250 by the estimate, ~2,000 counted
        completion, meta = manager.chat([{"role": "user", "content": rare}])
    assert completion.text == "held"
    assert "gpt-4o-tiny holds 1000 tokens; the request needs counted" in \
        meta.provider_attempts[0]["message"]  # fmt: skip
