"""What the benchmarks share: the provider simulator in a process of its own (so that its
work never counts against the client measured), and the figures' formatting."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["litellm_python", "measure", "median_us", "start_simulator"]

ROOT = Path(__file__).resolve().parents[1]


def start_simulator(script: str, folder: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``torq-fallback simulator`` with ``script`` (YAML) and ``extra`` options (e.g.
    ``--rate-limit east=600``), in its own process; returns the process (stop it with
    ``terminate()``) and its base URL."""
    path = folder / f"script-{abs(hash(script))}.yaml"
    path.write_text(script)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "simulator", "--script", str(path), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().rsplit(" ", 1)[1].strip()
    return proc, base


def median_us(seconds: Sequence[float]) -> float:
    """The median of per-request times, in microseconds."""
    return statistics.median(seconds) * 1e6


def measure(fn: Callable[[], object], requests: int, rounds: int = 5) -> float:
    """Microseconds per call of ``fn``: the median of ``rounds`` rounds of ``requests``."""
    per_request = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(requests):
            fn()
        per_request.append((time.perf_counter() - start) / requests * 1e6)
    return statistics.median(per_request)


def litellm_python() -> Path:
    """The Python of LiteLLM's own virtual environment (``.bench/litellm-venv``), made
    once: LiteLLM's dependencies never meet the engine's."""
    venv = ROOT / ".bench" / "litellm-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print("  (creating .bench/litellm-venv and installing litellm: once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm"], check=True)
    return python
