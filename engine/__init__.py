"""torq-fallback: declarative LLM provider fallback.

Chains of providers are written in YAML, compiled into ``transitions`` state machines and run
by one executor; every call returns the answer and a :class:`GenerationMeta` with the full
attempt history. The integration point is :class:`LLMManager`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .classify import TAXONOMY, Completion, Outcome, Rule
from .errors import (
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
from .executor import FallbackExecutor
from .loader import check_file, load_chain, load_chains, resolve_chains_dir
from .machine import CompiledChain, compile_chain
from .manager import BUILTIN_PROVIDERS, LLMManager
from .meta import ExecutionMode, GenerationMeta
from .providers.http import HTTPProvider
from .providers.settings import BUILTIN_SETTINGS, ProviderSettings
from .request import ChatRequest, Message, Tool, ToolCall
from .runtime import Runtime
from .spec import Chain, ChainSpec, Step, chain_json_schema

if TYPE_CHECKING:
    from .diagrams import Highlight, dot_source, highlight_from_attempts, mermaid_source, render
    from .simulator import Behaviour, Script, Simulator
    from .streaming import (
        AsyncChatStream,
        ChatStream,
        Reset,
        StreamEvent,
        TextDelta,
        ToolCallDelta,
    )

    __version__: str

# Names whose modules a request never needs (diagrams load Graphviz and transitions'
# extensions; the simulator a server): imported on first use, so `import engine` stays light.
_LAZY = {
    "Highlight": "diagrams",
    "dot_source": "diagrams",
    "highlight_from_attempts": "diagrams",
    "mermaid_source": "diagrams",
    "render": "diagrams",
    "Behaviour": "simulator",
    "Script": "simulator",
    "Simulator": "simulator",
    "AsyncChatStream": "streaming",
    "ChatStream": "streaming",
    "Reset": "streaming",
    "StreamEvent": "streaming",
    "TextDelta": "streaming",
    "ToolCallDelta": "streaming",
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
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BUILTIN_PROVIDERS",
    "BUILTIN_SETTINGS",
    "TAXONOMY",
    "AIResponseError",
    "AITimeoutError",
    "AsyncChatStream",
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
    "ExecutionMode",
    "FallbackExecutor",
    "GenerationMeta",
    "HTTPProvider",
    "Highlight",
    "LLMManager",
    "Message",
    "Outcome",
    "Problem",
    "ProviderError",
    "ProviderSettings",
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
    "chain_json_schema",
    "check_file",
    "compile_chain",
    "dot_source",
    "highlight_from_attempts",
    "load_chain",
    "load_chains",
    "mermaid_source",
    "render",
    "resolve_chains_dir",
]
