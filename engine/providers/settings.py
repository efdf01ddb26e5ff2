"""Providers as data: the four built-in providers, and the providers file that overrides
them or adds any OpenAI-compatible (or Anthropic- or Ollama-style) endpoint.

A providers file is ``providers.yaml`` in the chains directory::

    providers:
      openai:                       # a built-in: change only what you name
        model: gpt-4.1
      groq:                         # a new provider, usable in chains as `groq`
        kind: openai                # wire protocol: openai, anthropic or ollama
        base_url: https://api.groq.com/openai/v1
        api_key_env: GROQ_API_KEY   # the key is read from this variable, never from a file
        model: llama-3.3-70b-versatile
        headers: {X-Title: torq}    # "${VAR}" in a value is read from the environment

Keys and URLs are read from the environment when the manager is built; a missing key
makes the provider ``not_configured`` at call time, never an error at start-up.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from engine.chain.loader import locate, read_yaml, validation_problems
from engine.chain.spec import Loc
from engine.errors import ChainConfigError, Problem
from engine.health.policy import BreakerPolicy, HealthBackend, ProbePolicy, RetryBudgetPolicy
from engine.health.quota import QuotaPolicy
from engine.providers.body import DEFAULT_MAX_RESPONSE_BYTES
from engine.providers.bulkhead import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE
from engine.providers.catalogue import PRICES, WINDOWS, ModelInfo, ModelPrice, ModelWindow
from engine.providers.providers_file import (
    AsyncTransport,
    Kind,
    MaxTokensField,
    ProviderEntry,
    ProvidersFile,
)
from engine.providers.sendable import sendable_problems

__all__ = [
    "BUILTIN_SETTINGS",
    "PROVIDERS_FILE",
    "ProviderEntry",
    "ProviderSettings",
    "ProvidersFile",
    "check_providers_file",
    "health_backend",
    "load_providers_file",
]

PROVIDERS_FILE: Final = "providers.yaml"
_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ProviderSettings:
    """Everything needed to build one HTTP provider (still naming env variables, not values)."""

    name: str
    kind: Kind
    base_url: str
    model: str
    api_key_env: str | None = None
    base_url_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_queue: int = DEFAULT_MAX_QUEUE
    async_transport: AsyncTransport = "asyncio"
    max_tokens_field: MaxTokensField = "max_tokens"
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    retry_budget: RetryBudgetPolicy = field(default_factory=RetryBudgetPolicy)
    quota: QuotaPolicy | None = None
    #: active health checks while the breaker is open
    health_check: ProbePolicy = field(default_factory=ProbePolicy)
    #: model -> (input, output, cache read, cache write) USD per million tokens (a cache
    #: price of None is the input price)
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    #: model -> (context window, longest output) in tokens
    models: Mapping[str, ModelWindow] = field(default_factory=dict)
    #: the price each model name a reply gave resolved to (a prefix match is looked for
    #: once per name, not once per reply)
    _priced: dict[str, ModelPrice | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def price_of(self, model: str) -> ModelPrice | None:
        """The price of ``model``: its own, or that of the longest known name it starts
        with ("gpt-4.1-mini-2025-04-14" is priced as "gpt-4.1-mini"); None when unknown."""
        price = self.prices.get(model)
        if price is not None:
            return price
        known = self._priced.get(model, False)
        if known is not False:
            return known  # type: ignore[return-value]
        names = [name for name in self.prices if model.startswith(name)]
        found = self.prices[max(names, key=len)] if names else None
        if len(self._priced) < 1024:  # reply-given names: bounded
            self._priced[model] = found
        return found

    def cost(
        self,
        model: str | None,
        tokens_in: int,
        tokens_out: int,
        cache_read: int = 0,
        cache_write: int = 0,
        *,
        cache_in_input: bool = True,
    ) -> float | None:
        """The estimated cost of a reply, or None when the model's price is unknown (the
        longest known model name the reply's model starts with: "gpt-4.1-mini-2025-04-14"
        is priced as "gpt-4.1-mini"). Prompt-cache reads and writes are priced at their
        own rates; ``cache_in_input`` says whether ``tokens_in`` already counts them
        (OpenAI's ``prompt_tokens`` does, Anthropic's ``input_tokens`` does not)."""
        if not model:
            return None
        price = self.price_of(model)
        if price is None:
            return None
        plain = tokens_in - cache_read - cache_write if cache_in_input else tokens_in
        read = price[0] if price[2] is None else price[2]
        write = price[0] if price[3] is None else price[3]
        total = max(plain, 0) * price[0] + tokens_out * price[1]
        total += cache_read * read + cache_write * write
        return round(total / 1_000_000, 8)


#: The built-in providers, under the names chains use.
BUILTIN_SETTINGS: Final[Mapping[str, ProviderSettings]] = {
    "deepseek": ProviderSettings(
        "deepseek", "openai", "https://api.deepseek.com", "deepseek-chat",
        api_key_env="DEEPSEEK_API_KEY", base_url_env="DEEPSEEK_BASE_URL",
        prices=PRICES["deepseek"], models=WINDOWS["deepseek"],
    ),
    "openai": ProviderSettings(
        "openai", "openai", "https://api.openai.com/v1", "gpt-4.1-mini",
        api_key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL",
        prices=PRICES["openai"], models=WINDOWS["openai"],
        max_tokens_field="max_completion_tokens",
    ),
    "claude": ProviderSettings(
        "claude", "anthropic", "https://api.anthropic.com", "claude-sonnet-4-5",
        api_key_env="ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL",
        prices=PRICES["claude"], models=WINDOWS["claude"],
    ),
    "ollama": ProviderSettings(
        "ollama", "ollama", "http://localhost:11434", "llama3.2",
        base_url_env="OLLAMA_HOST", prices=PRICES["ollama"], models=WINDOWS["ollama"],
    ),
}  # fmt: skip


def _model_at(loc: Loc) -> type[BaseModel] | None:
    if not loc:
        return ProvidersFile
    if len(loc) == 2 and loc[0] == "providers":
        return ProviderEntry
    if len(loc) == 3 and loc[0] == "providers":
        return _SECTIONS.get(str(loc[2]))
    if len(loc) == 4 and loc[0] == "providers" and loc[2] == "models":
        return ModelInfo
    return None


_SECTIONS: Final[Mapping[str, type[BaseModel]]] = {
    "breaker": BreakerPolicy, "retry_budget": RetryBudgetPolicy, "quota": QuotaPolicy,
    "health_check": ProbePolicy,
}  # fmt: skip


def check_providers_file(
    path: str | os.PathLike[str],
) -> tuple[dict[str, ProviderSettings] | None, list[Problem]]:
    """Validate a providers file; return the settings it defines (merged with the built-ins
    it overrides) and every problem, located by file:line:column."""
    file = Path(path)
    source = str(file)
    data, values, keys, problems = read_yaml(file, list_prefix=("providers",))
    if problems:
        return None, problems
    try:
        parsed = ProvidersFile.model_validate(data)
    except ValidationError as exc:
        return None, validation_problems(exc, source, values, keys, _model_at)
    settings: dict[str, ProviderSettings] = {}
    for name, entry in parsed.providers.items():
        loc: Loc = ("providers", name)
        line, column = locate(loc, values, keys, key=True)
        if not _NAME.match(name):
            problems.append(
                Problem(source, line, column, f"providers.{name}",
                        "a provider name starts with a letter and uses letters, digits, _ . -")
            )  # fmt: skip
            continue
        base = BUILTIN_SETTINGS.get(name)
        if base is None:
            missing = [k for k in ("kind", "base_url", "model") if getattr(entry, k) is None]
            if missing:
                problems.append(
                    Problem(source, line, column, f"providers.{name}",
                            f"a new provider needs {', '.join(missing)}")
                )  # fmt: skip
                continue
        elif entry.kind is not None and entry.kind != base.kind:
            kline, kcol = locate((*loc, "kind"), values, keys, key=False)
            problems.append(
                Problem(source, kline, kcol, f"providers.{name}.kind",
                        f"'{name}' is built in with kind '{base.kind}'; "
                        "add a provider under another name instead")
            )  # fmt: skip
            continue
        found = sendable_problems(entry.headers, entry.base_url, source, loc, values, keys)
        if found:
            problems.extend(found)
            continue
        settings[name] = _merge(name, entry, base)
    return (settings if not problems else None), problems


def _merge(name: str, entry: ProviderEntry, base: ProviderSettings | None) -> ProviderSettings:
    # Attributes, not model_dump(): the breaker and retry budget stay policy objects.
    given: dict[str, Any] = {
        k: dict(v) if k == "headers" else v
        for k in type(entry).model_fields
        if (v := getattr(entry, k)) is not None
    }
    if "prices" in given:  # added to (or replacing) the built-in prices, model by model
        own = {
            m: (p.input, p.output, p.cache_read, p.cache_write)
            for m, p in given.pop("prices").items()
        }
        given["prices"] = {**(base.prices if base else {}), **own}
    if "models" in given:  # added to (or replacing) the built-in catalogue, model by model
        mine = {m: (i.context, i.max_output) for m, i in given.pop("models").items()}
        given["models"] = {**(base.models if base else {}), **mine}
    if base is None:
        return ProviderSettings(name=name, **given)
    headers = {**base.headers, **given.pop("headers", {})}
    fields: dict[str, Any] = {
        "kind": base.kind,
        "base_url": base.base_url,
        "model": base.model,
        "api_key_env": base.api_key_env,
        "base_url_env": base.base_url_env,
        "connect_timeout": base.connect_timeout,
        "max_response_bytes": base.max_response_bytes,
        "max_in_flight": base.max_in_flight,
        "max_queue": base.max_queue,
        "async_transport": base.async_transport,
        "max_tokens_field": base.max_tokens_field,
        "breaker": base.breaker,
        "retry_budget": base.retry_budget,
        "quota": base.quota,
        "prices": base.prices,
        "models": base.models,
        **given,
    }
    if "base_url" in given and "base_url_env" not in given:
        fields["base_url_env"] = None  # a URL written in the file is meant, not the default env
    return ProviderSettings(name=name, headers=headers, **fields)


def health_backend(directory: Path) -> HealthBackend | None:
    """The ``health:`` section of ``directory/providers.yaml`` (already validated by
    `load_providers_file`), if any."""
    file = directory / PROVIDERS_FILE
    if not file.exists():
        return None
    data, _, _, problems = read_yaml(file, list_prefix=("providers",))
    if problems:
        raise ChainConfigError(problems)
    return ProvidersFile.model_validate(data).health


def load_providers_file(directory: Path) -> dict[str, ProviderSettings]:
    """The built-ins, with ``directory/providers.yaml`` applied when it exists."""
    merged = dict(BUILTIN_SETTINGS)
    file = directory / PROVIDERS_FILE
    if not file.exists():
        return merged
    settings, problems = check_providers_file(file)
    if settings is None:
        raise ChainConfigError(problems)
    merged.update(settings)
    return merged
