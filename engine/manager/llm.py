"""``LLMManager``: the one integration point, with the API of TORQ Console's manager.

A thin façade: its settings come from `engine.manager.environment` (the config dict,
then ``TORQ_*`` variables, then files), its parts from `engine.manager.build`, its
chains from `ChainSet`; requests run on the
`FallbackExecutor`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Unpack

from engine.core.executor import FallbackExecutor
from engine.core.machine import CompiledChain
from engine.core.runtime import Runtime
from engine.errors import AIResponseError, AITimeoutError, ProviderError
from engine.health import BreakerPolicy, RetryBudgetPolicy
from engine.manager import build
from engine.manager.chainset import ChainSet
from engine.manager.environment import resolve_settings
from engine.manager.options import (
    CallOptions,
    ChatOptions,
    ChatPlan,
    apology,
    chat_result,
    prompt_call,
)
from engine.providers.secrets import register_environment_secrets
from engine.telemetry.events import Sink, Sinks
from engine.types.completion import Completion
from engine.types.meta import ExecutionMode, GenerationMeta, Mode, new_meta
from engine.types.request import ChatRequest, build_request

if TYPE_CHECKING:  # imported on first use: most applications never stream or reload
    from engine.chain.reload import ChainReloader
    from engine.core.streaming import AsyncChatStream, ChatStream

__all__ = ["BUILTIN_PROVIDERS", "LLMManager"]

#: Provider names the engine knows without registration.
BUILTIN_PROVIDERS: Final = ("deepseek", "openai", "claude", "ollama")
_FAILED: Final = (AITimeoutError, ProviderError, AIResponseError)


class LLMManager:
    """Answers prompts through provider fallback chains. Needs no keys or network to build.

    The built-in providers (deepseek, openai, claude, ollama) and those of
    ``providers.yaml`` in the chains directory are HTTP providers reading their keys from
    the environment; close them with `close` / `aclose` or a ``with`` block.

    ``config`` keys (all optional): see `ManagerConfig`.
    ``runtime`` injects clock, sleep and randomness.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, runtime: Runtime | None = None):
        settings = resolve_settings(config)  # raises TypeError / ValueError naming the key
        # The keys an application's own provider objects read are kept out of every message.
        register_environment_secrets(os.environ)
        self.config: dict[str, Any] = dict(config or {})
        self.settings = settings
        self.logger = logging.getLogger(__name__)
        self.chains_dir = settings.chains_dir
        self.provider_settings = settings.providers
        self.fallback_enabled = settings.fallback_enabled
        self.provider_timeout = settings.provider_timeout
        self.default_provider = settings.default_provider
        self.providers: dict[str, Any] = dict(build.build_providers(settings))
        for name, provider in settings.objects.items():
            self.register_provider(name, provider)
        #: The chains this manager runs (and the single-provider ones), reloadable.
        declared = set(settings.config.registered_providers)
        self.chainset = ChainSet(
            settings,
            known=lambda: {
                *BUILTIN_PROVIDERS, *self.providers, *self.provider_settings, *declared,
            },
            registered=lambda name: name in self.providers,
            base=build.shipped_layer(settings.chains_dir),
        )  # fmt: skip
        self.logger.info(
            "chains from %s: %s",
            settings.chains_dir,
            "; ".join(f"{mode} <- {where}" for mode, where in self.chainset.where()),
        )
        self._reloader_: ChainReloader | None = None
        if settings.reload:
            self._reloader.watch()
        #: Provider health (breakers, retry budgets), shared by every call (and process).
        self.health = build.health_config(settings)
        #: The JSONL request log, when config['telemetry'] or TORQ_TELEMETRY_PATH asks.
        self.telemetry = build.build_log(settings)
        # Providers are looked up through get_provider when each attempt starts (callers
        # may replace it), never through a bound method captured now.
        self._executor = FallbackExecutor(
            lambda name: self.get_provider(name),
            runtime,
            None if settings.health_off else self.health,
            Sinks([self.telemetry] if self.telemetry else []),
        )
        self.fallback_executor = self._executor if self.fallback_enabled else None
        #: Active health checks of providers whose breakers are open (engine.health.prober):
        #: on its own thread, started when a breaker opens (at once when health is shared);
        #: with an injected runtime, driven by ``prober.tick()`` instead.
        self.prober = build.prober_for(
            settings,
            self.health,
            lambda: build.probe_targets(
                self.chains.values(), self.providers, self.provider_settings
            ),
            (runtime or Runtime()).wall,
            self._executor.sinks.emit,
            automatic=runtime is None,
        )
        self.logger.info("Provider fallback %s", "enabled" if self.fallback_enabled else "disabled")

    # -- providers, health, telemetry ------------------------------------------------------

    def get_provider(self, name: str) -> Any:
        """The provider registered under ``name``, or None."""
        return self.providers.get(name)

    def register_provider(self, name: str, provider: Any) -> None:
        """Register (or replace) the provider object used for ``name``."""
        self.providers[name] = build.checked_provider(name, provider)

    def health_policies(self, name: str) -> tuple[BreakerPolicy, RetryBudgetPolicy]:
        """A provider's breaker and retry budget policies."""
        return build.policies_of(self.provider_settings, name)

    def add_sink(self, sink: Sink) -> None:
        """Register a telemetry sink (``handle(event)``; see `engine.telemetry.events`)."""
        self._executor.sinks.add(sink)

    def register_validator(self, name: str, check: Callable[[Completion], str | None]) -> None:
        """Register (or replace) a check that chains name in ``accept: validators``:
        ``check(completion)`` returns None when the answer counts, or the reason it does not
        (the attempt is then ``answer_rejected`` and the chain moves on)."""
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"a validator's name is a non-empty str, not {name!r}")
        if not callable(check):
            raise TypeError(f"validator {name!r} must be callable, not {type(check).__name__}")
        self._executor.validators[name] = check

    def enable_opentelemetry(self, tracer_provider: Any = None) -> None:
        """Emit a span per request and per attempt (needs ``opentelemetry-api``)."""
        self.add_sink(build.otel_sink(self.providers, tracer_provider))

    def enable_prometheus(self, registry: Any = None) -> None:
        """Count requests and attempts, time attempts, show breaker states and the request
        log's dropped lines (needs ``prometheus-client``), in ``registry`` or the default."""
        self.add_sink(build.prometheus_sink(registry, self.health.store, lambda: self.telemetry))

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the providers' HTTP clients, the health store's connections and the sinks,
        and wait for the hedged copies still ending (they were cancelled)."""
        self.prober.stop()
        if self._reloader_ is not None:
            self._reloader_.stop()
        build.close_all(
            [*self.providers.values(), self._executor, self.health.store, *self._executor.sinks]
        )

    async def aclose(self) -> None:
        """The async twin of `close` (async clients closed in their own loops)."""
        self.prober.stop()
        if self._reloader_ is not None:
            self._reloader_.stop()
        await build.aclose_all([*self.providers.values(), self.health.store])
        build.close_all([self._executor, *self._executor.sinks])

    def __enter__(self) -> LLMManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LLMManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- chains -----------------------------------------------------------------------------

    @property
    def chains(self) -> dict[str, CompiledChain]:
        """Every compiled chain by name (``default`` and one per mode file)."""
        return self.chainset.chains

    def chain_for(self, mode: ExecutionMode | str) -> CompiledChain:
        """The compiled chain a mode runs (its own file, or ``default``)."""
        return self.chainset.chain_for(mode)

    def chain_for_provider(self, provider: str, mode: ExecutionMode | str) -> CompiledChain:
        """The one-step chain of the single-provider path (see `ChainSet`)."""
        return self.chainset.chain_for_provider(provider, mode)

    @property
    def _reloader(self) -> ChainReloader:
        """Made on first use: most applications never reload."""
        if self._reloader_ is None:
            from engine.chain.reload import ChainReloader

            self._reloader_ = ChainReloader(self.chainset, self.settings.reload_interval)
        return self._reloader_

    def reload(self) -> dict[str, Any]:
        """Read the chains directory again: every valid changed chain replaces the running
        one at once (requests already running finish on theirs), every invalid one keeps
        the previous chain and is reported once, with file:line. Returns
        `chain_status`."""
        self._reloader.reload()
        return self.chain_status()

    def chain_status(self) -> dict[str, Any]:
        """Per chain: the file it came from, when it was loaded, and the last error."""
        return self._reloader.status()

    # -- generation -------------------------------------------------------------------------

    def _chain(self, provider: str | None, mode: Mode, use_fallback: bool) -> Any:
        if provider is not None or not use_fallback or not self.fallback_enabled:
            return self.chainset.chain_for_provider(provider or self.default_provider, mode)
        return self.chainset.chain_for(mode)

    def _prompt_plan(
        self, prompt: Any, provider: Any, mode: Any, tools: Any, timeout: Any, use_fallback: Any
    ) -> tuple[CompiledChain, GenerationMeta, float]:
        name, checked, seconds, meta = prompt_call(
            prompt, provider, mode, tools, timeout, use_fallback
        )
        return self._chain(name, checked, use_fallback), meta, seconds

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
        not sent to any provider; to offer tool definitions to the model, use `chat`.
        """
        chain, meta, seconds = self._prompt_plan(
            prompt, provider, mode, tools, timeout, use_fallback
        )
        try:
            answer: Completion = self._executor.execute(chain, prompt, meta, seconds)
        except _FAILED as error:
            return apology(error), meta
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
        """The async twin of `generate_response`."""
        chain, meta, seconds = self._prompt_plan(
            prompt, provider, mode, tools, timeout, use_fallback
        )
        try:
            answer: Completion = await self._executor.aexecute(chain, prompt, meta, seconds)
        except _FAILED as error:
            return apology(error), meta
        return answer.text, meta

    def _chat_plan(
        self, messages: Any, options: ChatOptions
    ) -> tuple[CompiledChain, ChatRequest, GenerationMeta, float]:
        call = CallOptions.of(options)
        provider, mode, seconds, use_fallback = call.checked()
        chain = self._chain(provider, mode, use_fallback)
        request = build_request(
            messages, call.system, call.tools, call.tool_choice, call.response_format,
            call.tags, call.params,
        )  # fmt: skip
        return chain, request, new_meta(mode, None, dict(request.tags)), seconds

    def chat_plan(self, messages: Any, **options: Unpack[ChatOptions]) -> ChatPlan:
        """What `chat` would run, checked, without running it: for code that runs the chain
        itself on `executor` and wants its failures raised (``ChainExhaustedError``,
        ``ChainAbortedError``), not answered with an apology (the gateway does)."""
        return ChatPlan(*self._chat_plan(messages, options))

    @property
    def executor(self) -> FallbackExecutor:
        """The executor every call of this manager runs on."""
        return self._executor

    def chat(
        self, messages: Any, **options: Unpack[ChatOptions]
    ) -> tuple[Completion, GenerationMeta]:
        """Answer a conversation; return ``(completion, meta)``.

        ``messages``: `Message` objects or OpenAI-style dicts.
        Options (`ChatOptions`): ``system``, ``mode``,
        ``provider``, ``tools`` (OpenAI-shaped definitions), ``timeout``, ``use_fallback``,
        ``tool_choice``, ``response_format``, ``tags``, and ``temperature``, ``max_tokens``,
        ``top_p``, ``stop``. When every provider fails, the completion is the friendly
        error with ``finish_reason`` ``"error"``, and ``meta.error`` is set.
        """
        chain, request, meta, seconds = self._chat_plan(messages, options)
        try:
            answer = self._executor.execute(chain, request, meta, seconds)
        except _FAILED as error:
            return chat_result(None, error, meta)
        return chat_result(answer, None, meta)

    async def achat(
        self, messages: Any, **options: Unpack[ChatOptions]
    ) -> tuple[Completion, GenerationMeta]:
        """The async twin of `chat`, with the same options."""
        chain, request, meta, seconds = self._chat_plan(messages, options)
        try:
            answer = await self._executor.aexecute(chain, request, meta, seconds)
        except _FAILED as error:
            return chat_result(None, error, meta)
        return chat_result(answer, None, meta)

    def stream(self, messages: Any, **options: Unpack[ChatOptions]) -> ChatStream:
        """Stream the answer to a conversation: takes what `chat` takes and returns a
        `ChatStream` of text, tool-call and reasoning deltas.

        Before the first chunk reaches the caller, failures fall back along the chain as in
        `chat`; after it, the chain's ``on_midstream`` decides (``fail``: a
        `StreamInterruptedError` with the partial text; ``restart``:
        a `Reset` event, then the next step's answer). The
        stream's ``meta`` fills in as it goes; ``completion`` is the whole answer at the end.
        """
        from engine.core.streaming import ChatStream

        return ChatStream(self._executor, *self._chat_plan(messages, options))

    def astream(self, messages: Any, **options: Unpack[ChatOptions]) -> AsyncChatStream:
        """The async twin of `stream`: ``async for event in manager.astream(...)``."""
        from engine.core.streaming import AsyncChatStream

        return AsyncChatStream(self._executor, *self._chat_plan(messages, options))
