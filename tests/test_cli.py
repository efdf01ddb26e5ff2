"""The torq-fallback command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import CHAINS, PYTHON, ROOT, run_cli

MALFORMED = Path(__file__).parent / "malformed"


cli = run_cli


def test_version():
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("torq-fallback ")


def test_validate_the_default_chains():
    result = cli("validate", str(CHAINS))
    assert result.returncode == 0, result.stderr
    assert "ok: 4 files valid" in result.stdout


def test_validate_without_paths_checks_the_chains_in_use(tmp_path):
    (tmp_path / "direct.yaml").write_text("steps: [deepseek, deepseek]\n")
    result = cli("validate", env={"TORQ_CHAINS_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert f"{tmp_path / 'direct.yaml'}:1:19: steps[1]: duplicate step id" in result.stdout


def test_validate_reports_every_problem_and_exits_1():
    result = cli("validate", str(MALFORMED / "several_problems.yaml"), str(CHAINS / "direct.yaml"))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4  # three problems, then the summary on the same stream
    assert lines[0].startswith(f"{MALFORMED / 'several_problems.yaml'}:7:5: steps[0].timeot:")
    assert lines[3] == "3 problems in 1 of 2 files"
    assert "Traceback" not in result.stderr


def test_validate_json():
    result = cli("validate", "--json", str(MALFORMED / "target_names_no_step.yaml"))
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    (problem,) = data["problems"]
    assert (problem["line"], problem["column"], problem["field"]) == (
        4,
        21,
        "steps[0].goto.timeout",
    )
    assert "did you mean 'claude'?" in problem["message"]


def test_validate_a_directory_without_chains_is_bad_usage(tmp_path):
    result = cli("validate", str(tmp_path))
    assert result.returncode == 2
    assert "no chain files" in result.stderr


def test_validate_a_missing_file_is_bad_usage():
    result = cli("validate", "no/such/chain.yaml")
    assert result.returncode == 2
    assert "torq-fallback: no such file or directory: no/such/chain.yaml" in result.stderr


def test_help_shows_examples():
    result = cli("validate", "--help")
    assert result.returncode == 0
    assert "torq-fallback validate chains/" in result.stdout


def test_validate_a_directory_checks_its_providers_file(tmp_path):
    (tmp_path / "direct.yaml").write_text("steps: [deepseek]\n")
    (tmp_path / "providers.yaml").write_text("providers:\n  groq:\n    kind: openai\n")
    result = cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert (
        f"{tmp_path / 'providers.yaml'}:2:3: providers.groq: a new provider needs base_url, model"
        in result.stdout
    )


def test_simulator_command_serves_a_script_until_terminated(tmp_path):
    import os
    import signal

    import httpx

    script = tmp_path / "faults.yaml"
    script.write_text("openai:\n  - rate_limit: {retry_after: 3}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
    proc = subprocess.Popen(
        [PYTHON, "-m", "engine.cli", "simulator", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("provider simulator listening on http://127.0.0.1:")
        base = first.rsplit(" ", 1)[1].strip()
        exports = [proc.stdout.readline().strip() for _ in range(7)]
        assert f"export OPENAI_BASE_URL={base}/openai/v1" in exports
        reply = httpx.post(f"{base}/openai/v1/chat/completions", json={"model": "m"}, timeout=5)
        assert reply.status_code == 429 and reply.headers["retry-after"] == "3"
        assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()


def test_simulator_command_with_a_bad_script_is_bad_usage(tmp_path):
    script = tmp_path / "faults.yaml"
    script.write_text("openai:\n  - explode\n")
    result = cli("simulator", "--script", str(script))
    assert result.returncode == 2
    assert f"{script}:2:5: openai[0]: unknown behaviour 'explode'" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_refuses_undeclared_providers(tmp_path):
    (tmp_path / "direct.yaml").write_text("steps: [deepseek, deepsek, {provider: groq}]\n")
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  groq:\n    kind: openai\n    base_url: https://api.groq.com/openai/v1\n    model: m\n"
    )
    result = cli("validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"{tmp_path / 'direct.yaml'}:1:19: steps[1]: unknown provider 'deepsek' (did you mean "
        "'deepseek'?): neither built in, declared in providers.yaml, nor registered"
    )
    assert len(lines) == 2 and lines[1] == "1 problem in 1 of 2 files"  # groq is declared
    data = json.loads(cli("validate", "--json", str(tmp_path)).stdout)
    assert data["valid"] is False and len(data["problems"]) == 1
