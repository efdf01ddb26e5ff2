"""What every wire's replies are read with, whole or streamed alike: message content as text or
parts, shown reasoning, token usage, finish reasons, and the checks every reading ends with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from engine.errors import AIResponseError, ProviderError
from engine.types.completion import Completion

__all__ = [
    "Usage",
    "anthropic_finish",
    "anthropic_usage",
    "content_parts",
    "ollama_finish",
    "openai_usage",
    "reasoning_of",
    "settle",
]


def _malformed(wire: str, what: str) -> ProviderError:
    return ProviderError(f"{wire} reply is missing {what}", code="malformed_response")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def content_parts(content: Any, wire: str) -> tuple[str, str]:
    """(answer text, reasoning text) of a message's ``content``: a string, or an array of
    parts (Mistral's ``thinking`` + ``text``, say). Text parts form the answer; reasoning
    parts are kept apart; other parts (references, images) are not text."""
    if content is None:
        return "", ""
    if isinstance(content, str):
        return content, ""
    if not isinstance(content, list):
        raise _malformed(wire, "a text answer (content is neither text nor parts)")
    texts: list[str] = []
    thoughts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            kind = part.get("type")
            if kind in ("text", "output_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in ("thinking", "reasoning"):
                inner = part.get("thinking", part.get("reasoning", part.get("text")))
                thoughts.append(inner if isinstance(inner, str) else content_parts(inner, wire)[0])
    return "".join(texts), "".join(thoughts)


def reasoning_of(message: Any) -> str:
    """Reasoning an OpenAI-compatible message carries beside its content
    (``reasoning_content``: DeepSeek, vLLM; ``reasoning``: OpenRouter, Groq; ``thinking``:
    Ollama)."""
    for key in ("reasoning_content", "reasoning", "thinking"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reports them (cache tokens: of the prompt, read from
    or written to the provider's prompt cache)."""

    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0


def openai_usage(usage: Any) -> Usage:
    """``usage`` of an OpenAI-compatible reply (``prompt_tokens`` includes cached ones)."""
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        cached or _int(usage.get("prompt_cache_hit_tokens")),  # DeepSeek's name
    )


def anthropic_usage(usage: Any, base: Usage | None = None) -> Usage:
    """``usage`` of an Anthropic message (``input_tokens`` excludes cached ones); fields
    missing here keep ``base``'s (a stream's ``message_delta`` repeats only some)."""
    base = base or Usage()
    if not isinstance(usage, dict):
        return base

    def pick(key: str, old: int) -> int:
        value = usage.get(key)
        return _int(value) if isinstance(value, int) else old

    return Usage(
        pick("input_tokens", base.tokens_in),
        pick("output_tokens", base.tokens_out),
        pick("cache_read_input_tokens", base.cache_read),
        pick("cache_creation_input_tokens", base.cache_write),
    )


def settle(wire: str, completion: Completion) -> Completion:
    """The checks every reading of a reply ends with, streamed or not: a filtered answer is
    ``content_filter``; an answer with neither text nor tool calls is not one."""
    if completion.finish_reason == "content_filter":
        raise AIResponseError("answer withheld by the content filter", code="content_filter")
    if not completion.text.strip() and not completion.tool_calls:
        why = f" (finish_reason {completion.finish_reason})" if completion.finish_reason else ""
        raise ProviderError(
            f"{wire} reply has no answer: no text and no tool calls{why}",
            code="malformed_response",
        )
    return completion


_ANTHROPIC_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}


def anthropic_finish(stop: Any) -> str | None:
    """An Anthropic ``stop_reason`` in OpenAI's words (``pause_turn`` and other new ones
    pass through as they are)."""
    return _ANTHROPIC_FINISH.get(_str(stop), _str(stop) or None)


def ollama_finish(has_calls: bool, done_reason: Any) -> str | None:
    """Ollama says ``stop`` even when the answer is tool calls: OpenAI's word is used."""
    return "tool_calls" if has_calls else _str(done_reason) or None
