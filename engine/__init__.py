"""torq-fallback: declarative LLM provider fallback.

Chains of providers are written in YAML, compiled into ``transitions`` state machines and run
by one executor; every call returns the answer and a :class:`GenerationMeta` with the full
attempt history. The integration point is :class:`LLMManager`.
"""

from importlib.metadata import PackageNotFoundError, version

from .classify import TAXONOMY, Completion, Outcome, Rule
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
from .runtime import Runtime
from .spec import Chain, ChainSpec, Step, chain_json_schema

try:
    __version__ = version("torq-fallback")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "BUILTIN_PROVIDERS",
    "TAXONOMY",
    "AIResponseError",
    "AITimeoutError",
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
    "LLMManager",
    "Outcome",
    "Problem",
    "ProviderError",
    "Rule",
    "Runtime",
    "Step",
    "TorqError",
    "__version__",
    "chain_json_schema",
    "check_file",
    "compile_chain",
    "load_chain",
    "load_chains",
    "resolve_chains_dir",
]
