"""Reading the JSONL log back: plain, rotated (``.1``, ``.2``, ...) and gzipped files.

A log is read as untrusted input: whatever a file holds, reading it takes bounded memory
and a bounded amount of work, and a line that is not a log line is counted and skipped,
never a crash.

- A line longer than `MAX_LINE_BYTES` is skipped without being held in memory.
- A file inflates to at most `MAX_FILE_BYTES` (a gzip bomb stops there, counted).
- Runs of blank lines are skipped at C speed.
- A line is kept only if it has the shape ``stats`` reads: strings where strings belong,
  finite non-negative numbers where numbers belong (``NaN`` and infinities are not JSON),
  a list of attempt objects.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_BYTES", "LogRead", "read_log", "valid_line"]

#: Longest log line read (a real line is a few kilobytes).
MAX_LINE_BYTES: Final = 1024 * 1024
#: Most bytes one file is read to, after inflating.
MAX_FILE_BYTES: Final = 2 * 1024 * 1024 * 1024
_CHUNK: Final = 1024 * 1024


@dataclass
class LogRead:
    """The lines read, and how many could not be (torn, not JSON, not a log line, too
    long), and the files cut short at `MAX_FILE_BYTES`."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    files: list[str] = field(default_factory=list)
    cut_files: list[str] = field(default_factory=list)
    #: Lines the writers could not write, as they noted in the log (``{"dropped": N}``).
    dropped: int = 0
    #: Every chain a readable line names, filtered out or not (to say what ``chain`` could be).
    chains: set[str] = field(default_factory=set)


def _chunks(path: Path, out: LogRead) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        while True:
            try:
                chunk = handle.read(_CHUNK)
            except (EOFError, zlib.error, gzip.BadGzipFile):  # a gzip file cut or corrupt
                out.cut_files.append(str(path))
                return
            if not chunk:
                return
            yield chunk


def _raw_lines(path: Path, out: LogRead) -> Iterator[bytes | None]:
    """Each complete line of ``path`` (without its newline); None for a line that was too
    long or torn (cut at the end of the file)."""
    pending = b""
    oversized = False
    total = 0
    for chunk in _chunks(path, out):
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            out.cut_files.append(str(path))
            break
        if not chunk.strip(b"\n"):  # only line ends: nothing to read in them
            if pending or oversized:
                yield None if oversized else pending
                pending, oversized = b"", False
            continue
        parts = chunk.split(b"\n")
        for part in parts[:-1]:
            if oversized:
                yield None
                oversized = False
            else:
                yield pending + part
            pending = b""
        tail = parts[-1]
        if oversized:
            continue
        if len(pending) + len(tail) > MAX_LINE_BYTES:
            pending, oversized = b"", True
        else:
            pending += tail
    if pending.strip() or oversized:
        yield None  # a torn last line (no newline), or a line that never ended


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def _valid_attempt(attempt: Any) -> bool:
    return (
        isinstance(attempt, dict)
        and isinstance(attempt.get("provider"), str)
        and isinstance(attempt.get("status", ""), str)
        and isinstance(attempt.get("state", ""), str)
        and _optional(attempt.get("error_code"), str)
        and _optional(attempt.get("error_category"), str)
        and all(_number(attempt.get(k, 0)) for k in ("latency_ms", "tokens_in", "tokens_out"))
        and (attempt.get("cost_usd_est") is None or _number(attempt["cost_usd_est"]))
    )


def valid_line(line: Any) -> bool:
    """Whether ``line`` has the shape of a log line where ``stats`` reads it."""
    if not isinstance(line, dict):
        return False
    attempts = line.get("attempts")
    if not isinstance(attempts, list) or not isinstance(line.get("ts"), str):
        return False
    try:
        datetime.fromisoformat(line["ts"])
    except ValueError:
        return False
    return (
        isinstance(line.get("chain"), str)
        and isinstance(line.get("final_state", ""), str)
        and all(_number(line.get(k, 0)) for k in ("latency_ms", "duration_ms", "tokens_total"))
        and (line.get("cost_usd_est") is None or _number(line["cost_usd_est"]))
        and all(_valid_attempt(a) for a in attempts)
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: The forms ``since`` accepts, as an error message lists them.
SINCE_FORMS: Final = (
    "a duration ago (90s, 30m, 2h, 1d) or an ISO time (2026-12-01, 2026-12-01T14:00, "
    "2026-12-01T14:00:00+02:00; UTC unless it says otherwise)"
)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        seconds = float(text[:-1]) * units[text[-1]]
        return datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time; write {SINCE_FORMS}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(text: str) -> datetime:
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
        for data in _raw_lines(path, out):
            if data is None:
                out.skipped += 1
                continue
            if not data.strip():
                continue
            try:
                line = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
            except (ValueError, RecursionError):
                out.skipped += 1
                continue
            if isinstance(line, dict) and "dropped" in line and "attempts" not in line:
                if _number(line["dropped"]):
                    out.dropped += int(line["dropped"])
                else:
                    out.skipped += 1
                continue
            if not valid_line(line):
                out.skipped += 1
                continue
            out.chains.add(str(line.get("chain")))
            if chain is not None and line.get("chain") != chain:
                continue
            if start is not None and _when(line["ts"]) < start:
                continue
            out.lines.append(line)
    return out
