"""The façade: `LLMManager`, the seed guide's integration surface, and what it is
assembled from (configuration, the provider and sink builder, the chain set)."""

from engine.manager.llm import BUILTIN_PROVIDERS, LLMManager

__all__ = ["BUILTIN_PROVIDERS", "LLMManager"]
