"""The default chains ship inside the wheel, so a non-editable install finds them."""

from __future__ import annotations

import subprocess
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
