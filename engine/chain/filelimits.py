"""Limits on configuration files, checked before anything expensive reads them.

A chain or providers file is small and shallow; anything else is a mistake or an attack
(an alias bomb, a 60 MB map, a symlink to ``/etc/shadow``). These checks refuse such files
in milliseconds, each with a located problem, before the YAML is composed into nodes or
validated, so that nothing downstream can blow up in time, memory or recursion depth.

======================  ============================================================
limit                   value
======================  ============================================================
file size               `MAX_FILE_BYTES` (256 KiB)
nesting depth           `MAX_DEPTH` levels of mappings and lists
entries per mapping     `MAX_ITEMS` (and per list)
anchors and aliases     refused (``&name`` / ``*name``): nothing to expand
steps per chain         `MAX_STEPS` (checked with the chain's other rules)
problems printed        `MAX_PROBLEMS_SHOWN`, then "… and N more"
======================  ============================================================
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from engine.errors import Problem

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_ITEMS",
    "MAX_PROBLEMS_SHOWN",
    "MAX_STEPS",
    "read_config_text",
    "screen_yaml",
    "snippet",
]

#: Most steps a chain may have (the spec's limit, kept here below the spec and the checks
#: that read files, which both use it).
MAX_STEPS: Final = 100

MAX_FILE_BYTES: Final = 256 * 1024
MAX_DEPTH: Final = 16
MAX_ITEMS: Final = 1000
MAX_PROBLEMS_SHOWN: Final = 50


def snippet(value: object, limit: int = 40) -> str:
    """A short, escaped excerpt of something read from a file, safe to print."""
    text = value if isinstance(value, str) else repr(value)
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("…" if len(text) > limit else "")


def read_config_text(path: Path, root: Path | None = None) -> tuple[str | None, Problem | None]:
    """The text of a configuration file, or the problem that stops it being read.

    The file must be a regular file (no device, pipe or directory), inside ``root`` (its
    own directory by default) once symlinks are followed, and at most
    `MAX_FILE_BYTES` long.
    """
    source = str(path)

    def problem(message: str) -> tuple[None, Problem]:
        return None, Problem(source, 0, 0, "", message)

    folder = (root if root is not None else path.parent).resolve()
    try:
        real = path.resolve(strict=True)
        info = os.stat(real)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return problem(f"cannot read file: {reason}")
    if not real.is_relative_to(folder):
        return problem(
            "is a symlink to a file outside its directory; configuration files must live "
            "in the chains directory"
        )
    if not stat.S_ISREG(info.st_mode):
        return problem("is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        return problem(
            f"is {info.st_size} bytes; configuration files are limited to {MAX_FILE_BYTES}"
        )
    try:
        with open(real, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return problem(f"cannot read file: {exc.strerror or exc}")
    if len(raw) > MAX_FILE_BYTES:  # it grew since stat
        return problem(f"is larger than the {MAX_FILE_BYTES}-byte limit for configuration files")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return problem(f"is not UTF-8 text (byte {exc.start + 1})")


def screen_yaml(text: str, source: str) -> Problem | None:
    """The first limit ``text`` breaks (alias, anchor, depth, entries), located, or None.

    Reads the YAML as a stream of events (no nodes, no data), stopping at the first
    problem; a syntax error is left to the real load, which reports it with its position.
    """
    # Imported here: the spec imports this module for MAX_STEPS, and needs no YAML.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        MappingStartEvent,
        NodeEvent,
    )

    yaml = YAML(typ="safe", pure=True)
    counts: list[int] = []
    limits: list[int] = []
    try:
        for event in yaml.parse(text):
            if isinstance(event, NodeEvent):
                mark = event.start_mark
                where = (source, mark.line + 1, mark.column + 1, "")
                if isinstance(event, AliasEvent):
                    return Problem(*where, "YAML aliases (*name) are not allowed here")
                if event.anchor is not None:
                    return Problem(*where, "YAML anchors (&name) are not allowed here")
                if counts:
                    counts[-1] += 1
                    if counts[-1] > limits[-1]:
                        return Problem(*where, f"more than {MAX_ITEMS} entries in one place")
                if isinstance(event, CollectionStartEvent):
                    if len(counts) >= MAX_DEPTH:
                        return Problem(*where, f"nested more than {MAX_DEPTH} levels deep")
                    counts.append(0)
                    # A mapping's events are keys and values: two per entry.
                    limits.append(
                        MAX_ITEMS * 2 if isinstance(event, MappingStartEvent) else MAX_ITEMS
                    )
            elif isinstance(event, CollectionEndEvent):
                counts.pop()
                limits.pop()
    except YAMLError:
        return None
    return None
