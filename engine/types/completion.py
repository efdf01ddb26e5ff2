"""A provider's answer: the text, the tools it asks to call, why it stopped, the model
that produced it, token usage and what it cost."""

from __future__ import annotations

from dataclasses import dataclass

from engine.types.request import ToolCall

__all__ = ["Completion"]


@dataclass(frozen=True, slots=True)
class Completion:
    """A provider's answer: the text, the tools it asks to call, why it stopped, the model
    that produced it, and token usage if known."""

    text: str
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: ``stop``, ``length``, ``tool_calls``, ``content_filter`` (OpenAI's words), or None.
    finish_reason: str | None = None
    #: The model's reasoning, when it showed it (DeepSeek's ``reasoning_content``, Claude's
    #: thinking blocks, Mistral's thinking parts, ...): never part of `text`.
    reasoning: str = ""
    #: Prompt tokens read from the provider's prompt cache, and written to it, as the
    #: provider reports them (priced apart: see the price table's ``cache_read`` /
    #: ``cache_write``). OpenAI-style replies count cache reads inside ``tokens_in``
    #: (``prompt_tokens``); Anthropic's ``input_tokens`` count neither.
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def with_cost(self, cost: float) -> Completion:
        """This answer with its estimated cost (``dataclasses.replace`` reads every field's
        definition again; every priced answer is made this way)."""
        return Completion(
            self.text,
            self.model,
            self.tokens_in,
            self.tokens_out,
            cost,
            self.tool_calls,
            self.finish_reason,
            self.reasoning,
            self.cache_read_tokens,
            self.cache_write_tokens,
        )

    @property
    def tokens_total(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    @property
    def usage(self) -> dict[str, int]:
        """``{"input_tokens", "output_tokens", "total_tokens"}``."""
        return {
            "input_tokens": self.tokens_in,
            "output_tokens": self.tokens_out,
            "total_tokens": self.tokens_total,
        }
