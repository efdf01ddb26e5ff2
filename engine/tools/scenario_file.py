"""Scenario files and ``--outcomes`` text: what ``simulate`` is told each provider does.

An outcome is ``category[:code][@seconds]``; several in a row, for retries, are separated by
``|``. Every bad outcome or key is a located problem, all of a file's in one pass.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from engine.chain.loader import read_yaml
from engine.errors import ChainConfigError, Problem
from engine.types.meta import ExecutionMode, Mode, mode_of
from engine.types.outcomes import CATEGORIES

__all__ = ["Scenario", "load_scenario", "parse_outcomes"]

_OUTCOME: Final = re.compile(
    r"^(success|retryable|timeout|non_retryable|cut|rejected)(?::([^\s|,@]+))?"
    r"(?:@(\d+(?:\.\d+)?))?$"
)


@dataclass
class Scenario:
    """A mode, a prompt, and the outcomes each provider gives, in order."""

    mode: Mode
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    prompt: str = "simulated prompt"


def parse_outcomes(text: str) -> dict[str, list[str]]:
    """``"deepseek=retryable:429|success,openai=timeout"`` -> outcomes per provider."""
    outcomes: dict[str, list[str]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, sequence = part.partition("=")
        if not sep or not name.strip() or not sequence.strip():
            raise ValueError(f"--outcomes: {part!r} is not PROVIDER=CATEGORY[:CODE][|...]")
        items = [item.strip() for item in sequence.split("|")]
        for item in items:
            _check_outcome(item, f"--outcomes {name.strip()}")
        outcomes.setdefault(name.strip(), []).extend(items)
    if not outcomes:
        raise ValueError("--outcomes is empty; e.g. deepseek=retryable:429,openai=success")
    return outcomes


def _check_outcome(item: str, where: str) -> None:
    match = _OUTCOME.match(item)
    if match is None:
        close = difflib.get_close_matches(item.split(":")[0], CATEGORIES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(
            f"{where}: {item!r} is not CATEGORY[:CODE][@SECONDS]{hint}; categories: "
            f"{', '.join(CATEGORIES)}, cut:N, rejected"
        )
    if match.group(1) in ("success", "rejected") and match.group(2):
        raise ValueError(f"{where}: {item!r}: a {match.group(1)} answer has no code")
    if match.group(1) == "cut" and not (match.group(2) or "").isdigit():
        raise ValueError(f"{where}: {item!r}: write cut:N, N the chunks delivered before the cut")


def load_scenario(
    path: str | os.PathLike[str], modes: Callable[[str], str | None] | None = None
) -> Scenario:
    """Read a scenario file::

    mode: direct
    prompt: What is 2+2?          # optional
    outcomes:
      deepseek: [retryable:429, success]
      openai: timeout

    ``modes``, given, checks the mode against the chains it will run on: it returns
    why a mode names no chain (``None`` for a mode that does), and the reason is
    reported at the file's ``mode:`` line with the other problems.
    """
    file = Path(path)
    data, values, _, problems = read_yaml(file, list_prefix=())
    source = str(file)

    def problem(loc: tuple[str, ...], message: str) -> Problem:
        line, column = values.get(loc, values.get((), (0, 0)))
        return Problem(source, line, column, ".".join(loc), message)

    if not problems and not isinstance(data, dict):
        problems.append(problem((), "expected a mapping with mode and outcomes"))
    if problems:
        raise ChainConfigError(problems)
    assert isinstance(data, dict)
    unknown = sorted(set(data) - {"mode", "prompt", "outcomes"})
    for key in unknown:
        problems.append(problem((key,), f"unknown key '{key}'; allowed: mode, prompt, outcomes"))
    given = data.get("mode")
    if not isinstance(given, str) or not given.strip():
        seed = ", ".join(m.value for m in ExecutionMode)
        problems.append(problem(("mode",), f"mode must be a mode's name ({seed}, or a chain's)"))
        mode: Mode = ExecutionMode.DIRECT
    else:
        mode = mode_of(given.strip())
        why = modes(given.strip()) if modes is not None else None
        if why is not None:
            problems.append(problem(("mode",), why))
    outcomes: dict[str, list[str]] = {}
    raw = data.get("outcomes")
    if not isinstance(raw, dict) or not raw:
        problems.append(problem(("outcomes",), "outcomes must map providers to outcomes"))
        raw = {}
    for name, items in raw.items():
        seq = items if isinstance(items, list) else [items]
        for item in seq:
            try:
                _check_outcome(str(item), f"outcomes.{name}")
            except ValueError as exc:
                problems.append(problem(("outcomes", str(name)), str(exc)))
        outcomes[str(name)] = [str(item) for item in seq]
    if problems:
        raise ChainConfigError(problems)
    return Scenario(mode, outcomes, str(data.get("prompt", "simulated prompt")))
