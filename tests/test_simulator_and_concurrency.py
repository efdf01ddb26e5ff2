"""The simulator as users drive it (Python and YAML scripts), a smoke load of 200
concurrent async requests with mixed faults, and secrets kept out of everything."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess

import pytest
from helpers import PYTHON, ROOT

from engine import ChainConfigError, LLMManager
from engine.tools.simulator import Behaviour, Script, Simulator, environment, fake_key, load_script


def test_yaml_script(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text(
        "deepseek:\n"
        "  - rate_limit: {retry_after: 2}\n"
        "  - answer: 'four'\n"
        "  - error: 418\n"
        "  - trickle: 0.01\n"
        "  - close\n"
        "cycle: true\n"
    )
    script = load_script(path)
    kinds = [script.take("deepseek") for _ in range(6)]
    assert [b.kind for b in kinds] == [
        "rate_limit",
        "answer",
        "error",
        "trickle",
        "close",
        "rate_limit",
    ]
    assert (kinds[0].retry_after, kinds[1].text, kinds[2].status, kinds[3].interval) == (
        2,
        "four",
        418,
        0.01,
    )


def test_bad_yaml_script_points_at_the_line(tmp_path):
    path = tmp_path / "script.yaml"
    path.write_text("openai:\n  - answer\n  - explode: {}\n  - rate_limit: {retry_afterr: 1}\n")
    with pytest.raises(ChainConfigError) as caught:
        load_script(path)
    problems = [str(p) for p in caught.value.problems]
    assert problems[0].startswith(f"{path}:3:5: openai[1]: unknown behaviour 'explode'")
    assert problems[1].startswith(f"{path}:4:5: openai[2]: unknown setting(s) retry_afterr")


def test_scripts_are_per_provider_and_then_answer():
    with (
        Simulator({"openai": [Behaviour("unavailable")]}) as sim,
        environment(sim),
        LLMManager() as manager,
    ):
        _, meta1 = manager.generate_response("a", provider="openai")
        second, meta2 = manager.generate_response("b", provider="openai")
    assert meta1.provider_attempts[0]["error_code"] == "503"
    assert second == "Hello from the simulator." and meta2.error is None
    assert [r.behaviour for r in sim.requests] == ["unavailable", "answer"]
    assert [r.body["messages"][0]["content"] for r in sim.requests] == ["a", "b"]
    assert all(r.key_sent for r in sim.requests)


def test_simulator_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback only"):
        Simulator(host="0.0.0.0")


MIX = [
    Behaviour("answer"),
    Behaviour("rate_limit", retry_after_ms=10),
    Behaviour("server_error"),
    Behaviour("malformed"),
    Behaviour("cut"),
    Behaviour("answer", delay=0.05),
    Behaviour("overloaded"),
    Behaviour("close"),
    Behaviour("content_filter"),
    Behaviour("unavailable"),
]


async def test_200_concurrent_requests_all_end_classified_without_leaks():
    script = Script({name: MIX for name in ("deepseek", "openai", "claude", "ollama")}, cycle=True)
    with Simulator(script) as sim, environment(sim):
        async with LLMManager(config={"provider_timeout": 5}) as manager:
            results = await asyncio.gather(
                *(manager.agenerate_response(f"q{i}", mode="direct") for i in range(200))
            )
        # every connection the clients opened is closed again
        for _ in range(200):
            if sim.open_connections == 0:
                break
            await asyncio.sleep(0.01)
        assert sim.open_connections == 0
    assert len(results) == 200
    ends = {"succeeded": 0, "aborted": 0, "exhausted": 0}
    for _, meta in results:
        assert meta.provider_attempts
        for attempt in meta.provider_attempts:
            assert attempt["category"] in ("success", "retryable", "timeout", "non_retryable")
            assert attempt["error_code"] is not None or attempt["status"] == "success"
        end = meta.provider_attempts[-1]["next"]
        ends[end] += 1
        assert (meta.error is None) == (end == "succeeded")
    assert ends["succeeded"] > 0 and ends["aborted"] > 0
    assert sum(ends.values()) == 200
    assert len(sim.requests) >= 200


KEYS = {
    "OPENAI_API_KEY": "sk-openai-ZXQ-distinct-7781",
    "DEEPSEEK_API_KEY": "sk-deepseek-ZXQ-distinct-7782",
    "ANTHROPIC_API_KEY": "sk-ant-ZXQ-distinct-7783",
}


def test_no_secret_in_meta_errors_logs_or_output(caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    echoing = Behaviour(
        "auth", message="Incorrect API key provided: sk-openai-ZXQ-distinct-7781 (Bearer header)"
    )
    script = {
        "deepseek": [Behaviour("auth")],
        "openai": [echoing],
        "claude": [Behaviour("server_error")],
        "ollama": [Behaviour("unavailable")],
    }
    with Simulator(script) as sim, environment(sim, keys=False):
        for name, value in KEYS.items():
            monkeypatch.setenv(name, value)
        with LLMManager() as manager:
            text, meta = manager.generate_response("hi")
            print(text, json.dumps(meta.to_dict()), repr(manager.providers))
    captured = capsys.readouterr()
    everything = "\n".join(
        [text, json.dumps(meta.to_dict()), caplog.text, captured.out, captured.err]
    )
    assert meta.provider_attempts[1]["error_code"] == "401"
    for value in KEYS.values():
        assert value not in everything
        assert "ZXQ-distinct" not in everything


def test_demo_and_its_output_hold_no_secret():
    result = subprocess.run(
        [PYTHON, "-m", "engine.cli", "demo"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for mode in ("direct", "research", "code_generation", "composition", "hierarchical"):
        assert f"== {mode} " in out
    assert "provider_error:429" in out and "timeout:read_timeout" in out
    assert "answer (claude, claude-sonnet-4-5): 2 + 2 = 4." in out
    assert "-> aborted" in out
    assert "summary: 5 modes, 4 answered, 1 failed" in out
    for name in ("deepseek", "openai", "claude"):
        assert fake_key(name) not in out
