"""A provider's settings resolved against the environment: its key, its base URL (credentials
in a URL moved to a header), its headers with variables filled in, and why it is unusable,
if it is; every secret registered so that none is ever shown."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from engine.providers.secrets import invalid_secret, register_secret
from engine.providers.sendable import base_url_problem, header_problem
from engine.providers.settings import ProviderSettings

__all__ = ["Resolved", "describe", "resolve"]


_ENV_REF: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Resolved:
    """Settings with the environment read: URL, key and headers as they will be sent."""

    settings: ProviderSettings
    base_url: str
    api_key: str | None
    headers: Mapping[str, str]
    secrets: tuple[str, ...]
    #: Why the key (or a header read from the environment) cannot be sent; never quotes it.
    unusable: str | None = None


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its ``user:password@`` part, and that user and password."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url, None, None
    user, _, password = userinfo.partition(":")
    return f"{scheme}{sep}{host}{slash}{path}", unquote(user), unquote(password) or None


def resolve(settings: ProviderSettings, environ: Mapping[str, str] | None = None) -> Resolved:
    """Read the environment for ``settings``: base URL override, API key, header references.

    Raises ``ValueError`` for settings that would put a bad request on the wire (a header
    the transport owns or whose name is not a token, a base URL with a query or fragment);
    a base URL from the environment with one makes the provider unusable, saying so."""
    env = os.environ if environ is None else environ
    for header in settings.headers:
        why = header_problem(header)
        if why is not None:
            raise ValueError(f"provider '{settings.name}': {why}")
    why = base_url_problem(settings.base_url)
    if why is not None:
        raise ValueError(f"provider '{settings.name}': base_url {settings.base_url!r}: {why}")
    base_url = settings.base_url
    from_env: str | None = None
    if settings.base_url_env and env.get(settings.base_url_env, "").strip():
        base_url = env[settings.base_url_env].strip()
        from_env = base_url_problem(base_url)
    if "://" not in base_url:  # OLLAMA_HOST is often given as host:port
        base_url = f"http://{base_url}"
    # Credentials in a URL would show in httpx's log lines and in every message naming the
    # URL: they leave the URL and travel as a Basic authorization header instead.
    base_url, user, password = _split_credentials(base_url)
    api_key = env.get(settings.api_key_env, "").strip() or None if settings.api_key_env else None
    secrets: list[str] = [api_key] if api_key else []
    unusable: str | None = None
    if from_env is not None:
        unusable = f"{settings.base_url_env}: {from_env}"
    if api_key is not None and unusable is None:
        why = invalid_secret(api_key)
        if why is not None:
            unusable = f"the value of {settings.api_key_env} {why}"

    def expand(match: re.Match[str]) -> str:
        nonlocal unusable
        value = env.get(match.group(1), "")
        if value:
            secrets.append(value)
            why = invalid_secret(value.replace(" ", "_"))
            if why is not None and unusable is None:
                unusable = f"the value of {match.group(1)} {why}"
        return value

    headers = {k: _ENV_REF.sub(expand, v) for k, v in settings.headers.items()}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        secrets.extend(s for s in (password, f"{user}:{password}", token) if s)
        if api_key is None:  # a key, when there is one, is what authenticates
            headers.setdefault("Authorization", f"Basic {token}")
    for secret in secrets:
        register_secret(secret)
    return Resolved(settings, base_url.rstrip("/"), api_key, headers, tuple(secrets), unusable)


def describe(resolved: Resolved) -> dict[str, Any]:
    """A secret-free description, for logs and the CLI."""
    s = resolved.settings
    return {
        "name": s.name,
        "kind": s.kind,
        "base_url": resolved.base_url,
        "model": s.model,
        "api_key_env": s.api_key_env,
        "configured": resolved.api_key is not None or s.api_key_env is None,
    }
