"""``LLMManager``: the one integration point, with the API of TORQ Console's manager.

``generate_response`` answers through the mode's chain (or through one named provider) and
always returns ``(text, GenerationMeta)``; when every provider fails, the text is a friendly
apology and ``meta.error`` / ``meta.error_category`` say why.

Configuration, highest precedence first: the ``config`` dict, then the environment
(``TORQ_FALLBACK_ENABLED``, ``TORQ_DIRECT_CHAIN``, ``TORQ_RESEARCH_CHAIN``,
``TORQ_CODE_CHAIN``, ``TORQ_PROVIDER_TIMEOUT``, ``TORQ_CHAINS_DIR``), then the YAML chains.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from .classify import Completion
from .config import (
    HealthBackend,
    TelemetryConfig,
    check_mode,
    check_provider,
    check_timeout,
    parse_config,
)
from .errors import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainConfigError,
    Problem,
    ProviderError,
)
from .executor import FallbackExecutor
from .health import (
    BreakerPolicy,
    HealthConfig,
    HealthStore,
    LocalHealthStore,
    RetryBudgetPolicy,
    default_policies,
)
from .loader import load_chains, rebuild, resolve_chains_dir
from .machine import CompiledChain, compile_chain
from .meta import ExecutionMode, GenerationMeta
from .providers.http import HTTPProvider
from .providers.settings import health_backend, load_providers_file, resolve
from .request import ChatRequest, build_request
from .runtime import Runtime
from .spec import Chain, ChainSpec, StepSpec, with_order, with_timeout
from .telemetry.events import Sink, Sinks

if TYPE_CHECKING:  # imported on first use: most applications never stream or reload
    from .reload import ChainReloader
    from .streaming import AsyncChatStream, ChatStream
    from .telemetry.jsonl import JsonlSink

__all__ = ["BUILTIN_PROVIDERS", "MODE_ENV", "LLMManager"]

#: Provider names the engine knows without registration.
BUILTIN_PROVIDERS: Final = ("deepseek", "openai", "claude", "ollama")
#: Environment variables that replace a mode's provider order.
MODE_ENV: Final[Mapping[ExecutionMode, str]] = {
    ExecutionMode.DIRECT: "TORQ_DIRECT_CHAIN",
    ExecutionMode.RESEARCH: "TORQ_RESEARCH_CHAIN",
    ExecutionMode.CODE_GENERATION: "TORQ_CODE_CHAIN",
}
_DEFAULT_CHAIN: Final = "default"
_SINGLE_CACHE: Final = 256  # single-provider chains kept (per mode and provider)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use true or false")


def _positive_seconds(name: str, raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _provider_list(raw: Any) -> list[str]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return [str(item).strip() for item in items if str(item).strip()]


class LLMManager:
    """Answers prompts through provider fallback chains. Needs no keys or network to build.

    The built-in providers (deepseek, openai, claude, ollama) and those of
    ``providers.yaml`` in the chains directory are HTTP providers reading their keys from
    the environment; close them with :meth:`close` / :meth:`aclose` or a ``with`` block.

    ``config`` keys (all optional): ``fallback_enabled`` (bool), ``chains_dir`` (path),
    ``chains`` (mode -> provider list or comma-separated string), ``provider_timeout``
    (seconds per attempt), ``providers`` (name -> provider object), ``default_provider``
    (the provider of the single-provider path, ``"claude"`` unless set). ``runtime`` injects
    clock, sleep and randomness.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, runtime: Runtime | None = None):
        settings = parse_config(config)  # raises TypeError / ValueError naming the key
        self.config: dict[str, Any] = dict(config or {})
        self._settings = settings
        self.logger = logging.getLogger(__name__)
        self.providers: dict[str, Any] = {}
        self.default_provider: str = settings.default_provider or "claude"
        self.search_provider = "deepseek"
        self.local_provider = "ollama"
        self.chains_dir = resolve_chains_dir(settings.chains_dir)
        self.provider_settings = load_providers_file(self.chains_dir)
        self._init_providers()

        if settings.fallback_enabled is not None:
            self.fallback_enabled = settings.fallback_enabled
        else:
            self.fallback_enabled = _flag(
                "TORQ_FALLBACK_ENABLED", os.environ.get("TORQ_FALLBACK_ENABLED", "true")
            )
        self.provider_timeout: float | None = self._provider_timeout()
        self.chains: dict[str, CompiledChain] = self._load_chains()
        self._reloader_: ChainReloader | None = None
        if self._settings.reload or _flag(
            "TORQ_CHAINS_RELOAD", os.environ.get("TORQ_CHAINS_RELOAD", "false") or "false"
        ):
            self._reloader.watch()
        self._single: dict[tuple[str, str], CompiledChain] = {}
        # Look providers up through get_provider at attempt time, never through a bound
        # method captured now: callers (and tests) may replace get_provider later.
        #: Provider health (breakers, retry budgets), shared by every call of this manager
        #: (and, with Redis, by every process using the same Redis).
        self.health = HealthConfig(self._health_store(), self._health_policies)
        off = self._settings.health is not None and self._settings.health.backend == "off"
        #: The JSONL request log, when config['telemetry'] or TORQ_TELEMETRY_PATH asks.
        self.telemetry: JsonlSink | None = self._telemetry()
        self._executor = FallbackExecutor(
            lambda name: self.get_provider(name),
            runtime,
            None if off else self.health,
            Sinks([self.telemetry] if self.telemetry else []),
        )
        self.fallback_executor = self._executor if self.fallback_enabled else None
        self.logger.info("Provider fallback %s", "enabled" if self.fallback_enabled else "disabled")

    # -- providers ---------------------------------------------------------------------

    def _init_providers(self) -> None:
        """The HTTP providers (built-in and from providers.yaml), then the config's objects.

        Building them reads keys and URLs from the environment but opens no connection."""
        for name, settings in self.provider_settings.items():
            self.providers[name] = HTTPProvider(resolve(settings))
        for name, provider in self._settings.providers.items():
            self.register_provider(name, provider)

    def close(self) -> None:
        """Close the providers' HTTP clients and the health store's connections."""
        if self._reloader_ is not None:
            self._reloader_.stop()
        for provider in self.providers.values():
            close = getattr(provider, "close", None)
            if callable(close):
                close()
        store_close = getattr(self.health.store, "close", None)
        if callable(store_close):
            store_close()
        for sink in self._executor.sinks:
            sink_close = getattr(sink, "close", None)
            if callable(sink_close):
                sink_close()

    async def aclose(self) -> None:
        """Close the providers' HTTP clients, sync and async."""
        if self._reloader_ is not None:
            self._reloader_.stop()
        for provider in self.providers.values():
            aclose = getattr(provider, "aclose", None)
            if inspect.iscoroutinefunction(aclose):
                await aclose()
            elif callable(getattr(provider, "close", None)):
                provider.close()
        store_aclose = getattr(self.health.store, "aclose", None)
        if inspect.iscoroutinefunction(store_aclose):
            await store_aclose()
        for sink in self._executor.sinks:
            sink_close = getattr(sink, "close", None)
            if callable(sink_close):
                sink_close()

    def __enter__(self) -> LLMManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _telemetry(self) -> JsonlSink | None:
        settings = self._settings.telemetry
        if settings is None and os.environ.get("TORQ_TELEMETRY_PATH", "").strip():
            settings = TelemetryConfig(path=os.environ["TORQ_TELEMETRY_PATH"].strip())
        if settings is None:
            return None
        from .telemetry.jsonl import JsonlSink

        return JsonlSink(
            settings.path,
            max_bytes=settings.max_bytes,
            backups=settings.backups,
            include_text=settings.include_text,
        )

    def add_sink(self, sink: Sink) -> None:
        """Register a telemetry sink (``handle(event)``; see :mod:`engine.telemetry.events`)."""
        self._executor.sinks.add(sink)

    def enable_opentelemetry(self, tracer_provider: Any = None) -> None:
        """Emit a span per request and per attempt (needs ``opentelemetry-api``)."""
        from .telemetry.otel import OpenTelemetrySink

        def endpoint(name: str) -> str | None:
            url = getattr(self.providers.get(name), "base_url", None)
            return url if isinstance(url, str) else None

        self.add_sink(OpenTelemetrySink(tracer_provider, endpoint))

    def enable_prometheus(self, registry: Any = None) -> None:
        """Count requests and attempts, time attempts, show breaker states (needs
        ``prometheus-client``), in ``registry`` or the default one."""
        from .telemetry.prometheus import PrometheusSink

        def breakers() -> dict[str, str]:
            return {key: h.state for key, h in self.health.store.snapshot().items()}

        def log_dropped() -> float:
            return float(self.telemetry.dropped) if self.telemetry is not None else 0.0

        self.add_sink(PrometheusSink(registry, breakers, log_dropped=log_dropped))

    def _health_store(self) -> HealthStore:
        """config['health'], else TORQ_REDIS_URL, else providers.yaml's health, else local."""
        backend = self._settings.health
        source = "config['health']"
        if backend is None and os.environ.get("TORQ_REDIS_URL", "").strip():
            backend = HealthBackend(backend="redis", url=os.environ["TORQ_REDIS_URL"].strip())
            source = "env TORQ_REDIS_URL"
        if backend is None:
            backend = health_backend(self.chains_dir)
            source = f"{self.chains_dir / 'providers.yaml'}: health"
        if backend is None or backend.backend in ("local", "off"):
            return LocalHealthStore()
        if not backend.url:
            raise ValueError(f"{source}: backend redis needs a url (redis://host:port/db)")
        from .health.redis_store import RedisHealthStore

        return RedisHealthStore(
            backend.url,
            namespace=backend.namespace,
            cache_ttl=backend.cache_ttl,
            retry_interval=backend.retry_interval,
            timeout=backend.timeout,
        )

    def _health_policies(self, name: str) -> tuple[BreakerPolicy, RetryBudgetPolicy]:
        settings = self.provider_settings.get(name)
        if settings is None:
            return default_policies(name)
        return settings.breaker, settings.retry_budget

    def get_provider(self, name: str) -> Any:
        """The provider registered under ``name``, or None."""
        return self.providers.get(name)

    def register_provider(self, name: str, provider: Any) -> None:
        """Register (or replace) the provider object used for ``name``."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"provider name must be a non-empty string, got {name!r}")
        if not callable(getattr(provider, "generate_response", None)):
            raise TypeError(
                f"provider {name!r} has no generate_response(prompt=..., timeout=...) method"
            )
        self.providers[name] = provider

    # -- chains ------------------------------------------------------------------------

    def _load_chains(self, chains: dict[str, Chain] | None = None) -> dict[str, CompiledChain]:
        """Compile the chains (read from the chains directory unless given), with the
        config's and the environment's overrides applied on top."""
        if chains is None:
            chains = load_chains(self.chains_dir)
        timeout = self.provider_timeout
        known = set(BUILTIN_PROVIDERS) | set(self.providers) | set(self.provider_settings)
        for chain in chains.values():
            known.update(step.provider for step in chain.steps)
        overrides: dict[str, Any] = dict(self._settings.chains)
        problems: list[Problem] = []

        resolved: dict[str, Chain] = dict(chains)
        for mode in ExecutionMode:
            name = mode.value if mode.value in chains else _DEFAULT_CHAIN
            if name not in chains:
                problems.append(
                    Problem(
                        str(self.chains_dir),
                        0,
                        0,
                        "",
                        f"no chain for mode '{mode.value}': add {mode.value}.yaml "
                        f"or {_DEFAULT_CHAIN}.yaml",
                    )
                )
                continue
            order, source = self._order_override(mode, overrides)
            if order is None:
                continue
            unknown = [p for p in order if p not in known]
            for provider in unknown:
                close = difflib.get_close_matches(provider, sorted(known), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Problem(source, 0, 0, "", f"unknown provider '{provider}'{hint}"))
            if not order:
                problems.append(Problem(source, 0, 0, "", "the provider list is empty"))
            if unknown or not order:
                continue
            base = chains[name]
            try:
                resolved[mode.value] = rebuild(with_order(base, order), base, source)
            except ChainConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ChainConfigError(problems)

        if timeout is not None:
            resolved = {
                key: rebuild(with_timeout(chain.spec, timeout), chain, chain.source)
                for key, chain in resolved.items()
            }
        return {key: compile_chain(chain) for key, chain in resolved.items()}

    def _order_override(
        self, mode: ExecutionMode, overrides: Mapping[str, Any]
    ) -> tuple[list[str] | None, str]:
        if mode.value in overrides:
            return _provider_list(overrides[mode.value]), f"config['chains']['{mode.value}']"
        env = MODE_ENV.get(mode)
        if env is not None and os.environ.get(env, "").strip():
            return _provider_list(os.environ[env]), f"env {env}"
        return None, ""

    def _provider_timeout(self) -> float | None:
        if self._settings.provider_timeout is not None:
            return self._settings.provider_timeout
        raw = os.environ.get("TORQ_PROVIDER_TIMEOUT", "").strip()
        return _positive_seconds("TORQ_PROVIDER_TIMEOUT", raw) if raw else None

    @property
    def _reloader(self) -> ChainReloader:
        """Made on first use: most applications never reload."""
        if self._reloader_ is None:
            from .reload import ChainReloader

            self._reloader_ = ChainReloader(self, self._settings.reload_interval)
        return self._reloader_

    def reload(self) -> dict[str, Any]:
        """Read the chains directory again: every valid changed chain replaces the running
        one at once (requests already running finish on theirs), every invalid one keeps
        the previous chain and is reported once, with file:line. Returns
        :meth:`chain_status`."""
        self._reloader.reload()
        return self.chain_status()

    def chain_status(self) -> dict[str, Any]:
        """Per chain: the file it came from, when it was loaded, and the last error."""
        return self._reloader.status()

    def _swap_chains(self, chains: dict[str, CompiledChain]) -> None:
        # One assignment: a request reads self.chains once and keeps the chain it got.
        self.chains = chains
        self._single = {}

    def chain_for(self, mode: ExecutionMode | str) -> CompiledChain:
        """The compiled chain a mode runs (its own file, or ``default``)."""
        key = check_mode(mode).value
        return self.chains.get(key) or self.chains[_DEFAULT_CHAIN]

    def chain_for_provider(self, provider: str, mode: ExecutionMode | str) -> CompiledChain:
        """The one-step chain of the single-provider path (built once per mode and provider):
        the provider's step settings from the mode's chain, without retries."""
        mode = check_mode(mode)
        cached = self._single.get((mode.value, provider))
        if cached is not None:
            return cached
        base = self.chain_for(mode).chain
        template = next((s for s in base.steps if s.provider == provider), None)
        step = StepSpec(
            provider=provider,
            model=template.model if template else None,
            timeout=self.provider_timeout
            or (template.timeout if template else base.spec.defaults.timeout),
            retries=0,
        )
        spec = ChainSpec(
            description=f"single provider: {provider}", deadline=base.deadline, steps=[step]
        )
        compiled = compile_chain(
            rebuild(spec, base, f"single provider '{provider}'", name=f"provider:{provider}")
        )
        # Only registered names are kept: callers cannot grow the cache with made-up names,
        # and it stays bounded even with many registered providers. (The registry is read,
        # not get_provider: an attempt looks its provider up exactly once, at its start.)
        if provider in self.providers:
            if len(self._single) >= _SINGLE_CACHE:
                del self._single[next(iter(self._single))]
            self._single[(mode.value, provider)] = compiled
        return compiled

    # -- generation --------------------------------------------------------------------

    def _plan(
        self,
        provider: str | None,
        mode: ExecutionMode | str,
        timeout: float,
        use_fallback: bool,
    ) -> tuple[CompiledChain, ExecutionMode, float]:
        provider = check_provider(provider)
        mode = check_mode(mode)
        seconds = check_timeout(timeout)
        if not isinstance(use_fallback, bool):
            raise TypeError(f"use_fallback must be a bool, got {type(use_fallback).__name__}")
        if provider is not None or not use_fallback or not self.fallback_enabled:
            chain = self.chain_for_provider(provider or self.default_provider, mode)
        else:
            chain = self.chain_for(mode)
        return chain, mode, seconds

    def _prompt_plan(
        self,
        prompt: str,
        provider: str | None,
        mode: ExecutionMode | str,
        tools: list[str] | None,
        timeout: float,
        use_fallback: bool,
    ) -> tuple[CompiledChain, GenerationMeta, float]:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        chain, checked_mode, seconds = self._plan(provider, mode, timeout, use_fallback)
        if tools is not None and (
            not isinstance(tools, list | tuple) or not all(isinstance(t, str) for t in tools)
        ):
            raise TypeError("tools must be a list of tool names (str) or None")
        return chain, GenerationMeta(mode=checked_mode, tools_used=list(tools or [])), seconds

    def generate_response(
        self,
        prompt: str,
        provider: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        timeout: float = 60,
        use_fallback: bool = True,
    ) -> tuple[str, GenerationMeta]:
        """Answer ``prompt``; return ``(text, meta)``.

        A named ``provider``, ``use_fallback=False`` or fallback disabled take the
        single-provider path (one attempt, still recorded); otherwise the mode's chain runs.
        ``timeout`` bounds the whole call in seconds, together with the chain's deadline.
        When every provider fails, the text is a friendly error and ``meta.error`` is set.
        ``tools`` is the seed's list of tool *names*, recorded in ``meta.tools_used`` and
        not sent to any provider; to offer tool definitions to the model, use :meth:`chat`.
        """
        chain, meta, seconds = self._prompt_plan(
            prompt, provider, mode, tools, timeout, use_fallback
        )
        try:
            answer: Completion = self._executor.execute(chain, prompt, meta, seconds)
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return self._create_error_response(error), meta
        return answer.text, meta

    async def agenerate_response(
        self,
        prompt: str,
        provider: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        timeout: float = 60,
        use_fallback: bool = True,
    ) -> tuple[str, GenerationMeta]:
        """The async twin of :meth:`generate_response`, with the same parameters."""
        chain, meta, seconds = self._prompt_plan(
            prompt, provider, mode, tools, timeout, use_fallback
        )
        try:
            answer: Completion = await self._executor.aexecute(chain, prompt, meta, seconds)
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return self._create_error_response(error), meta
        return answer.text, meta

    def _chat_plan(
        self,
        messages: Any,
        system: str | None,
        mode: ExecutionMode | str,
        provider: str | None,
        tools: Any,
        timeout: float,
        use_fallback: bool,
        tool_choice: Any,
        response_format: Any,
        tags: Any,
        params: Mapping[str, Any],
    ) -> tuple[CompiledChain, ChatRequest, GenerationMeta, float]:
        chain, checked_mode, seconds = self._plan(provider, mode, timeout, use_fallback)
        request = build_request(messages, system, tools, tool_choice, response_format, tags, params)
        meta = GenerationMeta(mode=checked_mode, tags=dict(request.tags))
        return chain, request, meta, seconds

    def _chat_result(
        self, answer: Completion | None, error: Exception | None, meta: GenerationMeta
    ) -> tuple[Completion, GenerationMeta]:
        if answer is None:
            assert error is not None
            return Completion(self._create_error_response(error), finish_reason="error"), meta
        meta.tools_used = [call.name for call in answer.tool_calls]
        return answer, meta

    def chat(
        self,
        messages: Any,
        *,
        system: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        provider: str | None = None,
        tools: Any = None,
        timeout: float = 60,
        use_fallback: bool = True,
        tool_choice: Any = None,
        response_format: Any = None,
        tags: Mapping[str, str] | None = None,
        **params: Any,
    ) -> tuple[Completion, GenerationMeta]:
        """Answer a conversation; return ``(completion, meta)``.

        ``messages`` are :class:`~engine.request.Message` objects or OpenAI-style dicts
        (roles system, user, assistant, tool; assistant ``tool_calls``, tool results with
        ``tool_call_id``). ``tools`` are function definitions (OpenAI's shape, JSON Schema
        parameters); the completion's ``tool_calls`` are what the model asks to call.
        ``params``: ``temperature``, ``max_tokens``, ``top_p``, ``stop`` (a chain step's
        ``params`` fill in what the call leaves out). ``tags`` are recorded in
        ``meta.tags``. Chain, mode, provider, timeout and fallback work as in
        :meth:`generate_response`; when every provider fails, the completion's text is the
        friendly error, its ``finish_reason`` is ``"error"`` and ``meta.error`` is set.
        """
        chain, request, meta, seconds = self._chat_plan(
            messages, system, mode, provider, tools, timeout, use_fallback,
            tool_choice, response_format, tags, params,
        )  # fmt: skip
        try:
            answer = self._executor.execute(chain, request, meta, seconds)
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return self._chat_result(None, error, meta)
        return self._chat_result(answer, None, meta)

    async def achat(
        self,
        messages: Any,
        *,
        system: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        provider: str | None = None,
        tools: Any = None,
        timeout: float = 60,
        use_fallback: bool = True,
        tool_choice: Any = None,
        response_format: Any = None,
        tags: Mapping[str, str] | None = None,
        **params: Any,
    ) -> tuple[Completion, GenerationMeta]:
        """The async twin of :meth:`chat`, with the same parameters."""
        chain, request, meta, seconds = self._chat_plan(
            messages, system, mode, provider, tools, timeout, use_fallback,
            tool_choice, response_format, tags, params,
        )  # fmt: skip
        try:
            answer = await self._executor.aexecute(chain, request, meta, seconds)
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return self._chat_result(None, error, meta)
        return self._chat_result(answer, None, meta)

    def stream(
        self,
        messages: Any,
        *,
        system: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        provider: str | None = None,
        tools: Any = None,
        timeout: float = 60,
        use_fallback: bool = True,
        tool_choice: Any = None,
        response_format: Any = None,
        tags: Mapping[str, str] | None = None,
        **params: Any,
    ) -> ChatStream:
        """Stream the answer to a conversation: takes what :meth:`chat` takes and returns a
        :class:`~engine.streaming.ChatStream` to iterate for text and tool-call deltas.

        Before the first chunk reaches the caller, failures fall back along the chain as in
        :meth:`chat`; after it, the chain's ``on_midstream`` decides (``fail``: a
        :class:`~engine.errors.StreamInterruptedError` with the partial text; ``restart``:
        a :class:`~engine.streaming.Reset` event, then the next step's answer). The stream's
        ``meta`` fills in as it goes; ``completion`` is the whole answer at the end.
        """
        chain, request, meta, seconds = self._chat_plan(
            messages, system, mode, provider, tools, timeout, use_fallback,
            tool_choice, response_format, tags, params,
        )  # fmt: skip
        from .streaming import ChatStream

        return ChatStream(self._executor, chain, request, meta, seconds)

    def astream(
        self,
        messages: Any,
        *,
        system: str | None = None,
        mode: ExecutionMode | str = ExecutionMode.DIRECT,
        provider: str | None = None,
        tools: Any = None,
        timeout: float = 60,
        use_fallback: bool = True,
        tool_choice: Any = None,
        response_format: Any = None,
        tags: Mapping[str, str] | None = None,
        **params: Any,
    ) -> AsyncChatStream:
        """The async twin of :meth:`stream`: ``async for event in manager.astream(...)``."""
        chain, request, meta, seconds = self._chat_plan(
            messages, system, mode, provider, tools, timeout, use_fallback,
            tool_choice, response_format, tags, params,
        )  # fmt: skip
        from .streaming import AsyncChatStream

        return AsyncChatStream(self._executor, chain, request, meta, seconds)

    def _create_error_response(self, error: Exception) -> str:
        """A user-friendly error response (the texts of TORQ Console)."""
        if isinstance(error, AITimeoutError):
            return (
                "I apologize, but your request timed out. Please try a simpler query or try again."
            )
        if isinstance(error, ProviderError):
            return (
                f"I apologize, but the AI service is currently unavailable: {error}. "
                "Please try again."
            )
        if isinstance(error, ChainAbortedError):  # trying again would be refused again
            return f"I apologize, but I encountered an error: {error}."
        return f"I apologize, but I encountered an error: {error}. Please try again."
