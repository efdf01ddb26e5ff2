"""torq-fallback: declarative LLM provider fallback.

Chains of providers are written in YAML, compiled into ``transitions`` state machines and run
by one executor; every call returns the answer and a `GenerationMeta` with the full
attempt history. The integration point is `LLMManager`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from engine.errors import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainConfigError,
    ChainExhaustedError,
    Problem,
    ProviderError,
    StreamInterruptedError,
    TorqError,
)

if TYPE_CHECKING:
    from engine.chain.loader import chain_from_data, check_file, load_chain, load_chains
    from engine.chain.schema import chain_json_schema
    from engine.chain.spec import Chain, ChainSpec, Step
    from engine.core.executor import FallbackExecutor
    from engine.core.machine import CompiledChain, compile_chain
    from engine.core.runtime import Runtime
    from engine.core.streaming import AsyncChatStream, ChatStream, Reset, StreamEvent
    from engine.manager.embedded import ProviderFallbackExecutor
    from engine.manager.environment import resolve_chains_dir
    from engine.manager.llm import BUILTIN_PROVIDERS, LLMManager
    from engine.manager.seed import (
        RATE_LIMIT_DELAY_MS,
        AttemptStatus,
        ErrorCategory,
        ProviderAttempt,
        ProviderChainConfig,
    )
    from engine.providers.http import HTTPProvider
    from engine.providers.settings import BUILTIN_SETTINGS, ProviderSettings
    from engine.tools.diagrams import (
        Highlight,
        dot_source,
        highlight_from_attempts,
        mermaid_source,
        render,
    )
    from engine.tools.simulator import Behaviour, Script, Simulator
    from engine.types.completion import Completion
    from engine.types.deltas import ReasoningDelta, TextDelta, ToolCallDelta
    from engine.types.meta import ExecutionMode, GenerationMeta
    from engine.types.outcomes import TAXONOMY, Outcome, Rule
    from engine.types.request import ChatRequest, Message, Tool, ToolCall

    __version__: str

# Every public name but the errors is imported on first use (PEP 562): `import engine`, or a
# submodule such as engine.errors, stays light, and a program pays only for what it touches
# (the manager loads chains and providers; diagrams load Graphviz; the simulator a server).
_LAZY = {
    "chain_from_data": "engine.chain.loader",
    "check_file": "engine.chain.loader",
    "load_chain": "engine.chain.loader",
    "load_chains": "engine.chain.loader",
    "chain_json_schema": "engine.chain.schema",
    "Chain": "engine.chain.spec",
    "ChainSpec": "engine.chain.spec",
    "Step": "engine.chain.spec",
    "FallbackExecutor": "engine.core.executor",
    "CompiledChain": "engine.core.machine",
    "compile_chain": "engine.core.machine",
    "Runtime": "engine.core.runtime",
    "resolve_chains_dir": "engine.manager.environment",
    "ProviderFallbackExecutor": "engine.manager.embedded",
    "RATE_LIMIT_DELAY_MS": "engine.manager.seed",
    "AttemptStatus": "engine.manager.seed",
    "ErrorCategory": "engine.manager.seed",
    "ProviderAttempt": "engine.manager.seed",
    "ProviderChainConfig": "engine.manager.seed",
    "BUILTIN_PROVIDERS": "engine.manager.llm",
    "LLMManager": "engine.manager.llm",
    "HTTPProvider": "engine.providers.http",
    "BUILTIN_SETTINGS": "engine.providers.settings",
    "ProviderSettings": "engine.providers.settings",
    "Completion": "engine.types.completion",
    "ReasoningDelta": "engine.types.deltas",
    "TextDelta": "engine.types.deltas",
    "ToolCallDelta": "engine.types.deltas",
    "ExecutionMode": "engine.types.meta",
    "GenerationMeta": "engine.types.meta",
    "TAXONOMY": "engine.types.outcomes",
    "Outcome": "engine.types.outcomes",
    "Rule": "engine.types.outcomes",
    "ChatRequest": "engine.types.request",
    "Message": "engine.types.request",
    "Tool": "engine.types.request",
    "ToolCall": "engine.types.request",
    "Highlight": "engine.tools.diagrams",
    "dot_source": "engine.tools.diagrams",
    "highlight_from_attempts": "engine.tools.diagrams",
    "mermaid_source": "engine.tools.diagrams",
    "render": "engine.tools.diagrams",
    "Behaviour": "engine.tools.simulator",
    "Script": "engine.tools.simulator",
    "Simulator": "engine.tools.simulator",
    "AsyncChatStream": "engine.core.streaming",
    "ChatStream": "engine.core.streaming",
    "Reset": "engine.core.streaming",
    "StreamEvent": "engine.core.streaming",
    # the gateway (its server needs the serve extra; the app itself does not)
    "create_app": "engine.gateway",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("torq-fallback")
        except PackageNotFoundError:  # a source tree that was never installed
            found = "0.0.0+unknown"
        globals()["__version__"] = found
        return found
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BUILTIN_PROVIDERS",
    "BUILTIN_SETTINGS",
    "RATE_LIMIT_DELAY_MS",
    "TAXONOMY",
    "AIResponseError",
    "AITimeoutError",
    "AsyncChatStream",
    "AttemptStatus",
    "Behaviour",
    "Chain",
    "ChainAbortedError",
    "ChainConfigError",
    "ChainExhaustedError",
    "ChainSpec",
    "ChatRequest",
    "ChatStream",
    "CompiledChain",
    "Completion",
    "ErrorCategory",
    "ExecutionMode",
    "FallbackExecutor",
    "GenerationMeta",
    "HTTPProvider",
    "Highlight",
    "LLMManager",
    "Message",
    "Outcome",
    "Problem",
    "ProviderAttempt",
    "ProviderChainConfig",
    "ProviderError",
    "ProviderFallbackExecutor",
    "ProviderSettings",
    "ReasoningDelta",
    "Reset",
    "Rule",
    "Runtime",
    "Script",
    "Simulator",
    "Step",
    "StreamEvent",
    "StreamInterruptedError",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "TorqError",
    "__version__",
    "chain_from_data",
    "chain_json_schema",
    "check_file",
    "compile_chain",
    "create_app",
    "dot_source",
    "highlight_from_attempts",
    "load_chain",
    "load_chains",
    "mermaid_source",
    "render",
    "resolve_chains_dir",
]
