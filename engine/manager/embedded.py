"""``ProviderFallbackExecutor``: the engine inside a host's own ``LLMManager``.

The seed guide's Step 1 puts the executor in the host's manager::

    from engine import ProviderChainConfig, ProviderFallbackExecutor

    self.fallback_executor = ProviderFallbackExecutor(self, ProviderChainConfig(...))

It looks each attempt's provider up through the host's ``get_provider(name)`` (once per
attempt, when it starts), calls the host's provider objects, reads every failure they raise
as the engine reads its own (`classify_exception`: the host's
``error_category``/``code``, an SDK's or HTTP client's reply or transport fault), fills the
host's own ``meta`` object in place, and raises what the host catches.

Sync or async: `ProviderFallbackExecutor.generate_with_fallback` is awaited by a host
whose manager is ``async`` and called plainly by the seed guide's synchronous manager and
tests. It decides by its caller: called from an ``async def`` it returns an awaitable (the
async shell: awaited I/O, async providers awaited in the running loop); called from plain
code it runs the request and returns the text (the sync shell; async providers run to
completion on a loop of their own). `agenerate_with_fallback`
and `generate_with_fallback_sync` say which explicitly
(``asyncio.run(executor.agenerate_with_fallback(...))``, a wrapper between the caller and
the executor).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, NoReturn

from engine.chain.loader import chain_from_data
from engine.core.executor import FallbackExecutor
from engine.core.machine import CompiledChain
from engine.core.runtime import Runtime
from engine.errors import ChainAbortedError, ChainExhaustedError
from engine.manager import build
from engine.manager.chainset import ChainSet
from engine.manager.config import check_mode, check_timeout
from engine.manager.environment import resolve_settings
from engine.manager.raised import RaisedClasses, raised_classes
from engine.manager.seed import CHAIN_FIELDS, RATE_LIMIT_DELAY_MS, ProviderChainConfig
from engine.providers.secrets import register_environment_secrets
from engine.telemetry.events import Sink, Sinks
from engine.types.meta import ExecutionMode, GenerationMeta, new_meta

if TYPE_CHECKING:
    from engine.chain.reload import ChainReloader

__all__ = ["META_FIELDS", "ProviderFallbackExecutor"]

_ASYNC_CODE: Final = (
    inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
)
#: Seconds per attempt of a chain built from a list when nothing else says: each call's
#: ``timeout`` caps its attempts, so this is only a ceiling.
_LIST_STEP_TIMEOUT: Final = 600.0
#: The whole-call bound of a chain built from a list: a backstop (attempts are bounded).
_LIST_DEADLINE: Final = 3600.0
#: The metadata fields copied onto the caller's own ``meta`` (the contract's), in order.
META_FIELDS: Final = (
    "provider", "model", "latency_ms", "tokens_in", "tokens_out", "tokens_total",
    "cost_usd_est", "provider_attempts", "fallback_used", "fallback_reason", "error",
    "error_category",
)  # fmt: skip
#: Set only where the caller's ``meta`` has them (the engine's own extras).
_EXTRA_FIELDS: Final = ("duration_ms", "truncated")


def _fill(meta: Any, ours: GenerationMeta) -> None:
    """Copy what the request came to onto the caller's ``meta``, whatever its class."""
    if meta is None or meta is ours:
        return
    for name in META_FIELDS:
        try:
            setattr(meta, name, getattr(ours, name))
        except (AttributeError, TypeError):  # a slotted or frozen record: what it can hold
            continue
    for name in _EXTRA_FIELDS:
        if hasattr(meta, name):
            try:
                setattr(meta, name, getattr(ours, name))
            except (AttributeError, TypeError):
                continue


def _attach(exc: BaseException, attempts: list[dict[str, Any]]) -> BaseException:
    # An exception that takes no attributes keeps none.
    with contextlib.suppress(AttributeError, TypeError):
        exc.attempts = attempts  # type: ignore[attr-defined]
    return exc


