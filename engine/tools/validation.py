"""What ``torq-fallback validate`` checks: chain files and providers files, every problem
located, plus warnings for chain steps naming a provider nobody declared."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.chain.loader import chain_files, check_file, field_name, locate, read_yaml
from engine.chain.spec import Chain
from engine.errors import Problem
from engine.providers.settings import BUILTIN_SETTINGS, PROVIDERS_FILE, check_providers_file

__all__ = ["Report", "validate_paths"]


@dataclass
class Report:
    """The files checked, their problems (errors) and warnings."""

    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _provider_warnings(chain: Chain, file: Path, known: Sequence[str]) -> list[Problem]:
    _, values, keys, _ = read_yaml(file)
    warnings = []
    for index, step in enumerate(chain.steps):
        for number, member in enumerate(step.members):
            if member.provider in known:
                continue
            loc: tuple[str | int, ...] = ("steps", index, "provider")
            if step.pool:
                loc = ("steps", index, "pool", number, "provider")
                if loc not in values:
                    loc = loc[:-1]
            if loc not in values:
                loc = ("steps", index)
            line, column = locate(loc, values, keys, key=False)
            close = difflib.get_close_matches(member.provider, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = "the step is" if not step.pool else "this member is"
            warnings.append(
                Problem(
                    str(file), line, column, field_name(loc),
                    f"warning: provider '{member.provider}' is neither built in nor declared "
                    f"in {PROVIDERS_FILE}{hint}; unless the application registers it, {where} "
                    "skipped as provider_not_found",
                )
            )  # fmt: skip
    return warnings


def validate_paths(paths: Iterable[str | os.PathLike[str]]) -> Report:
    """Check chain files and directories (with their providers file, if any)."""
    given = [Path(p) for p in paths]
    report = Report(files=chain_files(given))
    declared: set[str] = set(BUILTIN_SETTINGS)
    for folder in (p for p in given if p.is_dir()):
        providers_file = folder / PROVIDERS_FILE
        if providers_file.is_file():
            report.files.append(providers_file)
    broken_providers_file = False
    for file in report.files:
        if file.name == PROVIDERS_FILE:
            settings, problems = check_providers_file(file)
            declared.update(settings or {})
            report.problems.extend(problems)
            broken_providers_file = broken_providers_file or bool(problems)
    for file in report.files:
        if file.name != PROVIDERS_FILE:
            chain, found = check_file(file)
            report.problems.extend(found)
            # A broken providers.yaml is reported once, above, not again as a cascade of
            # "undeclared provider" warnings for the providers it meant to declare.
            if chain is not None and not broken_providers_file:
                report.warnings.extend(_provider_warnings(chain, file, sorted(declared)))
    return report
