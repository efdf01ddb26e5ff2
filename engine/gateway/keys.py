"""Gateway keys: who may call the gateway, which chains, and how much.

A keys file holds each key by its SHA-256 hash (never the key), with a name, the chains
it may use and its limits::

    keys:
      - name: team-a
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        chains: [direct, research]   # optional: every chain
        rpm: 60                      # optional: requests per minute
        tpm: 200000                  # optional: tokens per minute
        daily_usd: 5.0               # optional: estimated cost per UTC day

Every problem is reported with file:line, like a chain file's. A key presented is hashed
and compared with every hash in constant time (`hmac.compare_digest`, no early exit), so
the time taken says nothing of which key, or how much of one, matched. ``torq-fallback
keys add NAME`` makes a key, prints it once and stores only its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.chain.loader import read_yaml
from engine.chain.problems import validation_problems
from engine.errors import ChainConfigError, Problem

__all__ = ["GatewayKey", "KeyRing", "add_key", "hash_key", "load_keys", "new_key"]

_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
#: What a key made by ``keys add`` starts with (so a leaked one is recognisable).
PREFIX = "tfk_"


class GatewayKey(BaseModel):
    """One key of a keys file (its hash, never the key)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(pattern=_NAME, description="Who the key is (logs and metrics say this).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex.")
    chains: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")]] | None = (
        Field(default=None, description="Chains (modes or aliases) it may use; all if absent.")
    )
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, at most.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute, at most.")
    daily_usd: float | None = Field(
        default=None, gt=0, description="Estimated cost per UTC day, in USD, at most."
    )


class KeysFile(BaseModel):
    """A keys file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    keys: list[GatewayKey] = Field(default_factory=list)


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    if not loc:
        return KeysFile
    if len(loc) == 2 and loc[0] == "keys":
        return GatewayKey
    return None


def hash_key(key: str) -> str:
    """The hex SHA-256 a keys file stores for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The keys a gateway accepts (`load_keys`)."""

    keys: tuple[GatewayKey, ...]
    source: str = ""

    def find(self, presented: str) -> GatewayKey | None:
        """The key ``presented`` is, or None: every hash compared, in constant time."""
        digest = hashlib.sha256(presented.encode()).hexdigest().encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        return found


def load_keys(path: str | os.PathLike[str]) -> KeyRing:
    """A keys file, checked: a `ChainConfigError` lists every problem with file:line."""
    file = Path(path)
    source = str(file)
    data, values, keys, problems = read_yaml(file, list_prefix=("keys",))
    if not problems:
        try:
            parsed = KeysFile.model_validate(data)
        except ValidationError as exc:
            problems = validation_problems(exc, source, values, keys, _model_at)
        else:
            problems = _duplicates(parsed, source, values)
            if not problems:
                return KeyRing(tuple(parsed.keys), source)
    raise ChainConfigError(problems)


def _duplicates(parsed: KeysFile, source: str, values: Any) -> list[Problem]:
    problems: list[Problem] = []
    names: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for index, key in enumerate(parsed.keys):
        line, column = values.get(("keys", index, "name"), (0, 0))
        if key.name in names:
            problems.append(
                Problem(
                    source,
                    line,
                    column,
                    f"keys[{index}].name",
                    f"'{key.name}' is also key {names[key.name]}'s name",
                )
            )
        if key.sha256 in hashes:
            problems.append(
                Problem(
                    source,
                    line,
                    column,
                    f"keys[{index}].sha256",
                    f"the same key as keys[{hashes[key.sha256]}]",
                )
            )
        names.setdefault(key.name, index)
        hashes.setdefault(key.sha256, index)
    return problems


def new_key() -> str:
    """A new key: the prefix and 32 random bytes (URL-safe base64)."""
    return PREFIX + secrets.token_urlsafe(32)


def add_key(path: str | os.PathLike[str], name: str, **limits: Any) -> str:
    """Make a key named ``name`` (with ``chains``, ``rpm``, ``tpm``, ``daily_usd``), add its
    hash to the keys file (made if absent, readable by its owner only), return the key.
    The file is replaced whole, atomically: a reader sees the old file or the new one."""
    file = Path(path)
    existing = load_keys(file).keys if file.exists() else ()
    key = new_key()
    entry = GatewayKey(
        name=name, sha256=hash_key(key), **{k: v for k, v in limits.items() if v is not None}
    )
    ring = KeysFile(keys=[*existing, entry])
    problems = _duplicates(ring, str(file), {})
    if problems:
        raise ValueError(f"{file}: a key named '{name}' exists already")
    text = _yaml(ring)
    temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return key


def _yaml(ring: KeysFile) -> str:
    lines = [
        "# torq-fallback gateway keys: SHA-256 hashes only (torq-fallback keys add NAME)",
        "keys:",
    ]
    for key in ring.keys:
        lines.append(f"  - name: {key.name}")
        lines.append(f"    sha256: {key.sha256}")
        if key.chains is not None:
            lines.append(f"    chains: [{', '.join(key.chains)}]")
        for field in ("rpm", "tpm", "daily_usd"):
            value = getattr(key, field)
            if value is not None:
                lines.append(f"    {field}: {value}")
    return "\n".join(lines) + "\n"
