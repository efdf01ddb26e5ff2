"""The ``config`` dict of `LLMManager` and the arguments of its calls,
validated where they enter, with errors that name the key or argument at fault.

``config`` is checked by a pydantic model (unknown keys refused, with "did you mean");
call arguments by small checks that cost next to nothing on the request path.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.health.policy import HealthBackend
from engine.types.meta import ExecutionMode, Mode, mode_of

__all__ = [
    "HealthBackend",
    "ManagerConfig",
    "check_mode",
    "check_provider",
    "check_timeout",
    "check_use_fallback",
    "parse_config",
]

_MODES: Final = tuple(mode.value for mode in ExecutionMode)


class TelemetryConfig(BaseModel):
    """The durable JSONL log of requests."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    path: str = Field(min_length=1, description="The log file (rotated files get .1, .2, ...).")
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="Rotate past this.")
    backups: int = Field(default=5, ge=0, description="Rotated files kept.")
    include_text: bool = Field(default=False, description="Keep prompts and answers too.")


class ManagerConfig(BaseModel):
    """What ``LLMManager(config=...)`` accepts. Every key is optional."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, defer_build=True
    )

    fallback_enabled: bool | None = Field(
        default=None, description="Use the chains (true) or only the default provider (false)."
    )
    chains_dir: Path | None = Field(default=None, description="Directory of the chain files.")
    chains: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Mode -> provider order (list or comma-separated)."
    )
    provider_timeout: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Seconds per attempt, every step."
    )
    providers: dict[str, Any] = Field(
        default_factory=dict, description="Name -> provider object to register."
    )
    registered_providers: list[str] = Field(
        default_factory=list,
        description="Names of providers the application registers after the manager is "
        "built (register_provider): chains may name them.",
    )
    default_provider: str | None = Field(
        default=None, min_length=1, description="Provider of the single-provider path."
    )
    health: HealthBackend | None = Field(
        default=None,
        description='Where provider health lives: local (default) or redis; "off", "local" '
        'or "redis" alone are short for {"backend": ...}.',
    )
    reload: bool = Field(default=False, description="Watch the chains directory and reload.")
    reload_interval: float = Field(
        default=0.5, gt=0, description="Seconds between looks at the chains directory."
    )
    telemetry: TelemetryConfig | None = Field(
        default=None, description="The JSONL request log: {path, max_bytes, backups, ...}."
    )

    @field_validator("health", mode="before")
    @classmethod
    def _health_word(cls, value: Any) -> Any:
        # "off" is short for {"backend": "off"} (and so are "local" and "redis").
        return {"backend": value} if isinstance(value, str) else value

    @field_validator("fallback_enabled", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        # Booleans, or the words the environment variable takes; nothing else (no 2, no "").
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, str) and value.strip().lower() in _WORDS:
            return _WORDS[value.strip().lower()]
        raise ValueError("must be true or false")

    @field_validator("provider_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            raise ValueError("must be a number of seconds")
        return value

    @field_validator("chains_dir", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ValueError("must be a path (str or os.PathLike)")
        return value

    @field_validator("chains", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("must map modes to provider lists")
        for mode, order in value.items():
            if not isinstance(mode, str) or not _MODE_NAME.match(mode):
                raise ValueError(
                    f"{mode!r} is not a mode's name (a letter, then letters, digits, _ . -)"
                )
            items = order.split(",") if isinstance(order, str) else order
            if not isinstance(items, list | tuple) or not all(isinstance(p, str) for p in items):
                raise ValueError(
                    f"[{mode!r}] must be a list of provider names or a comma-separated string"
                )
        return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}


_WORDS: Final = {
    "1": True, "true": True, "yes": True, "on": True,
    "0": False, "false": False, "no": False, "off": False,
}  # fmt: skip


def parse_config(config: Any) -> ManagerConfig:
    """Validate ``config``; raise ``TypeError``/``ValueError`` naming every key at fault."""
    if config is None:
        return ManagerConfig()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    try:
        return ManagerConfig.model_validate(dict(config))
    except ValidationError as exc:
        raise ValueError(_config_message(exc)) from None


def _config_message(exc: ValidationError) -> str:
    lines = []
    allowed = sorted(ManagerConfig.model_fields)
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            lines.append(f"config[{key!r}]: unknown key{hint}; known keys: {', '.join(allowed)}")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"config[{key!r}]: {message}")
    return "invalid LLMManager config:\n  " + "\n  ".join(lines)


def check_timeout(timeout: Any) -> float:
    """A call's ``timeout``: a positive, finite number of seconds (not a bool or a str)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return value


def check_use_fallback(use_fallback: Any) -> bool:
    """A call's ``use_fallback``: a bool (a truthy string would be a silent surprise)."""
    if not isinstance(use_fallback, bool):
        raise TypeError(f"use_fallback must be a bool, got {type(use_fallback).__name__}")
    return use_fallback


def check_provider(provider: Any) -> str | None:
    """A call's ``provider``: None, or a non-empty name."""
    if provider is None:
        return None
    if not isinstance(provider, str):
        raise TypeError(f"provider must be a str or None, got {type(provider).__name__}")
    if not provider.strip():
        raise ValueError("provider must be a provider name, not an empty string")
    return provider


_MODE_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


def check_mode(mode: Any) -> Mode:
    """A call's ``mode``: an `ExecutionMode`, or a mode's name (a seed mode's value
    gives its member). Whether a chain serves it is the chain set's to say."""
    if isinstance(mode, ExecutionMode):
        return mode
    if isinstance(mode, Enum):  # another package's mode enum (a host's): its value
        mode = mode.value
    if not isinstance(mode, str):
        raise TypeError(
            f"mode must be an ExecutionMode or a mode's name, got {type(mode).__name__}"
        )
    if not _MODE_NAME.match(mode):
        raise ValueError(
            f"mode {mode[:40]!r} is not a mode's name (a letter, then letters, digits, _ . -)"
        )
    return mode_of(mode)
