"""Where a manager's settings come from: the ``config`` dict, the environment, the files.

`resolve_settings` is the one place that reads ``TORQ_*`` variables, and it reads them
once, at construction, into one frozen `Settings`. Precedence, highest first: the
``config`` dict, then the environment, then the chains directory's files
(``providers.yaml``), then the engine's defaults.

==========================  ===========================  =================================
setting                     config key                   environment variable
==========================  ===========================  =================================
chains directory            ``chains_dir``               ``TORQ_CHAINS_DIR``
fallback on or off          ``fallback_enabled``         ``TORQ_FALLBACK_ENABLED``
seconds per attempt         ``provider_timeout``         ``TORQ_PROVIDER_TIMEOUT``
a mode's provider order     ``chains``                   ``TORQ_DIRECT_CHAIN``,
                                                         ``TORQ_RESEARCH_CHAIN``,
                                                         ``TORQ_CODE_CHAIN``
watch the chains            ``reload``                   ``TORQ_CHAINS_RELOAD``
health backend              ``health``                   ``TORQ_REDIS_URL``
request log                 ``telemetry``                ``TORQ_TELEMETRY_PATH``
==========================  ===========================  =================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from engine.chain.loader import default_chains_dir
from engine.health.policy import HealthBackend
from engine.manager.config import ManagerConfig, TelemetryConfig, parse_config
from engine.providers.settings import ProviderSettings, health_backend, load_providers_file
from engine.types.meta import ExecutionMode

__all__ = ["MODE_ENV", "Settings", "resolve_chains_dir", "resolve_settings"]

#: Environment variables that replace a mode's provider order.
MODE_ENV: Final[Mapping[ExecutionMode, str]] = {
    ExecutionMode.DIRECT: "TORQ_DIRECT_CHAIN",
    ExecutionMode.RESEARCH: "TORQ_RESEARCH_CHAIN",
    ExecutionMode.CODE_GENERATION: "TORQ_CODE_CHAIN",
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Settings:
    """Everything a manager is built from, resolved once."""

    config: ManagerConfig
    chains_dir: Path
    fallback_enabled: bool
    provider_timeout: float | None
    default_provider: str
    #: mode -> (provider order, where it came from), for the modes given one
    orders: Mapping[str, tuple[list[str], str]]
    reload: bool
    reload_interval: float
    health: HealthBackend | None
    health_source: str
    telemetry: TelemetryConfig | None
    providers: Mapping[str, ProviderSettings] = field(default_factory=dict)
    objects: Mapping[str, Any] = field(default_factory=dict)
    #: Whether the chains directory was named (config or TORQ_CHAINS_DIR), not the default.
    chains_dir_given: bool = False

    @property
    def health_off(self) -> bool:
        """No breakers and no retry budget at all."""
        return self.health is not None and self.health.backend == "off"


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use true or false")


def _positive_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def provider_list(raw: Any) -> list[str]:
    """A provider order from a list or a comma-separated string."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [str(item).strip() for item in items if str(item).strip()]


def resolve_chains_dir(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Lookup order: the explicit argument, then ``TORQ_CHAINS_DIR``, then the packaged defaults."""
    if explicit is not None:
        return Path(explicit)
    from_env = (os.environ if environ is None else environ).get("TORQ_CHAINS_DIR", "").strip()
    return Path(from_env) if from_env else default_chains_dir()


def resolve_settings(
    config: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings of a manager (raises ``TypeError``/``ValueError`` naming the key or
    the variable at fault, or `ChainConfigError` for a bad file)."""
    env = os.environ if environ is None else environ
    parsed = parse_config(config)
    chains_dir = resolve_chains_dir(parsed.chains_dir, env)
    providers = load_providers_file(chains_dir)  # a bad file: ChainConfigError, file:line
    if parsed.fallback_enabled is not None:
        fallback = parsed.fallback_enabled
    else:
        fallback = _flag("TORQ_FALLBACK_ENABLED", env.get("TORQ_FALLBACK_ENABLED", "true"))
    timeout = parsed.provider_timeout
    raw_timeout = env.get("TORQ_PROVIDER_TIMEOUT", "").strip()
    if timeout is None and raw_timeout:
        timeout = _positive_seconds("TORQ_PROVIDER_TIMEOUT", raw_timeout)
    orders: dict[str, tuple[list[str], str]] = {}
    for mode, name in MODE_ENV.items():
        if env.get(name, "").strip():
            orders[mode.value] = (provider_list(env[name]), f"env {name}")
    for key, order in parsed.chains.items():  # any mode a chain names (checked with them)
        orders[key] = (provider_list(order), f"config['chains']['{key}']")
    reload = parsed.reload or _flag(
        "TORQ_CHAINS_RELOAD", env.get("TORQ_CHAINS_RELOAD", "false") or "false"
    )
    health, source = parsed.health, "config['health']"
    if health is None and env.get("TORQ_REDIS_URL", "").strip():
        health = HealthBackend(backend="redis", url=env["TORQ_REDIS_URL"].strip())
        source = "env TORQ_REDIS_URL"
    if health is None:
        health = health_backend(chains_dir)
        source = f"{chains_dir / 'providers.yaml'}: health"
    if health is not None and health.backend == "redis" and not health.url:
        raise ValueError(f"{source}: backend redis needs a url (redis://host:port/db)")
    telemetry = parsed.telemetry
    if telemetry is None and env.get("TORQ_TELEMETRY_PATH", "").strip():
        telemetry = TelemetryConfig(path=env["TORQ_TELEMETRY_PATH"].strip())
    return Settings(
        config=parsed,
        chains_dir=chains_dir,
        fallback_enabled=fallback,
        provider_timeout=timeout,
        default_provider=parsed.default_provider or "claude",
        orders=orders,
        reload=reload,
        reload_interval=parsed.reload_interval,
        health=health,
        health_source=source,
        telemetry=telemetry,
        providers=providers,
        objects=dict(parsed.providers),
        chains_dir_given=parsed.chains_dir is not None
        or bool(env.get("TORQ_CHAINS_DIR", "").strip()),
    )
