"""Griffe extension for the API reference: a class shows its public bases only. A private
base (``_Strict``, ``_Streamed``) is an implementation detail the reference cannot link to,
so it is replaced by its own public bases (``BaseModel``), or left out."""

from __future__ import annotations

from typing import Any

import griffe


def _public(base: Any, seen: set[str]) -> list[Any]:
    """``base`` if public, else the public bases it stands on (resolved through the package)."""
    name = str(base).rsplit(".", 1)[-1]
    if not name.startswith("_"):
        return [base]
    path = getattr(base, "canonical_path", str(base))
    if path in seen:
        return []
    seen.add(path)
    try:
        resolved = base.parent.modules_collection[path] if hasattr(base, "parent") else None
    except (KeyError, AttributeError):
        resolved = None
    if not isinstance(resolved, griffe.Class):
        return []
    return [b for inner in resolved.bases for b in _public(inner, seen)]


class PublicBases(griffe.Extension):
    """Replace private bases by their public ones once the whole package is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for cls in _classes(pkg):
            if any(str(b).rsplit(".", 1)[-1].startswith("_") for b in cls.bases):
                cls.bases = [p for b in cls.bases for p in _public(b, set())]


def _classes(obj: griffe.Object) -> list[griffe.Class]:
    found = []
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Class):
            found.append(member)
        if isinstance(member, griffe.Module | griffe.Class):
            found.extend(_classes(member))
    return found
