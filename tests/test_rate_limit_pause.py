"""``rate_limit_pause``: after a 429, a chain waits before its next step, so that one rate
limit does not cascade across providers. A chain setting like any other: validated with
file:line, drawn, explained, simulated, recorded; on the fake clock in tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FakeClock, Scripted, run_cli, write_chain

from engine import ChainConfigError, LLMManager, ProviderError, dot_source, load_chain
from engine.chain.schema import chain_json_schema


def _manager(tmp_path: Path, clock: FakeClock, text: str, **providers) -> LLMManager:
    write_chain(tmp_path, "default", text)
    return LLMManager(
        {"chains_dir": str(tmp_path), "providers": providers}, runtime=clock.runtime()
    )


def test_a_429_pauses_before_the_next_step(tmp_path, clock):
    manager = _manager(tmp_path, clock, "rate_limit_pause: 0.5\nsteps: [a, b]\n",
                       a=Scripted(ProviderError("slow down", code="429")), b=Scripted("ok"))  # fmt: skip
    text, meta = manager.generate_response("hi")
    assert text == "ok" and clock.sleeps == [0.5]
    assert (
        meta.provider_attempts[0]["pause_ms"] == 500 and "pause_ms" not in meta.provider_attempts[1]
    )


@pytest.mark.parametrize(
    ("chain", "outcomes"),
    [
        ("steps: [a, b]\n", [ProviderError("x", code="429")]),  # no pause set
        ("rate_limit_pause: 0.5\nsteps: [a, b]\n", [ProviderError("x", code="503")]),
        ("rate_limit_pause: 0.5\nsteps: [b, a]\n", []),  # the 429 on the last step
    ],
)
def test_no_pause_otherwise(tmp_path, clock, chain, outcomes):
    limited = Scripted(ProviderError("x", code="429"))
    manager = _manager(tmp_path, clock, chain, a=Scripted(*outcomes, "ok") if outcomes else limited,
                       b=Scripted("ok") if outcomes else Scripted(ProviderError("y", code="500")))  # fmt: skip
    manager.generate_response("hi")
    assert clock.sleeps == []


def test_the_pause_never_outlasts_the_deadline(tmp_path, clock):
    manager = _manager(tmp_path, clock, "deadline: 2\nrate_limit_pause: 5\nsteps: [a, b]\n",
                       a=Scripted(ProviderError("x", code="429")), b=Scripted("ok"))  # fmt: skip
    manager.generate_response("hi")
    assert clock.sleeps and clock.sleeps[0] < 2


def test_a_bad_value_is_reported_with_file_and_line(tmp_path):
    path = write_chain(tmp_path, "default", "steps: [a]\nrate_limit_pause: -1\n")
    with pytest.raises(ChainConfigError) as caught:
        load_chain(path)
    assert f"{path}:2:19: rate_limit_pause:" in str(caught.value)
    path = write_chain(tmp_path, "default", "steps: [a]\nrate_limit_paus: 1\n")
    with pytest.raises(ChainConfigError, match="did you mean 'rate_limit_pause'"):
        load_chain(path)
    assert "rate_limit_pause" in chain_json_schema()["$defs"]["ChainSpec"]["properties"]


def test_diagrams_explain_and_simulate_show_it(tmp_path):
    write_chain(tmp_path, "default", "rate_limit_pause: 0.25\nsteps: [deepseek, openai]\n")
    dot = dot_source(load_chain(tmp_path / "default.yaml"))
    assert "after a rate limit (429): a pause of 0.25 s before the next step" in dot
    explained = run_cli("explain", "direct", "--code", "429", "--chains", str(tmp_path))
    assert "deepseek  -> openai after a 0.25 s pause" in explained.stdout
    played = run_cli("simulate", "direct", "--chains", str(tmp_path), "--outcomes",
                 "deepseek=retryable:429")  # fmt: skip
    assert "-> openai after a 250 ms pause" in played.stdout
