"""The providers a chain names that nobody declared: each located at file:line, with "did
you mean". Read from the chain file's data as written, so that a file with other problems
still has these reported in the same pass."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from engine.chain.loader import field_name, locate, read_yaml
from engine.chain.spec import Chain, Loc
from engine.errors import Problem

__all__ = ["named_providers", "unknown_providers"]


def named_providers(data: Any) -> Iterator[tuple[Loc, str]]:
    """Every provider name a chain's data (a mapping with ``steps``, or the list of steps)
    names, with where: a bare step, a step's ``provider``, a pool's members."""
    steps = (
        data if isinstance(data, list) else data.get("steps") if isinstance(data, dict) else None
    )
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if isinstance(step, str):
            yield ("steps", index), step
        elif isinstance(step, dict):
            if isinstance(step.get("provider"), str):
                yield ("steps", index, "provider"), step["provider"]
            pool = step.get("pool")
            for number, member in enumerate(pool if isinstance(pool, list) else []):
                if isinstance(member, str):
                    yield ("steps", index, "pool", number), member
                elif isinstance(member, dict) and isinstance(member.get("provider"), str):
                    yield ("steps", index, "pool", number, "provider"), member["provider"]


def _problem(
    source: str, loc: Loc, name: str, known: Collection[str], values: Any, keys: Any
) -> Problem:
    line, column = locate(loc, values, keys, key=False)
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return Problem(
        source, line, column, field_name(loc),
        f"unknown provider '{name}'{hint}: neither built in, declared in providers.yaml, nor "
        "registered (an application that registers it declares it: "
        "config['registered_providers'], or validate --registered NAME)",
    )  # fmt: skip


def unknown_providers(
    data: Any, source: str, known: Collection[str], values: Any = None, keys: Any = None
) -> list[Problem]:
    """The problems of the providers ``data`` names outside ``known``."""
    return [
        _problem(source, loc, name, known, values or {}, keys or {})
        for loc, name in named_providers(data)
        if name not in known
    ]


def chain_unknown_providers(chain: Chain, known: Collection[str]) -> list[Problem]:
    """The problems of a loaded chain's unknown providers: located in its file when it came
    from one, else named by the step."""
    path = Path(chain.source)
    if path.is_file():
        data, values, keys, problems = read_yaml(path)
        if not problems:
            return unknown_providers(data, chain.source, known, values, keys)
    data = {"steps": [{"provider": m.provider} for s in chain.steps for m in s.members]}
    return unknown_providers(data, chain.source, known)


def located(chain: Chain, loc: Loc) -> tuple[int, int]:
    """Where ``loc`` (``("aliases", 2)``) is in the file a loaded chain came from; (0, 0)
    when it came from none, or the file no longer reads."""
    path = Path(chain.source)
    if not path.is_file():
        return 0, 0
    _, values, keys, problems = read_yaml(path)
    return (0, 0) if problems else locate(loc, values, keys, key=False)


__all__ += ["chain_unknown_providers", "located"]
