"""Human-readable renderings of a call's metadata (the CLI prints these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.types.meta import GenerationMeta

__all__ = ["timeline"]

_COLUMNS = ("#", "step", "provider", "outcome", "category", "code", "latency", "transition")


def _code(attempt: dict[str, Any]) -> str:
    category, code = attempt.get("error_category"), attempt.get("error_code")
    if category and code:
        return f"{category}:{code}"
    return str(category or "-")


def _rows(attempts: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for index, attempt in enumerate(attempts, 1):
        step = str(attempt.get("state", attempt["provider"]))
        if attempt.get("retry"):
            step += f" (retry {attempt['retry']})"
        if attempt.get("hedge"):  # a copy sent after the attempt itself
            step += f" (hedge {attempt['hedge']})"
        rows.append(
            (
                str(index),
                step,
                str(attempt["provider"]),
                str(attempt["status"]),
                str(attempt.get("category", "")),
                _code(attempt),
                f"{attempt['latency_ms']} ms",
                f"-> {attempt.get('next', '')}"
                + (f" after a {attempt['pause_ms']} ms pause" if attempt.get("pause_ms") else ""),
            )
        )
    return rows


def timeline(meta: GenerationMeta, indent: str = "  ") -> str:
    """The attempts of one call as an aligned table, one attempt per line."""
    rows = [_COLUMNS, *_rows(meta.provider_attempts)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    right = {0, 6}  # numbers read better right-aligned
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append(indent + "  ".join(cells).rstrip())
    return "\n".join(lines)
