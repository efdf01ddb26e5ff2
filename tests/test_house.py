"""The house kept by the tools: no module of ``engine/`` over 400 lines, the layers and the
acyclic siblings checked by import-linter, and the architecture page's module tables
generated from the import graph (so that it cannot go stale)."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT

#: The most lines a module of engine/ may have: more, and a second job hides in it.
MAX_LINES = 400
#: Modules allowed past it, each with its reason (none today).
LONGER: dict[str, str] = {}


def test_no_module_of_the_engine_is_over_400_lines():
    found = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and name not in LONGER:
            found[name] = lines
    assert not found, "modules over 400 lines (split out the second job): " + ", ".join(
        f"{name} ({lines} lines)" for name, lines in found.items()
    )
    assert all(reason.strip() for reason in LONGER.values())


def test_the_contracts_cover_the_layers_and_every_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    kinds = {c["type"]: c for c in contracts}
    assert kinds["acyclic_siblings"]["ancestors"] == ["engine"]
    layers = kinds["layers"]["layers"]
    assert layers[0] == "(engine.gateway)"  # the top layer: nothing below imports it
    packages = {p.name for p in (ROOT / "engine").iterdir() if (p / "__init__.py").is_file()}
    named = {
        part.strip("() ").removeprefix("engine.") for layer in layers for part in layer.split("|")
    }
    assert packages <= named, f"packages in no layer: {sorted(packages - named)}"


def test_lint_imports_keeps_every_contract():
    from pathlib import Path

    command = Path(sys.executable).parent / "lint-imports"  # installed with the test extras
    result = subprocess.run([str(command)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_architecture_page_shows_the_modules_as_they_are():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import _architecture
    finally:
        sys.path.remove(str(ROOT / "docs"))
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert _architecture.tables() in page, (
        "docs/architecture.md's module tables are stale: run `.venv/bin/python "
        "docs/_architecture.py --write`"
    )
