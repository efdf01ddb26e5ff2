"""The CLI's habits and the engine's messages, as a user meets them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from helpers import ROOT, Scripted, run_cli

from engine import LLMManager, ProviderError
from engine.tools.simulator import Behaviour, Simulator


def test_run_with_an_unknown_provider_is_bad_usage():
    result = run_cli("run", "hi", "--provider", "claud")
    assert result.returncode == 2 and "did you mean 'claude'" in result.stderr


def test_options_are_checked_before_any_work():
    result = run_cli("demo", "--attempt-timeout", "0")
    assert result.returncode == 2 and result.stdout == ""


def test_output_cut_short_by_head_exits_quietly():
    proc = subprocess.run(
        f"{sys.executable} -m engine.cli schema | head -1", shell=True, capture_output=True,
        text=True, cwd=ROOT,
    )  # fmt: skip
    assert (
        proc.stdout.strip() == "{"
        and "Traceback" not in proc.stderr
        and "Broken" not in proc.stderr
    )


def test_written_files_respect_the_umask_and_unchanged_ones_are_left_alone(tmp_path):
    out = tmp_path / "d"
    first = run_cli("render", "--out", str(out), "--format", "dot")
    assert first.returncode == 0
    path = out / "direct.dot"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o666 & ~0o022  # the test process's umask (not 0600)
    before = os.stat(path).st_mtime_ns
    again = run_cli("render", "--out", str(out), "--format", "dot")
    assert f"unchanged: {path}" in again.stdout and os.stat(path).st_mtime_ns == before


def test_the_single_provider_path_names_the_provider():
    manager = LLMManager(config={"providers": {"claude": Scripted(ProviderError("x", code="503"))}})
    _, meta = manager.generate_response("hi", provider="claude")
    assert meta.error.startswith("provider 'claude' failed after 1 attempt")
    assert "chain 'direct'" not in meta.error


def test_an_aborted_request_is_not_told_to_try_again():
    from engine import AIResponseError

    manager = LLMManager(
        config={"providers": {"claude": Scripted(AIResponseError("no", code="content_filter"))}}
    )
    text, _ = manager.generate_response("hi", provider="claude")
    assert "would fail on every provider" in text and "Please try again" not in text


def test_http_errors_carry_the_providers_own_words(monkeypatch):
    script = {"claude": [Behaviour("error", status=404, body="model gone")]}
    with Simulator(script) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        with LLMManager() as manager:
            _, meta = manager.generate_response("hi", provider="claude")
    message = meta.provider_attempts[0]["message"]
    assert message == "claude: HTTP 404: model gone"


def test_a_refused_connection_reads_the_same_sync_and_async(monkeypatch):
    import asyncio

    from helpers import closed_port

    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    with LLMManager() as manager:
        _, sync_meta = manager.generate_response("hi", provider="claude")
        _, async_meta = asyncio.run(manager.agenerate_response("hi", provider="claude"))
    assert sync_meta.provider_attempts[0]["message"] == "claude: connection refused"
    assert async_meta.provider_attempts[0]["message"] == "claude: connection refused"


def _folder_with_a_typo(tmp_path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek, claud]\n")
    return folder


def test_a_misspelt_provider_is_an_error_unless_it_is_the_applications(tmp_path):
    folder = _folder_with_a_typo(tmp_path)
    result = run_cli("validate", str(folder))
    assert result.returncode == 1
    assert (
        f"{folder / 'default.yaml'}:1:19: steps[1]: unknown provider 'claud' (did you mean 'claude'?)"
        in result.stdout
    )
    assert "1 problem in 1 of 1 file" in result.stdout  # problems and summary on one stream
    declared = run_cli("validate", str(folder), "--registered", "claud")
    assert declared.returncode == 0 and "ok: 1 file valid" in declared.stdout
    from engine import ChainConfigError, LLMManager

    with pytest.raises(ChainConfigError, match="unknown provider 'claud'"):
        LLMManager({"chains_dir": str(folder)})
    LLMManager({"chains_dir": str(folder), "registered_providers": ["claud"]}).close()


def test_every_problem_of_a_file_in_one_pass(tmp_path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek, opnai]\ndeadlin: 3\n")
    result = run_cli("validate", str(folder))
    assert "unknown key 'deadlin'" in result.stdout and "unknown provider 'opnai'" in result.stdout


def test_simulate_and_explain_treat_an_undeclared_provider_as_a_real_call_does(tmp_path):
    import json

    folder = _folder_with_a_typo(tmp_path)
    refused = run_cli(
        "simulate", "direct", "--outcomes", "deepseek=retryable:503", "--chains", str(folder)
    )
    assert refused.returncode == 2 and "unknown provider 'claud'" in refused.stderr
    result = run_cli(
        "simulate",
        "direct",
        "--outcomes",
        "deepseek=retryable:503",
        "--chains",
        str(folder),
        "--json",
        "--registered",
        "claud",
    )
    attempts = json.loads(result.stdout)["meta"]["provider_attempts"]
    assert [(a["provider"], a["error_code"]) for a in attempts] == [
        ("deepseek", "503"),
        ("claud", "provider_not_found"),
    ]
    assert result.returncode == 1
    explained = run_cli(
        "explain", "direct", "--code", "503", "--chains", str(folder), "--registered", "claud"
    ).stdout
    assert "provider 'claud' is not declared: every call ends provider_not_found" in explained


def test_a_broken_providers_file_is_reported_once(tmp_path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [groq]\n")
    (folder / "providers.yaml").write_text(
        "providers:\n  groq: {kind: openai, base_url: http://x}\n"
    )
    result = run_cli("validate", str(folder))
    assert result.returncode == 1
    assert "a new provider needs model" in result.stdout
    assert "neither built in nor declared" not in result.stdout


def test_cost_is_estimated_from_the_price_table(tmp_path, monkeypatch):
    script = {"claude": [Behaviour("answer", tokens_in=1000, tokens_out=2000)],
              "groq": [Behaviour("answer", tokens_in=10, tokens_out=10)],
              "openai": [Behaviour("answer", model="gpt-4.1-mini-2025-04-14", tokens_in=1_000_000, tokens_out=0)]}  # fmt: skip
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [claude]\n")
    with Simulator(script) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        (folder / "providers.yaml").write_text(
            "providers:\n"
            f"  groq: {{kind: openai, base_url: '{sim.base_url('groq')}', model: llama-x}}\n"
            "  claude: {prices: {claude-sonnet-4-5: {input: 1, output: 2}}}\n"
        )
        with LLMManager(config={"chains_dir": str(folder)}) as manager:
            _, claude = manager.generate_response("hi", provider="claude")
            _, groq = manager.generate_response("hi", provider="groq")
            _, openai = manager.generate_response("hi", provider="openai")
    assert claude.cost_usd_est == (1000 * 1 + 2000 * 2) / 1_000_000  # the file's price wins
    assert groq.cost_usd_est is None  # no price known for the model: no guess
    assert openai.cost_usd_est == 0.40  # a dated model is priced as its family
    assert openai.provider_attempts[0]["cost_usd_est"] == 0.40


def test_prices_are_validated(tmp_path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  openai:\n    prices: {gpt-x: {input: -1, outptu: 2}}\n")
    _, problems = check_providers_file(path)
    assert problems and all(p.line == 3 for p in problems)


def test_the_demo_answers_each_prompt_whatever_the_attempt_timeout():
    for timeout in ("1", "2"):
        out = run_cli("demo", "--attempt-timeout", timeout).stdout
        assert "Three sources agree: the answer is 4." in out
        assert "answer (openai, gpt-4.1-mini): def add(a: int, b: int) -> int:" in out
        assert "answer (claude, claude-sonnet-4-5): Plan: outline, draft, review." in out


# -- the same habits in every command: usage errors exit 2 with the command's own usage ------


def test_run_without_a_prompt_is_bad_usage():
    result = run_cli("run")
    assert result.returncode == 2
    assert result.stderr == "torq-fallback: run: give a PROMPT, --messages FILE.json, or both\n"


def test_render_with_nothing_to_draw_fails(tmp_path):
    result = run_cli("render", "--chains", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"no chain files (*.yaml, *.yml) in {tmp_path}" in result.stderr
    assert not (tmp_path / "out").exists()


def _log(tmp_path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek]\n")
    (folder / "direct.yaml").write_text("steps: [deepseek]\n")
    log = tmp_path / "torq.jsonl"
    config = {"chains_dir": str(folder), "telemetry": {"path": str(log)},
              "providers": {"deepseek": Scripted("ok")}}  # fmt: skip
    with LLMManager(config) as manager:
        manager.generate_response("hi")
    return log


def test_stats_for_a_chain_the_log_never_saw_fails(tmp_path):
    log = _log(tmp_path)
    result = run_cli("stats", str(log), "--chain", "drect")
    assert result.returncode == 2
    assert "--chain 'drect': no request of that chain" in result.stderr
    assert "(did you mean 'direct'?); chains there: direct" in result.stderr


def test_since_lists_the_forms_it_takes(tmp_path):
    result = run_cli("stats", str(_log(tmp_path)), "--since", "yesterday")
    assert result.returncode == 2
    assert (
        "--since 'yesterday': not a time; write a duration ago (90s, 30m, 2h, 1d)" in result.stderr
    )
    assert "Invalid isoformat" not in result.stderr


def test_each_json_option_says_what_it_prints():
    helps = {
        name: " ".join(run_cli(name, "--help").stdout.split())
        for name in ("run", "health", "stats")
    }
    assert "print {response, meta} as JSON" in helps["run"]
    assert "{response, meta}" not in helps["health"] and "each breaker's state" in helps["health"]
    assert (
        "{response, meta}" not in helps["stats"] and "per chain and per provider" in helps["stats"]
    )


def test_a_bad_option_shows_the_commands_own_usage():
    result = run_cli("validate", "--strcit")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: torq-fallback validate ")
    assert "torq-fallback validate: error: unrecognized arguments: --strcit" in result.stderr


def test_a_missing_file_is_bad_usage_everywhere(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    for args in (("validate", missing), ("stats", missing)):
        result = run_cli(*args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr and missing in result.stderr


def test_health_says_where_health_lives_in_words(redis_server):
    result = run_cli(
        "health", env={"TORQ_REDIS_URL": f"redis://:s3cret-pass@127.0.0.1:{redis_server.port}/3"}
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == (
        f"provider health (shared through Redis at 127.0.0.1:{redis_server.port}/3, keys torq:health:*)"
    )
    assert "RedisHealthStore(" not in result.stdout and "s3cret" not in result.stdout
    local = run_cli("health")
    assert local.stdout.splitlines()[0] == "provider health (local)"
