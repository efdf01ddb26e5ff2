"""The host's ``LLMManager``, async as TORQ Console's is, and the seed guide's synchronous
one. The engine comes in through one import line (below); the rest is the host's own."""

from __future__ import annotations

import os
import time
from typing import Any

from engine import ProviderChainConfig, ProviderFallbackExecutor  # the one line that changed

from .errors import AIResponseError, AITimeoutError, ProviderError
from .generation_meta import ExecutionMode, GenerationMeta


def _chain_config() -> ProviderChainConfig:
    return ProviderChainConfig(
        direct_chain=os.getenv("TORQ_DIRECT_CHAIN", "deepseek,claude,ollama").split(","),
        research_chain=os.getenv("TORQ_RESEARCH_CHAIN", "claude,deepseek,ollama").split(","),
        code_generation_chain=os.getenv("TORQ_CODE_CHAIN", "claude,deepseek").split(","),
    )


def _reason(meta: GenerationMeta) -> None:
    if meta.fallback_used and meta.provider_attempts:
        first = meta.provider_attempts[0]
        category, code = first.get("error_category"), first.get("error_code")
        if category and code:
            meta.fallback_reason = f"{category}:{code}"
        elif category:
            meta.fallback_reason = category


def _failed(meta: GenerationMeta, error: Exception) -> tuple[str, GenerationMeta]:
    meta.error = str(error)
    meta.error_category = getattr(error, "error_category", "exception")
    _reason(meta)
    return _apology(error), meta


def _apology(error: Exception) -> str:
    if isinstance(error, AITimeoutError):
        return "I apologize, but your request timed out. Please try again."
    if isinstance(error, ProviderError):
        return f"I apologize, but the AI service is currently unavailable: {error}."
    return f"I apologize, but I encountered an error: {error}."


class LLMManager:
    """The host's manager: providers by name, fallback through the executor, async."""

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        providers: dict[str, Any] | None = None,
        runtime: Any = None,  # the tests' clock (the host passes nothing)
    ) -> None:
        self.config = config or {}
        self.providers: dict[str, Any] = dict(providers or {})
        self.default_provider = "claude"
        self.fallback_enabled = os.getenv("TORQ_FALLBACK_ENABLED", "true").lower() == "true"
        self.fallback_executor = (
            ProviderFallbackExecutor(self, _chain_config(), runtime=runtime)
            if self.fallback_enabled
            else None
        )

    def get_provider(self, name: str) -> Any:
        return self.providers.get(name)

    async def generate_response(
        self,
        prompt: str,
        provider: str | None = None,
        mode: ExecutionMode = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        timeout: int = 60,
        use_fallback: bool = True,
    ) -> tuple[str, GenerationMeta]:
        meta = GenerationMeta(mode=mode, tools_used=tools or [])
        if provider is not None or not use_fallback or self.fallback_executor is None:
            return await self._single(prompt, provider or self.default_provider, meta, timeout)
        try:
            text = await self.fallback_executor.generate_with_fallback(
                prompt=prompt, mode=mode, tools=tools or [], meta=meta, timeout=timeout
            )
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return _failed(meta, error)
        _reason(meta)
        return text, meta

    async def _single(
        self, prompt: str, name: str, meta: GenerationMeta, timeout: int
    ) -> tuple[str, GenerationMeta]:
        found = self.get_provider(name)
        if found is None:
            raise ProviderError(f"Provider '{name}' not found")
        started = time.time()
        text = await found.generate_response(prompt=prompt, timeout=timeout)
        meta.provider, meta.model = name, getattr(found, "model", "unknown")
        meta.latency_ms = int((time.time() - started) * 1000)
        meta.provider_attempts = [{"provider": name, "status": "success"}]
        return text, meta


class SyncLLMManager(LLMManager):
    """The seed guide's manager: ``generate_response`` is synchronous."""

    def generate_response(  # type: ignore[override]
        self,
        prompt: str,
        provider: str | None = None,
        mode: ExecutionMode = ExecutionMode.DIRECT,
        tools: list[str] | None = None,
        timeout: int = 60,
        use_fallback: bool = True,
    ) -> tuple[str, GenerationMeta]:
        import asyncio

        meta = GenerationMeta(mode=mode, tools_used=tools or [])
        if provider is not None or not use_fallback or self.fallback_executor is None:
            return asyncio.run(
                self._single(prompt, provider or self.default_provider, meta, timeout)
            )
        try:
            text = self.fallback_executor.generate_with_fallback(
                prompt=prompt, mode=mode, tools=tools or [], meta=meta, timeout=timeout
            )
        except (AITimeoutError, ProviderError, AIResponseError) as error:
            return _failed(meta, error)
        _reason(meta)
        return text, meta
