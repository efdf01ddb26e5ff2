"""torq-fallback: declarative LLM provider fallback.

Chains of providers are written in YAML, compiled into ``transitions`` state machines and run
by one executor; every call returns the answer and a :class:`GenerationMeta` with the full
attempt history. The integration point is :class:`LLMManager`.
"""

from importlib.metadata import PackageNotFoundError, version

from .classify import TAXONOMY, Completion, Outcome, Rule
from .diagrams import Highlight, dot_source, highlight_from_attempts, mermaid_source, render
from .errors import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainConfigError,
    ChainExhaustedError,
    Problem,
    ProviderError,
    TorqError,
)
from .executor import FallbackExecutor
from .loader import check_file, load_chain, load_chains, resolve_chains_dir
from .machine import CompiledChain, compile_chain
from .manager import BUILTIN_PROVIDERS, LLMManager
from .meta import ExecutionMode, GenerationMeta
from .providers.http import HTTPProvider
from .providers.settings import BUILTIN_SETTINGS, ProviderSettings
from .runtime import Runtime
from .simulator import Behaviour, Script, Simulator
from .spec import Chain, ChainSpec, Step, chain_json_schema

try:
    __version__ = version("torq-fallback")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BUILTIN_PROVIDERS",
    "BUILTIN_SETTINGS",
    "TAXONOMY",
    "AIResponseError",
    "AITimeoutError",
    "Behaviour",
    "Chain",
    "ChainAbortedError",
    "ChainConfigError",
    "ChainExhaustedError",
    "ChainSpec",
    "CompiledChain",
    "Completion",
    "ExecutionMode",
    "FallbackExecutor",
    "GenerationMeta",
    "HTTPProvider",
    "Highlight",
    "LLMManager",
    "Outcome",
    "Problem",
    "ProviderError",
    "ProviderSettings",
    "Rule",
    "Runtime",
    "Script",
    "Simulator",
    "Step",
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
