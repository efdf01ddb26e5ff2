"""The Gateway page's examples, run against a running gateway: its curl and ``keys``
commands print what the page shows (``...`` stands for what changes from run to run), its
Python blocks (the openai and anthropic SDKs, the Starlette mount) run as written, in page
order, and its chain YAML is the chains folder served. Only ``localhost:8000`` is pointed
at the gateway's free port; the simulator behind it rate-limits DeepSeek, as the page
says."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import types

import pytest
from helpers import PYTHON, ROOT
from ruamel.yaml import YAML
from served import Served

from engine.simulator import Behaviour, Script, Simulator, environment

PAGE = ROOT / "docs" / "gateway.md"
TEXT = PAGE.read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BLOCKS = [
    (m.group(1), m.group(2), f"docs/gateway.md:{TEXT[: m.start()].count(chr(10)) + 1}")
    for m in FENCE.finditer(TEXT)
]
# The page's providers: DeepSeek answers every request with a rate limit (breakers off, so
# that every example meets the same fallback), the others answer.
PROVIDERS = """providers:
  deepseek: {breaker: {enabled: false}}
  openai: {breaker: {enabled: false}}
  claude: {breaker: {enabled: false}}
"""


def _script() -> Script:
    providers = {name: [Behaviour("answer", text="4")] for name in ("openai", "claude")}
    return Script({"deepseek": [Behaviour("rate_limit", retry_after=1)], **providers}, cycle=True)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway-page")
    folder = tmp / "chains"
    folder.mkdir()
    for chain in (ROOT / "chains").glob("*.yaml"):
        shutil.copy(chain, folder / chain.name)
    # the page's own chain YAML declares the aliases: the shipped direct chain gets them
    (page_chain,) = [text for kind, text, _ in BLOCKS if kind == "yaml" and "aliases:" in text]
    aliases = YAML(typ="safe").load(page_chain)["aliases"]
    direct = folder / "direct.yaml"
    direct.write_text(f"aliases: {aliases}\n" + direct.read_text())
    (folder / "providers.yaml").write_text(PROVIDERS)
    with Simulator(_script()) as sim:
        served = Served(sim, folder)
        try:
            yield served, sim, tmp
        finally:
            served.stop()


def _here(text: str, served: Served) -> str:
    return text.replace("http://localhost:8000", served.url).replace("localhost:8000", served.url)


def _console_commands() -> list[tuple[str, list[str], str]]:
    """(command, the lines shown under it, "file:line") of every console command."""
    found = []
    for kind, text, where in BLOCKS:
        if kind != "console":
            continue
        lines = text.splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            shown = []
            for after in lines[index + 1 :]:
                if after.startswith("$ "):
                    break
                shown.append(after)
            found.append((line[2:].split("  #")[0].strip(), shown, where))
    return found


COMMANDS = _console_commands()
RUN = [(c, s, w) for c, s, w in COMMANDS if c.startswith(("curl ", "torq-fallback keys "))]


def test_every_command_on_the_page_is_run_or_checked():
    serve_help = subprocess.run(
        [PYTHON, "-m", "engine.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for command, _, where in COMMANDS:
        words = shlex.split(command)
        if "serve" in words:  # a server runs until stopped: its options must exist
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                assert option in serve_help, f"{where}: {command!r}: {option} is not an option"
        elif words[:2] != ["pip", "install"]:
            assert (command, where) in [(c, w) for c, _, w in RUN], f"{where}: not run: {command}"
    assert len(RUN) >= 4


@pytest.mark.parametrize(("command", "shown", "where"), RUN, ids=[c[:40] for c, _, _ in RUN])
def test_the_commands_print_what_the_page_shows(gateway, command, shown, where):
    served, _, tmp = gateway
    words = shlex.split(_here(command, served))
    if words[0] == "torq-fallback":
        words = [PYTHON, "-m", "engine.cli", *words[1:]]
    result = subprocess.run(words, capture_output=True, text=True, cwd=tmp, timeout=60)
    assert result.returncode == 0, f"{where}: {command!r}: {result.stderr}"
    printed = result.stdout.splitlines()
    assert len(printed) == len(shown), f"{where}: {command!r} printed:\n{result.stdout}"
    for want, got in zip(shown, printed, strict=True):
        pattern = ".*".join(re.escape(part) for part in want.split("..."))
        assert re.fullmatch(pattern, got), f"{where}: shown {want!r}, printed {got!r}"


def test_the_python_examples_run(gateway, monkeypatch, capsys):
    served, sim, _tmp = gateway
    module = types.ModuleType("docs_gateway")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.chdir(ROOT)
    python = [(text, where) for kind, text, where in BLOCKS if kind == "python"]
    assert len(python) == 3
    with environment(sim):  # the mounted example's own LLMManager calls the simulator
        for text, where in python:
            exec(compile(_here(text, served), where, "exec"), module.__dict__)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "4 openai",  # the answer, and who gave it (a header)
        "deepseek failed 429",
        "openai success None",
        "4",  # the stream
        "4 gpt-4.1-mini",  # the anthropic SDK, the model that answered
        "direct 4",  # the mounted gateway
    ]