class ProviderFallbackExecutor:
    """The seed guide's executor, embedded in a host's manager (see the module docstring).

    ``llm_manager`` is anything with ``get_provider(name)``; ``chain_config`` the provider
    order of each mode (`ProviderChainConfig`), used for the
    modes the chains directory (``config['chains_dir']`` or ``TORQ_CHAINS_DIR``, when one is
    named) has no file for. ``config`` takes `LLMManager`'s keys (health,
    telemetry, reload, providers.yaml's policies, ``chains``), and the ``TORQ_*`` variables
    are read as it reads them. ``error_classes`` names the host's own exception classes
    (a mapping by ``error_category``, or a module holding ``ProviderError``,
    ``AIResponseError`` and ``AITimeoutError``): every failure is then raised as one of
    them. ``runtime`` injects clock, sleep and randomness.
    """

    def __init__(
        self,
        llm_manager: Any,
        chain_config: ProviderChainConfig | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        error_classes: Any = None,
        runtime: Runtime | None = None,
    ) -> None:
        if not callable(getattr(llm_manager, "get_provider", None)):
            raise TypeError(
                "ProviderFallbackExecutor needs a manager with get_provider(name); "
                f"got {type(llm_manager).__name__}"
            )
        chains = ProviderChainConfig() if chain_config is None else chain_config
        if not callable(getattr(chains, "get_chain_for_mode", None)):
            raise TypeError(
                "chain_config must be a ProviderChainConfig (with get_chain_for_mode), "
                f"not {type(chains).__name__}"
            )
        self.llm_manager = llm_manager
        self.chain_config = chains
        self.logger = logging.getLogger(__name__)
        register_environment_secrets(os.environ)
        settings = resolve_settings(config)  # raises naming the key or variable at fault
        self.settings = settings
        self.fallback_enabled = settings.fallback_enabled
        #: The classes failures are raised as (the engine's, or the host's).
        self.raises: RaisedClasses = raised_classes(error_classes, llm_manager)
        #: The chains this executor runs: the directory's files over the lists, reloadable.
        self.chainset = ChainSet(
            settings,
            known=None,  # the host registers its providers: any name may be asked for
            registered=lambda name: True,
            base=self._list_chains(),
            read_files=settings.chains_dir_given,
        )
        self._reloader_: ChainReloader | None = None
        if settings.reload and settings.chains_dir_given:
            self._reloader.watch()
        #: Provider health (breakers, retry budgets, quotas), shared by every call.
        self.health = build.health_config(settings)
        #: The JSONL request log, when config['telemetry'] or TORQ_TELEMETRY_PATH asks.
        self.telemetry = build.build_log(settings)
        # The host's get_provider is called once per attempt, as the attempt starts.
        self._executor = FallbackExecutor(
            lambda name: self.llm_manager.get_provider(name),
            runtime,
            None if settings.health_off else self.health,
            Sinks([self.telemetry] if self.telemetry else []),
        )
        files = sorted(self.chainset.file_chains)
        self.logger.info(
            "Provider fallback %s; chains: %s",
            "enabled" if self.fallback_enabled else "disabled (the first provider only)",
            ", ".join(f"{n} ({'file' if n in files else 'ProviderChainConfig'})"
                      for n in sorted(self.chainset.chains)),
        )  # fmt: skip

    def _list_chains(self) -> dict[str, Any]:
        """The chains of ``chain_config``'s lists, validated like files."""
        built = {}
        for mode, name in CHAIN_FIELDS.items():
            entries = self.chain_config.get_chain_for_mode(mode)
            if isinstance(entries, str | bytes) or not isinstance(entries, list | tuple):
                raise TypeError(
                    f"ProviderChainConfig.{name} must be a list of provider names or steps, "
                    f"not {type(entries).__name__}"
                )
            steps = [dict(e) if isinstance(e, Mapping) else e for e in entries]
            data = {
                "description": f"{mode}: ProviderChainConfig.{name}",
                "deadline": _LIST_DEADLINE,
                "rate_limit_pause": RATE_LIMIT_DELAY_MS / 1000,
                "defaults": {"timeout": _LIST_STEP_TIMEOUT},
                "steps": steps,
            }
            built[mode] = chain_from_data(mode, data, source=f"ProviderChainConfig.{name}")
        return built

    # -- chains, health, telemetry, lifecycle -------------------------------------------------

    @property
    def chains(self) -> dict[str, CompiledChain]:
        """Every compiled chain by name (the modes' and ``default``)."""
        return self.chainset.chains

    def chain_for(self, mode: ExecutionMode | str) -> CompiledChain:
        """The compiled chain a mode runs (one step only when fallback is disabled)."""
        checked = check_mode(mode.value if isinstance(mode, Enum) else mode)
        compiled = self.chainset.chain_for(checked)
        if self.fallback_enabled:
            return compiled
        return self.chainset.chain_for_provider(compiled.chain.steps[0].provider, checked)

    def should_retry(self, error_category: Any) -> bool:
        """Whether a failure of this ``error_category`` moves on to the next provider by
        default (TORQ Console's rule: everything but ``ai_error``)."""
        value = error_category.value if isinstance(error_category, Enum) else error_category
        return value in ("timeout", "provider_error", "exception")

    def add_sink(self, sink: Sink) -> None:
        """Register a telemetry sink (``handle(event)``; see `engine.telemetry.events`)."""
        self._executor.sinks.add(sink)

    @property
    def _reloader(self) -> ChainReloader:
        if self._reloader_ is None:
            from engine.chain.reload import ChainReloader

            self._reloader_ = ChainReloader(self.chainset, self.settings.reload_interval)
        return self._reloader_

    def reload(self) -> dict[str, Any]:
        """Read the chains directory again (as `engine.LLMManager.reload`)."""
        if self.settings.chains_dir_given:
            self._reloader.reload()
            return self._reloader.status()
        return {}

    def close(self) -> None:
        """Stop watching the chains, close the health store's connections and the sinks."""
        if self._reloader_ is not None:
            self._reloader_.stop()
        build.close_all([self._executor, self.health.store, *self._executor.sinks])

    async def aclose(self) -> None:
        """The async twin of `close`."""
        if self._reloader_ is not None:
            self._reloader_.stop()
        await build.aclose_all([self.health.store])
        build.close_all([self._executor, *self._executor.sinks])

    def __enter__(self) -> ProviderFallbackExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generation ---------------------------------------------------------------------------

    def _plan(
        self, prompt: Any, mode: Any, tools: Any, timeout: Any
    ) -> tuple[CompiledChain, GenerationMeta, float]:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        checked = check_mode(mode.value if isinstance(mode, Enum) else mode)
        seconds = check_timeout(timeout)
        if tools is not None and (
            not isinstance(tools, list | tuple) or not all(isinstance(t, str) for t in tools)
        ):
            raise TypeError("tools must be a list of tool names (str) or None")
        return self.chain_for(checked), new_meta(checked, list(tools or ())), seconds

    def generate_with_fallback(
        self,
        prompt: str,
        mode: Any = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        meta: Any = None,
        timeout: float = 60,
    ) -> Any:
        """Answer ``prompt`` through the mode's chain; return the text, filling ``meta``
        (the caller's own record, of any class) in place.

        Awaitable when called from an ``async def``, the text itself when called from plain
        code (see the module docstring). ``timeout`` is each provider attempt's limit in
        seconds, as in the seed's executor. A policy block or an invalid request stops the
        chain and re-raises the provider's own exception (``.attempts`` attached); when
        every provider fails, a ``ProviderError`` says ``All providers in chain failed.
        Last error: ...``.
        """
        caller = sys._getframe(1)
        if caller.f_code.co_flags & _ASYNC_CODE:
            return self.agenerate_with_fallback(prompt, mode, tools, meta, timeout)
        return self.generate_with_fallback_sync(prompt, mode, tools, meta, timeout)

    def generate_with_fallback_sync(
        self,
        prompt: str,
        mode: Any = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        meta: Any = None,
        timeout: float = 60,
    ) -> str:
        """`generate_with_fallback`, always run synchronously."""
        compiled, ours, seconds = self._plan(prompt, mode, tools, timeout)
        try:
            answer = self._executor.execute(
                compiled, prompt, ours, compiled.chain.deadline, per_attempt=seconds
            )
        except (ChainExhaustedError, ChainAbortedError) as error:
            _fill(meta, ours)
            self._raise(error)
        _fill(meta, ours)
        return answer.text

    async def agenerate_with_fallback(
        self,
        prompt: str,
        mode: Any = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        meta: Any = None,
        timeout: float = 60,
    ) -> str:
        """`generate_with_fallback`, always awaited (the async shell)."""
        compiled, ours, seconds = self._plan(prompt, mode, tools, timeout)
        try:
            answer = await self._executor.aexecute(
                compiled, prompt, ours, compiled.chain.deadline, per_attempt=seconds
            )
        except (ChainExhaustedError, ChainAbortedError) as error:
            _fill(meta, ours)
            self._raise(error)
        _fill(meta, ours)
        return answer.text

    def _raise(self, error: ChainExhaustedError | ChainAbortedError) -> NoReturn:
        """Raise what the host catches for a chain that failed (`engine.manager.raised`)."""
        attempts = error.attempts
        cause = error.__cause__
        raises = self.raises.with_seen([cause] if cause is not None else [])
        if isinstance(error, ChainAbortedError):
            own = cause
            if own is not None and raises.owns(own):
                raise _attach(own, attempts)  # the provider's own exception, history attached
            raise raises.make("ai_error", str(error), error.code, own or error, attempts)
        last = attempts[-1]
        if error.code == "deadline_exceeded":
            detail = str(error)
        else:
            detail = str(last.get("message") or "") or (
                f"{last['error_category']}:{last['error_code']}"
                if last.get("error_code")
                else str(last.get("error_category"))
            )
        timed_out = error.code == "deadline_exceeded" or all(
            a["error_category"] == "timeout" for a in attempts if a["status"] == "failed"
        )
        message = f"All providers in chain failed. Last error: {detail}"
        category = "timeout" if timed_out else "provider_error"
        raise raises.make(category, message, error.code, cause, attempts)
