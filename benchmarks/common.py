"""What the benchmarks share: the provider simulator in a process of its own (so that its
work never counts against the client measured), and the figures' formatting."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["median_us", "start_simulator"]


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
