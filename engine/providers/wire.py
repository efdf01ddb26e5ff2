"""The three wire protocols: how a request is written and how a reply is read.

Each protocol knows its path, headers and JSON body, how to turn a successful body into a
:class:`~engine.classify.Completion`, and where its error bodies keep the error's type, code
and message. What those mean for the chain is decided in :mod:`engine.providers.mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..classify import Completion
from ..errors import AIResponseError, ProviderError

__all__ = ["WIRES", "ErrorInfo", "Wire"]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error body says: its type, its code and its message (each may be empty)."""

    type: str = ""
    code: str = ""
    message: str = ""


class Wire(Protocol):
    """A provider wire protocol."""

    name: str
    path: str

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Headers for a request (authentication, versions)."""
        ...

    def body(self, prompt: str, model: str) -> dict[str, Any]:
        """The JSON body asking ``model`` to answer ``prompt``."""
        ...

    def completion(self, data: Any) -> Completion:
        """Read a 200 body; raise ``ProviderError(malformed_response)`` if it is not one,
        ``AIResponseError`` if the answer was filtered or refused."""
        ...

    def error(self, data: Any) -> ErrorInfo:
        """Read an error body (any JSON value; may be malformed)."""
        ...


def _malformed(wire: str, what: str) -> ProviderError:
    return ProviderError(f"{wire} reply is missing {what}", code="malformed_response")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class OpenAIWire:
    """OpenAI chat completions (also DeepSeek and any OpenAI-compatible endpoint)."""

    name = "openai"
    path = "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, prompt: str, model: str) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": prompt}]}

    def completion(self, data: Any) -> Completion:
        try:
            choice = data["choices"][0]
            finish = choice.get("finish_reason")
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _malformed(self.name, "choices[0].message.content") from None
        if finish == "content_filter":
            raise AIResponseError("answer withheld by the content filter", code="content_filter")
        refusal = choice["message"].get("refusal")
        if isinstance(refusal, str) and refusal:
            raise AIResponseError(f"the model refused: {refusal[:200]}", code="refusal")
        if not isinstance(content, str):
            raise _malformed(self.name, "a text answer")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text=content,
            model=_str(data.get("model")) or None,
            tokens_in=_int(usage.get("prompt_tokens")),
            tokens_out=_int(usage.get("completion_tokens")),
        )

    def error(self, data: Any) -> ErrorInfo:
        inner = data.get("error") if isinstance(data, dict) else None
        if isinstance(inner, dict):
            return ErrorInfo(
                _str(inner.get("type")), _str(inner.get("code")), _str(inner.get("message"))
            )
        if isinstance(inner, str):
            return ErrorInfo(message=inner)
        return ErrorInfo()


class AnthropicWire:
    """Anthropic messages API."""

    name = "anthropic"
    path = "/v1/messages"
    version = "2023-06-01"
    max_tokens = 4096

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self.version}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def body(self, prompt: str, model: str) -> dict[str, Any]:
        return {
            "model": model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }

    def completion(self, data: Any) -> Completion:
        try:
            blocks = data["content"]
            stop = data.get("stop_reason")
            texts = [b["text"] for b in blocks if b.get("type") == "text"]
        except (KeyError, TypeError, AttributeError):
            raise _malformed(self.name, "content[].text") from None
        if stop == "refusal":
            raise AIResponseError("the model refused to answer", code="refusal")
        if not texts or not all(isinstance(t, str) for t in texts):
            raise _malformed(self.name, "a text block")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text="".join(texts),
            model=_str(data.get("model")) or None,
            tokens_in=_int(usage.get("input_tokens")),
            tokens_out=_int(usage.get("output_tokens")),
        )

    def error(self, data: Any) -> ErrorInfo:
        inner = data.get("error") if isinstance(data, dict) else None
        if isinstance(inner, dict):
            return ErrorInfo(_str(inner.get("type")), "", _str(inner.get("message")))
        return ErrorInfo()


class OllamaWire:
    """Ollama's native chat API (no key)."""

    name = "ollama"
    path = "/api/chat"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, prompt: str, model: str) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": False}

    def completion(self, data: Any) -> Completion:
        try:
            content = data["message"]["content"]
        except (KeyError, TypeError):
            raise _malformed(self.name, "message.content") from None
        if not isinstance(content, str):
            raise _malformed(self.name, "a text answer")
        if data.get("done") is False:
            raise ProviderError("ollama reply ended before done", code="truncated_response")
        return Completion(
            text=content,
            model=_str(data.get("model")) or None,
            tokens_in=_int(data.get("prompt_eval_count")),
            tokens_out=_int(data.get("eval_count")),
        )

    def error(self, data: Any) -> ErrorInfo:
        inner = data.get("error") if isinstance(data, dict) else None
        return ErrorInfo(message=inner) if isinstance(inner, str) else ErrorInfo()


#: Wire protocols by the ``kind`` a provider declares.
WIRES: Final[dict[str, Wire]] = {
    "openai": OpenAIWire(),
    "anthropic": AnthropicWire(),
    "ollama": OllamaWire(),
}
