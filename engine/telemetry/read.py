"""Reading the JSONL log back: plain, rotated (``.1``, ``.2``, ...) and gzipped files; a torn
or broken line is counted and skipped, never a crash."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["LogRead", "read_log"]


@dataclass
class LogRead:
    """The lines read, and how many could not be (torn, not JSON, not a log line)."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    files: list[str] = field(default_factory=list)


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        yield from handle


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        seconds = float(text[:-1]) * units[text[-1]]
        return datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds, UTC)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_log(
    paths: Iterable[str | os.PathLike[str]], *, since: str | None = None, chain: str | None = None
) -> LogRead:
    """Every line of ``paths`` (oldest file first when given a rotated set), filtered by
    ``since`` (an ISO time, or ``30m``, ``2h``, ``1d`` ago) and ``chain``."""
    out = LogRead()
    start = _since(since)
    for raw in paths:
        path = Path(raw)
        out.files.append(str(path))
        for text in _open_text(path):
            if not text.endswith("\n") or not text.strip():
                out.skipped += bool(text.strip())  # a torn last line
                continue
            try:
                line = json.loads(text)
            except ValueError:
                out.skipped += 1
                continue
            if not isinstance(line, dict) or "attempts" not in line or "ts" not in line:
                out.skipped += 1
                continue
            if chain is not None and line.get("chain") != chain:
                continue
            if start is not None and datetime.fromisoformat(line["ts"]) < start:
                continue
            out.lines.append(line)
    return out
