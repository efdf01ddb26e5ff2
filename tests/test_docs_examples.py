"""Every example in the README and in the documentation site (docs/*.md) stays true: its
Python runs (against the simulator), its YAML is a valid chain, providers, simulator or
scenario file, its JSON log line matches the published schema, and every command it shows
names options the command has (the concrete ones are run)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from helpers import PYTHON, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(path: Path) -> list[tuple[str, str, str]]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    return [
        (m.group(1), m.group(2), f"{where}:{text[: m.start()].count(chr(10)) + 1}")
        for m in FENCE.finditer(text)
    ]


BLOCKS = {path: _blocks(path) for path in PAGES}


def blocks(*kinds: str, page: Path | None = None) -> list[tuple[str, str]]:
    """(text, "file:line") of every block of these kinds (of one page, or of all)."""
    found = BLOCKS[page] if page is not None else [b for p in PAGES for b in BLOCKS[p]]
    return [(text, line) for kind, text, line in found if kind in kinds]


def test_the_readme_starts_with_the_two_commands():
    (first, _), *_ = blocks("bash", page=ROOT / "README.md")
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/torq-fallback demo",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest -n auto",
    ]
    # CI runs the very test command the README gives
    tests = commands[1].rsplit(" && ", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in ci if line.startswith(".venv/bin/pytest")] == [tests]


# The Gateway page's examples call a running gateway: tests/test_gateway_docs.py serves one
# and runs them there.
SERVED_PAGES = {ROOT / "docs" / "gateway.md"}
PYTHON_PAGES = [page for page in PAGES if blocks("python", page=page) and page not in SERVED_PAGES]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
def test_the_python_examples_run(monkeypatch, page):
    """A page's Python blocks run as written, in order, in one namespace (a page reads top
    to bottom): nothing is given to them but the environment, whose provider keys and URLs
    point at the simulator. No top-level ``await``: a block that awaits runs its own loop."""
    import sys
    import types

    from engine import LLMManager
    from engine.simulator import Behaviour, Simulator, environment

    module = types.ModuleType(f"docs_{page.stem}")  # a real module: dataclasses look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    script = {name: [Behaviour("answer", text="4")] for name in ("deepseek", "openai", "claude")}
    monkeypatch.chdir(ROOT)
    managers: list[LLMManager] = []  # every manager a block makes, closed at the end
    with Simulator(script) as sim, environment(sim):
        try:
            for text, line in blocks("python", page=page):
                exec(compile(text, line, "exec"), namespace)  # the documentation's own examples
                managers += [
                    v for v in namespace.values() if isinstance(v, LLMManager) and v not in managers
                ]
        finally:
            for manager in managers:
                manager.close()


def _yaml_kind(text: str) -> str:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    if body.lstrip().startswith("- ") or "\nsteps:" in "\n" + body:
        return "chain"
    if re.search(r"^(providers|health):", text, re.MULTILINE):
        return "providers"
    if re.search(r"^outcomes:", text, re.MULTILINE):
        return "scenario"
    return "script"


@pytest.mark.parametrize(("text", "line"), blocks("yaml"), ids=lambda v: str(v)[:30])
def test_every_yaml_example_is_valid(tmp_path, text, line):
    kind = _yaml_kind(text)
    if kind == "chain":
        from engine import load_chain

        path = tmp_path / "direct.yaml"
        path.write_text(text)
        load_chain(path)  # raises, with file:line, on any problem
    elif kind == "providers":
        from engine.providers.settings import check_providers_file

        path = tmp_path / "providers.yaml"
        path.write_text(text)
        _, problems = check_providers_file(path)
        assert not problems, f"{line}: {problems}"
    elif kind == "scenario":
        from engine.tools.scenario import load_scenario

        path = tmp_path / "scenario.yaml"
        path.write_text(text)
        load_scenario(path)
    else:
        from engine.tools.simulator import load_script

        path = tmp_path / "faults.yaml"
        path.write_text(text)
        load_script(path)


def test_the_json_examples_match_the_log_schema():
    """A log line example matches the published line schema; an attempt record example
    matches the schema of one attempt in it."""
    import jsonschema

    from engine.telemetry.jsonl import line_schema

    schema = line_schema()
    examples = blocks("json")
    assert any("final_state" in json.loads(text) for text, _ in examples)
    for text, line in examples:
        value = json.loads(text)
        part = schema if "final_state" in value else schema["properties"]["attempts"]["items"]
        try:
            jsonschema.validate(value, part)
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"{line}: {exc.message}") from None


def test_every_page_is_in_the_site_and_the_readme_is_short():
    from ruamel.yaml import YAML

    site = YAML(typ="safe").load((ROOT / "mkdocs.yml").read_text())
    listed = {next(iter(item.values())) for item in site["nav"]}
    assert listed == {p.name for p in PAGES if p.parent.name == "docs"}
    assert len(README.splitlines()) <= 200


def test_the_home_page_and_the_readme_link_every_page():
    from ruamel.yaml import YAML

    site = YAML(typ="safe").load((ROOT / "mkdocs.yml").read_text())
    pages = {next(iter(item.values())) for item in site["nav"]} - {"index.md"}
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert sorted(p for p in pages if f"]({p}" not in home) == []
    assert sorted(p for p in pages - {"api.md"} if f"](docs/{p}" not in README) == []


def _help(command: list[str]) -> str:
    result = subprocess.run(
        [PYTHON, "-m", "engine.cli", *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


COMMANDS = [
    (line.split("#")[0].strip()[2:], number)
    for text, number in blocks("console", "bash")
    for line in text.splitlines()
    if line.startswith("$ torq-fallback")
]
# Concrete commands that need nothing outside the repository: they are run as shown.
RUNNABLE = (
    "validate ",
    "simulate direct --outcomes",
    "explain ",
    "schema",
    "--version",
    "render --check",
)


@pytest.mark.parametrize(("command", "line"), COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_command_shown_exists_with_its_options(command, line):
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("|", " "))[1:]
    sub = [w for w in words[:1] if not w.startswith("-")]
    text = _help(sub)
    for option in (w.split("=")[0] for w in words if w.startswith("--")):
        assert option in text, f"{line}: {command!r}: {option} is not an option"
    concrete = "[" not in command and not re.search(r"\b[A-Z]{2,}\b", command)
    if concrete and command.removeprefix("torq-fallback ").startswith(RUNNABLE):
        result = subprocess.run(
            [PYTHON, "-m", "engine.cli", *words],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode in (0, 1), f"{line}: {result.stderr}"
        assert "Traceback" not in result.stderr


def _shown_outputs() -> list[tuple[str, list[str], str]]:
    """(command, the output lines shown under it, "file:line") for the runnable commands
    a console block shows with their output."""
    found = []
    for text, number in blocks("console"):
        lines = text.splitlines()
        for index, line in enumerate(lines):
            command = line.split("  #")[0].strip()[2:]
            if not line.startswith("$ torq-fallback ") or "[" in command:
                continue
            if not command.removeprefix("torq-fallback ").startswith(RUNNABLE):
                continue
            shown = []
            for after in lines[index + 1 :]:
                if after.startswith("$"):
                    break
                shown.append(after)
            if shown:
                found.append((command, shown, number))
    return found


SHOWN = _shown_outputs()


@pytest.mark.parametrize(("command", "shown", "line"), SHOWN, ids=[c for c, _, _ in SHOWN])
def test_the_output_shown_is_the_output(command, shown, line):
    """What a page shows a command printing is what it prints (``...`` stands for the rest
    of a line's text, or a path's machine-specific start)."""
    result = subprocess.run(
        [PYTHON, "-m", "engine.cli", *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    printed = (result.stdout + result.stderr).splitlines()
    assert len(printed) == len(shown), f"{line}: {command!r} printed:\n" + "\n".join(printed)
    for want, got in zip(shown, printed, strict=True):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, got), f"{line}: {command!r}: shown {want!r}, printed {got!r}"


def test_the_benchmark_commands_name_real_scripts():
    for text, line in blocks("console"):
        for match in re.finditer(r"\.venv/bin/python (benchmarks/\S+\.py)", text):
            assert (ROOT / match.group(1)).is_file(), f"{line}: {match.group(1)}"


def test_the_configuration_table_is_accepted(tmp_path):
    from engine import LLMManager

    assert '"off"' in (ROOT / "docs" / "configuration.md").read_text()  # the table offers it
    manager = LLMManager(config={"health": "off", "chains_dir": str(ROOT / "chains")})
    manager.close()


def test_the_lines_a_diff_adds_import():
    """A page's ``diff`` shows a host's change; the imports it adds come from the engine."""
    added = [
        (line[1:], where)
        for text, where in blocks("diff")
        for line in text.splitlines()
        if line.startswith("+") and "import" in line
    ]
    assert added
    for line, where in added:
        exec(compile(line, where, "exec"), {})  # the documentation's own line
