"""The review commands (render, simulate, explain, run, schema), run as a user runs them:
in a subprocess, checking output and exit codes, error paths included."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from helpers import CHAINS, PYTHON, run_cli

from engine.tools.simulator import Behaviour, Simulator

cli = run_cli


COMMANDS = [
    "validate",
    "render",
    "simulate",
    "explain",
    "run",
    "schema",
    "demo",
    "simulator",
    "health",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere_shows_an_example(command):
    result = cli(command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout and f"torq-fallback {command}" in result.stdout


def test_top_level_help_lists_every_command():
    result = cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_no_command_is_bad_usage():
    assert cli().returncode == 2


# render --------------------------------------------------------------------------------


def test_render_writes_every_format_and_check_passes(tmp_path, graphviz_dot):
    out = tmp_path / "d"
    result = cli(
        "render", "--chains", str(CHAINS), "--out", str(out), "--format", "svg,png,dot,mermaid"
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{c}.{s}"
        for c in ("breaker", "code_generation", "default", "direct", "research")
        for s in ("svg", "png", "dot", "mmd")
    )
    assert (out / "direct.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (out / "direct.svg").read_bytes()
    check = cli(
        "render",
        "--chains",
        str(CHAINS),
        "--out",
        str(out),
        "--format",
        "svg,png,dot,mermaid",
        "--check",
    )
    assert check.returncode == 0 and "ok: diagrams" in check.stdout


def test_render_check_reports_stale_missing_and_orphan_files(tmp_path):
    out = tmp_path / "d"
    assert (
        cli("render", "--chains", str(CHAINS), "--out", str(out), "--format", "dot").returncode == 0
    )
    (out / "direct.dot").write_text("digraph old {}\n")
    (out / "research.dot").unlink()
    (out / "retired.dot").write_text("digraph retired {}\n")
    result = cli("render", "--chains", str(CHAINS), "--out", str(out), "--format", "dot", "--check")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"stale: {out / 'direct.dot'}",
        f"missing: {out / 'research.dot'}",
        f"orphan: {out / 'retired.dot'} (no chain 'retired')",
    ]
    assert "run: torq-fallback render" in result.stderr


def test_the_committed_diagrams_pass_the_check(graphviz_dot):
    result = cli("render", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_dot_svg_explains_and_dot_mermaid_still_work(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(PYTHON)
    env = {"PATH": str(bin_dir)}
    assert shutil.which("dot", path=str(bin_dir)) is None
    result = cli("render", "--out", str(tmp_path / "a"), "--format", "svg", env=env)
    assert result.returncode == 2
    assert (
        "need Graphviz's `dot` program" in result.stderr
        and "apt-get install graphviz" in result.stderr
    )
    assert "Traceback" not in result.stderr
    ok = cli("render", "--out", str(tmp_path / "b"), "--format", "dot,mermaid", env=env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "b" / "direct.mmd").exists()


def test_render_unknown_format_is_bad_usage(tmp_path):
    result = cli("render", "--out", str(tmp_path), "--format", "svg,jpeg")
    assert result.returncode == 2
    assert "unknown format(s) jpeg" in result.stderr


# simulate ------------------------------------------------------------------------------


def test_simulate_prints_timeline_and_meta_deterministically():
    args = (
        "simulate",
        "direct",
        "--outcomes",
        "deepseek=retryable:429,openai=timeout,claude=success",
    )
    first, second = cli(*args), cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert lines[0] == "mode direct: chain 'direct' (deepseek -> openai -> claude -> ollama)"
    assert "provider_error:429" in lines[2] and "-> openai" in lines[2]
    assert "timeout" in lines[3] and "-> claude" in lines[3]
    assert "-> succeeded" in lines[4]
    assert "fallback_reason: provider_error:429" in first.stdout
    assert "{" not in first.stdout  # the readable timeline by default; JSON only with --json
    meta = json.loads(cli(*args, "--json").stdout)["meta"]
    assert meta["fallback_reason"] == "provider_error:429" and meta["provider"] == "claude"


def test_simulate_json_and_failure_exit_code():
    result = cli(
        "simulate", "research", "--outcomes", "claude=non_retryable:content_filter", "--json"
    )
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["response"] is None
    assert data["meta"]["provider_attempts"][0]["next"] == "aborted"
    assert data["meta"]["error_category"] == "ai_error"


def test_simulate_from_a_scenario_file_with_retries_and_a_path_diagram(tmp_path):
    chains = tmp_path / "chains"
    chains.mkdir()
    (chains / "default.yaml").write_text("steps: [deepseek, claude]\n")
    (chains / "direct.yaml").write_text("defaults: {retries: 2}\nsteps: [deepseek, openai]\n")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "mode: direct\noutcomes:\n  deepseek: [retryable:503, retryable:503, success]\n"
    )
    diagram = tmp_path / "path.dot"
    result = cli(
        "simulate", "--scenario", str(scenario), "--chains", str(chains), "--diagram", str(diagram)
    )
    assert result.returncode == 0, result.stderr
    assert "deepseek (retry 2)" in result.stdout
    dot = diagram.read_text()
    assert 'deepseek -> deepseek [label="retryable: retry' in dot and "[#1, #2]" in dot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("simulate", "direct", "--outcomes", "deepsek=retryable:429"), "provider 'deepsek' is not in chain 'direct' (did you mean 'deepseek'?)"),
        (("simulate", "direct", "--outcomes", "deepseek=retriable:429"), "'retriable:429' is not CATEGORY[:CODE][@SECONDS] (did you mean 'retryable'?)"),
        (("simulate", "direct", "--outcomes", "deepseek=retryable:400"), "code 400 is non_retryable in chain 'direct'"),
        (("simulate", "direct", "--outcomes", "deepseek"), "'deepseek' is not PROVIDER=CATEGORY[:CODE]"),
        (("simulate", "direct"), "give MODE and --outcomes, or --scenario FILE"),
        (("simulate", "direct", "--outcomes", "deepseek=success", "--diagram", "x.gif"), "use a .svg, .png, .dot or .mmd file name"),
    ],
)  # fmt: skip
def test_simulate_errors_are_one_clear_line(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_simulate_bad_scenario_file_points_at_the_line(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("mode: fast\noutcomes:\n  deepseek: [retryable:429, explode]\n")
    result = cli("simulate", "--scenario", str(scenario))
    assert result.returncode == 2
    assert (
        f"{scenario}:1:7: mode: mode 'fast' names no chain; modes: direct, research"
        in result.stderr
    )
    assert f"{scenario}:3:13: outcomes.deepseek:" in result.stderr


# explain -------------------------------------------------------------------------------


def test_explain_a_code():
    result = cli("explain", "direct", "--code", "429")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "chain 'direct' (deadline 120 s): code 429: retryable (error_category provider_error, transient; from the taxonomy)",
        "  deepseek  -> openai",
        "  openai    -> claude",
        "  claude    -> ollama",
        "  ollama    -> exhausted",
    ]


def test_explain_with_retries_overrides_and_categories(tmp_path):
    chains = tmp_path / "chains"
    chains.mkdir()
    (chains / "default.yaml").write_text(
        "error_codes: {'404': non_retryable}\n"
        "steps:\n  - {provider: deepseek, retries: 2}\n  - {provider: claude, goto: {non_retryable: next}}\n  - ollama\n"
    )
    result = cli("explain", "composition", "--code", "503", "--chains", str(chains))
    assert (
        "  deepseek  retry here up to 2x (waits <= 10 s, within the deadline), then -> claude"
        in result.stdout
    )
    result = cli("explain", "composition", "--code", "404", "--chains", str(chains))
    assert "non_retryable" in result.stdout and "from the chain's error_codes" in result.stdout
    assert "  claude    -> ollama" in result.stdout and "  deepseek  -> aborted" in result.stdout
    result = cli("explain", "composition", "--category", "timeout", "--chains", str(chains))
    assert result.returncode == 0 and "  deepseek  -> claude" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("explain", "direct"), "give exactly one of --code and --category"),
        (("explain", "direct", "--category", "fatal"), "unknown category 'fatal'"),
    ],
)
def test_explain_errors(args, message):
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr


# run -----------------------------------------------------------------------------------


def test_run_answers_through_the_chain(tmp_path):
    with Simulator(
        {"deepseek": [Behaviour("unavailable")], "openai": [Behaviour("answer", text="4")]}
    ) as sim:
        result = cli("run", "What is 2+2?", "--diagram", str(tmp_path / "p.mmd"), env=sim.env())
    assert result.returncode == 0, result.stderr
    assert "answer (openai, model gpt-4.1-mini): 4" in result.stdout
    assert (
        "provider_error:503" in result.stdout
        and "fallback_reason: provider_error:503" in result.stdout
    )
    assert "taken" in (tmp_path / "p.mmd").read_text()


def test_run_json_and_single_provider():
    with Simulator({"claude": [Behaviour("answer", text="hello")]}) as sim:
        result = cli("run", "hi", "--provider", "claude", "--json", env=sim.env())
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["response"] == "hello" and data["meta"]["provider"] == "claude"
    assert len(data["meta"]["provider_attempts"]) == 1


def test_run_failure_exit_1_prints_friendly_error_and_attempts():
    script = {
        name: [Behaviour("server_error")] for name in ("deepseek", "openai", "claude", "ollama")
    }
    with Simulator(script) as sim:
        result = cli("run", "hi", "--timeout", "10", env=sim.env())
    assert result.returncode == 1
    rows = [line for line in result.stdout.splitlines() if re.match(r"^\s+\d+\s", line)]
    assert ["provider_error:500" in row for row in rows] == [True] * 4
    assert (
        "failed (provider_error): I apologize, but the AI service is currently unavailable: all providers failed for chain 'direct'"
        in result.stdout
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("run", "hi", "--mode", "fast"),
            {},
            "mode 'fast' names no chain; modes: direct, research",
        ),
        (
            ("run", "hi"),
            {"TORQ_DIRECT_CHAIN": "deepsek"},
            "unknown provider 'deepsek' (did you mean 'deepseek'?)",
        ),
        (("run", "hi", "--timeout", "-1"), {}, "must be a positive number"),
    ],
)
def test_run_bad_usage_or_configuration_exit_2(args, env, message):
    result = cli(*args, env=env)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


# schema --------------------------------------------------------------------------------


def test_schema_prints_the_committed_schema():
    result = cli("schema")
    assert result.returncode == 0
    assert result.stdout == (CHAINS / "chain.schema.json").read_text()


def test_an_unwritable_output_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("render", "--out", str(blocker / "d"), "--format", "dot")
    assert result.returncode == 2
    assert result.stderr.startswith("torq-fallback: ") and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr
