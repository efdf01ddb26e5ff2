"""The default chains ship inside the wheel, so a non-editable install finds them."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from helpers import PYTHON, ROOT


def test_wheel_carries_the_default_chains_and_they_load(tmp_path):
    build = subprocess.run(
        [PYTHON, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("torq_fallback-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for chain in ("direct", "research", "code_generation", "default"):
        assert f"engine/_chains/{chain}.yaml" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import engine, engine.chain.loader as l; m = engine.LLMManager();"
        "print(l.default_chains_dir()); print(sorted(m.chains))"
    )
    result = subprocess.run(
        [PYTHON, "-c", probe],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    location, modes = result.stdout.splitlines()
    assert location == str(site / "engine" / "_chains")
    assert modes == "['code_generation', 'default', 'direct', 'research']"


def test_every_public_name_imports_and_import_engine_stays_light():
    # A fresh interpreter: `import engine` loads no chain, provider or HTTP machinery until a
    # name is used, and then every name the package lists resolves to the documented object.
    script = (
        "import sys, engine\n"
        "heavy = sorted(m for m in ('pydantic', 'httpx', 'aiohttp', 'httptools', 'ruamel.yaml',"
        " 'transitions',"
        " 'engine.manager.llm', 'engine.core.executor') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
        "for name in engine.__all__:\n"
        "    getattr(engine, name)\n"
        "assert set(engine.__all__) <= set(dir(engine))\n"
        "from engine import LLMManager, GenerationMeta\n"
        "from engine.manager.llm import LLMManager as direct\n"
        "assert LLMManager is direct and GenerationMeta.__module__ == 'engine.types.meta'\n"
        "try:\n"
        "    engine.NoSuchName\n"
        "except AttributeError as exc:\n"
        "    print('missing:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout
    assert "missing: module 'engine' has no attribute 'NoSuchName'" in done.stdout
