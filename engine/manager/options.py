"""What one call of `LLMManager` asks, checked once: the options that
``chat``, ``achat``, ``stream`` and ``astream`` share, and the friendly texts a failed call
answers with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from engine.core.machine import CompiledChain
from engine.errors import AITimeoutError, ChainAbortedError, ProviderError
from engine.manager.config import check_mode, check_provider, check_timeout, check_use_fallback
from engine.types.completion import Completion
from engine.types.meta import ExecutionMode, GenerationMeta, Mode, new_meta
from engine.types.request import ChatRequest

__all__ = ["CallOptions", "ChatOptions", "ChatPlan", "apology", "chat_result", "prompt_call"]


class ChatOptions(TypedDict, total=False):
    """The keyword options of ``chat``, ``achat``, ``stream`` and ``astream`` (declared
    once, here). The sampling parameters go to the provider; the rest steer the call."""

    system: str | None
    mode: ExecutionMode | str
    provider: str | None
    tools: Any
    timeout: float
    use_fallback: bool
    tool_choice: Any
    response_format: Any
    tags: Mapping[str, str] | None
    temperature: float
    max_tokens: int
    top_p: float
    stop: str | Sequence[str]
    seed: int


_STEERING = frozenset(
    {"system", "mode", "provider", "tools", "timeout", "use_fallback", "tool_choice",
     "response_format", "tags"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """A chat call, checked and ready to run: the chain, the request, the metadata record
    it fills, and the seconds it may take (`LLMManager.chat_plan`)."""

    chain: CompiledChain
    request: ChatRequest
    meta: GenerationMeta
    seconds: float


@dataclass(frozen=True)
class CallOptions:
    """A chat call's options besides its messages (see `LLMManager.chat`)."""

    system: str | None = None
    mode: ExecutionMode | str = ExecutionMode.DIRECT
    provider: str | None = None
    tools: Any = None
    timeout: float = 60
    use_fallback: bool = True
    tool_choice: Any = None
    response_format: Any = None
    tags: Mapping[str, str] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> CallOptions:
        """A call's keyword options: the steering ones by name, the rest as parameters
        (checked by name later: an unknown one is a ``TypeError`` naming it)."""
        steering = {k: v for k, v in options.items() if k in _STEERING}
        params = {k: v for k, v in options.items() if k not in _STEERING}
        return cls(**steering, params=params)

    def checked(self) -> tuple[str | None, Mode, float, bool]:
        """(provider, mode, seconds, use_fallback), each checked where it entered."""
        provider = check_provider(self.provider)
        mode = check_mode(self.mode)
        seconds = check_timeout(self.timeout)
        return provider, mode, seconds, check_use_fallback(self.use_fallback)


def apology(error: Exception) -> str:
    """What a failed call answers: the user-facing texts of TORQ Console."""
    if isinstance(error, AITimeoutError):
        return "I apologize, but your request timed out. Please try a simpler query or try again."
    if isinstance(error, ProviderError):
        return (
            f"I apologize, but the AI service is currently unavailable: {error}. Please try again."
        )
    if isinstance(error, ChainAbortedError):  # trying again would be refused again
        return f"I apologize, but I encountered an error: {error}."
    return f"I apologize, but I encountered an error: {error}. Please try again."


def chat_result(
    answer: Completion | None, error: Exception | None, meta: GenerationMeta
) -> tuple[Completion, GenerationMeta]:
    """What a chat call returns: the answer (its tools noted in ``meta.tools_used``), or
    the apology as a completion whose ``finish_reason`` is ``"error"``."""
    if answer is None:
        assert error is not None
        return Completion(apology(error), finish_reason="error"), meta
    meta.tools_used = [call.name for call in answer.tool_calls]
    return answer, meta


def prompt_call(
    prompt: Any, provider: Any, mode: Any, tools: Any, timeout: Any, use_fallback: Any
) -> tuple[str | None, Mode, float, GenerationMeta]:
    """A ``generate_response`` call's arguments, checked: (provider, mode, seconds, meta).
    ``tools`` is the seed's list of tool names, recorded in the metadata."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    # Checked directly, not through a CallOptions: this is every generate_response call.
    name, checked, seconds = check_provider(provider), check_mode(mode), check_timeout(timeout)
    check_use_fallback(use_fallback)
    if tools is not None and (
        not isinstance(tools, list | tuple) or not all(isinstance(t, str) for t in tools)
    ):
        raise TypeError("tools must be a list of tool names (str) or None")
    return name, checked, seconds, new_meta(checked, list(tools) if tools else [])
