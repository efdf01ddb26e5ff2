"""What ``torq-fallback validate`` checks: chain files and providers files, every problem of
every file in one pass, located: a chain step naming a provider nobody declared is one of
them (unless the application says it registers it: ``--registered NAME``), found in the
file as written, so a file with other problems has it reported too. For a directory, it
also says which chain each mode runs (its own file, the folder's default, or the chains
shipped with the engine)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.chain.known import unknown_providers
from engine.chain.loader import (
    CHAIN_SUFFIXES,
    chain_files,
    check_file,
    default_chains_dir,
    read_yaml,
)
from engine.errors import Problem
from engine.providers.settings import BUILTIN_SETTINGS, PROVIDERS_FILE, check_providers_file
from engine.types.meta import ExecutionMode

__all__ = ["Report", "modes_of", "validate_paths"]


@dataclass
class Report:
    """The files checked, their problems, and for each directory which chain each mode runs."""

    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    modes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _mode_of(file: Path) -> tuple[str, int, int]:
    """The mode a chain file serves (its ``mode:``, else its name), and where it says so."""
    data, values, _, problems = read_yaml(file)
    mode = data.get("mode") if isinstance(data, dict) and not problems else None
    if not isinstance(mode, str):
        return file.stem, 1, 1
    line, column = values.get(("mode",), (1, 1))
    return mode, line, column


def _twice_served(folder: Path) -> list[Problem]:
    """A mode two files of one folder serve (the manager refuses the folder)."""
    first: dict[str, Path] = {}
    problems = []
    for path in chain_files([folder]):
        mode, line, column = _mode_of(path)
        if path.stem == "default" and mode == "default":
            continue
        if mode in first:
            problems.append(Problem(
                str(path), line, column, "mode",
                f"mode '{mode}' is served by two chains: {first[mode]} and {path}",
            ))  # fmt: skip
        first.setdefault(mode, path)
    return problems


def _alias_problems(folder: Path, modes: Iterable[str]) -> list[Problem]:
    """An alias that is a mode's name, or that two files of one folder declare (the
    manager refuses the folder for either)."""
    taken = {*modes, "default"}
    first: dict[str, Path] = {}
    problems = []
    for path in chain_files([folder]):
        data, values, _, unread = read_yaml(path)
        aliases = data.get("aliases") if isinstance(data, dict) and not unread else None
        for index, alias in enumerate(aliases if isinstance(aliases, list) else []):
            if not isinstance(alias, str):
                continue  # the schema says what is wrong with it
            why = None
            if alias in taken:
                why = f"alias '{alias}' is a mode's name: a model so named runs it already"
            elif alias in first and first[alias] != path:
                why = f"alias '{alias}' is declared by two chains: {first[alias]} and {path}"
            if why is not None:
                line, column = values.get(("aliases", index), (1, 1))
                problems.append(Problem(str(path), line, column, f"aliases[{index}]", why))
            first.setdefault(alias, path)
    return problems


def modes_of(folder: Path) -> list[tuple[str, str]]:
    """(mode, where its chain comes from) for a chains folder, as the manager decides it:
    a mode's own file; else, when the folder has a default.yaml, that (the folder stands
    alone); else the chain shipped with the engine for that mode, or the shipped default."""
    own: dict[str, Path] = {}
    for path in chain_files([folder]):
        if path.stem != "default":
            own.setdefault(_mode_of(path)[0], path)
    default = next((folder / f"default{s}" for s in CHAIN_SUFFIXES
                    if (folder / f"default{s}").is_file()), None)  # fmt: skip
    shipped = default_chains_dir()
    layered = default is None and folder.resolve() != shipped.resolve()
    rows: list[tuple[str, str]] = []
    seed = [m.value for m in ExecutionMode]
    for mode in [*seed, *sorted(m for m in own if m not in seed)]:
        if mode in own:
            rows.append((mode, str(own[mode])))
        elif default is not None:
            rows.append((mode, f"{default} (no {mode}.yaml)"))
        elif layered:
            ships = shipped / f"{mode}.yaml"
            rows.append((mode, f"shipped {ships if ships.is_file() else shipped / 'default.yaml'}"))
    return rows


def validate_paths(
    paths: Iterable[str | os.PathLike[str]], registered: Iterable[str] = ()
) -> Report:
    """Check chain files and directories (with their providers file, if any); providers
    named in ``registered`` are the application's own."""
    given = [Path(p) for p in paths]
    report = Report(files=chain_files(given))
    declared: set[str] = {*BUILTIN_SETTINGS, *registered}
    for folder in (p for p in given if p.is_dir()):
        providers_file = folder / PROVIDERS_FILE
        if providers_file.is_file():
            report.files.append(providers_file)
        report.modes[str(folder)] = modes_of(folder)
        report.problems.extend(_twice_served(folder))
        report.problems.extend(_alias_problems(folder, (m for m, _ in report.modes[str(folder)])))
    broken_providers_file = False
    for file in report.files:
        if file.name == PROVIDERS_FILE:
            settings, problems = check_providers_file(file)
            declared.update(settings or {})
            report.problems.extend(problems)
            broken_providers_file = broken_providers_file or bool(problems)
    for file in report.files:
        if file.name == PROVIDERS_FILE:
            continue
        _, found = check_file(file)
        report.problems.extend(found)
        # A broken providers.yaml is reported once, above, not again as a cascade of
        # "unknown provider" problems for the providers it meant to declare.
        if not broken_providers_file:
            data, values, keys, unreadable = read_yaml(file)
            if not unreadable:
                report.problems.extend(unknown_providers(data, str(file), declared, values, keys))
    report.problems.sort(key=lambda p: (p.source, p.line, p.column))
    return report
