"""The three wire protocols: how a request is written and how a reply is read.

Each protocol knows its path, headers and JSON body, how to turn a successful body into a
`Completion`, and where its error bodies keep the error's type, code
and message. What those mean for the chain is decided in `engine.providers.mapping`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Protocol

from engine.errors import AIResponseError, ProviderError
from engine.providers.messages import (
    _anthropic_choice,
    _anthropic_messages,
    _anthropic_output,
    _openai_messages,
    _openai_tools,
    _unsupported,
)
from engine.providers.reading import (
    _int,
    _malformed,
    _str,
    anthropic_finish,
    anthropic_usage,
    content_parts,
    ollama_finish,
    openai_usage,
    reasoning_of,
    settle,
)
from engine.types.completion import Completion
from engine.types.request import ChatRequest, ToolCall

__all__ = ["WIRES", "ErrorInfo", "Wire"]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error body says: its type, its code and its message (each may be empty)."""

    type: str = ""
    code: str = ""
    message: str = ""
    #: An HTTP status the body itself names (an error event in a stream has no status line
    #: of its own: Groq's carry ``status_code``, OpenRouter's a numeric ``code``); 0 if none.
    status: int = 0


class Wire(Protocol):
    """A provider wire protocol."""

    name: str
    #: What active health checks ask (a path after the base URL that costs no tokens).
    probe_path: str
    path: str

    def headers(self, api_key: str | None) -> dict[str, str]:
        """Headers for a request (authentication, versions)."""
        ...

    def body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The JSON body asking ``model`` to answer ``request`` (raises
        ``ProviderError(unsupported_request)`` for what the protocol cannot express)."""
        ...

    def completion(self, data: Any) -> Completion:
        """Read a 200 body; raise ``ProviderError(malformed_response)`` if it is not one,
        ``AIResponseError`` if the answer was filtered or refused."""
        ...

    def error(self, data: Any) -> ErrorInfo:
        """Read an error body (any JSON value; may be malformed)."""
        ...


def _arguments(raw: Any) -> str:
    """Tool-call arguments as a JSON string, whatever the wire sent (string or object)."""
    if isinstance(raw, str):
        return raw
    return json.dumps(raw if raw is not None else {})


class OpenAIWire:
    """OpenAI chat completions (also DeepSeek and any OpenAI-compatible endpoint)."""

    name = "openai"
    path = "/chat/completions"
    #: Asked by active health checks: the model list, which costs no tokens.
    probe_path = "/models"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": _openai_messages(request)}
        if request.tools:
            body["tools"] = _openai_tools(request)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.response_format is not None:
            body["response_format"] = dict(request.response_format)
        for name in ("temperature", "max_tokens", "top_p", "seed"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    def completion(self, data: Any) -> Completion:
        try:
            choice = data["choices"][0]
            finish = choice.get("finish_reason")
            message = choice["message"]
            content = message.get("content")
            raw_calls = message.get("tool_calls") or []
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _malformed(self.name, "choices[0].message") from None
        if finish == "content_filter":
            raise AIResponseError("answer withheld by the content filter", code="content_filter")
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            raise AIResponseError(f"the model refused: {refusal[:200]}", code="refusal")
        try:
            calls = tuple(
                ToolCall(_str(c.get("id")) or f"call_{i}", c["function"]["name"],
                         _arguments(c["function"].get("arguments")))
                for i, c in enumerate(raw_calls)
            )  # fmt: skip
        except (KeyError, TypeError, AttributeError):
            raise _malformed(self.name, "tool_calls[].function.name") from None
        text, reasoning = content_parts(content, self.name)
        usage = openai_usage(data.get("usage"))
        return settle(
            self.name,
            Completion(
                text=text,
                model=_str(data.get("model")) or None,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
                tool_calls=calls,
                finish_reason=_str(finish) or None,
                reasoning=reasoning or reasoning_of(message),
                cache_read_tokens=usage.cache_read,
            ),
        )

    def error(self, data: Any) -> ErrorInfo:
        if isinstance(data, list) and data and isinstance(data[0], dict):
            data = data[0]  # Gemini's OpenAI endpoint wraps its error in a list
        inner = data.get("error") if isinstance(data, dict) else None
        if isinstance(inner, dict):
            code = inner.get("code")
            status = _int(inner.get("status_code")) or (_int(code) if _int(code) >= 400 else 0)
            return ErrorInfo(
                _str(inner.get("type")),
                _str(code) or (str(code) if _int(code) else ""),
                _str(inner.get("message")),
                status if 400 <= status < 600 else 0,
            )
        if isinstance(inner, str):
            return ErrorInfo(message=inner)
        return ErrorInfo()


class AnthropicWire:
    """Anthropic messages API."""

    name = "anthropic"
    path = "/v1/messages"
    probe_path = "/v1/models"
    version = "2023-06-01"
    max_tokens = 4096

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self.version}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or self.max_tokens,
            "messages": _anthropic_messages(request.messages),
        }
        if request.response_format is not None:
            body["output_config"] = _anthropic_output(request.response_format)
        # Anthropic has one system prompt, at the top: system messages are folded into it.
        systems = [request.system or ""] + [
            m.content or "" for m in request.messages if m.role == "system"
        ]
        system = "\n\n".join(s for s in systems if s)
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        if request.tool_choice is not None:
            body["tool_choice"] = _anthropic_choice(request.tool_choice)
        for name in ("temperature", "top_p"):
            if getattr(request, name) is not None:
                body[name] = getattr(request, name)
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    def completion(self, data: Any) -> Completion:
        try:
            blocks = data["content"]
            stop = data.get("stop_reason")
            texts = [b["text"] for b in blocks if b.get("type") == "text"]
            thoughts = [b.get("thinking") for b in blocks if b.get("type") == "thinking"]
            # Only tool_use blocks are the application's tools; server_tool_use and
            # mcp_tool_use (and their results) were run by Anthropic.
            calls = tuple(
                ToolCall(_str(b.get("id")) or f"call_{i}", b["name"], _arguments(b.get("input")))
                for i, b in enumerate(blocks)
                if b.get("type") == "tool_use"
            )
        except (KeyError, TypeError, AttributeError):
            raise _malformed(self.name, "content[].text") from None
        if stop == "refusal":
            raise AIResponseError("the model refused to answer", code="refusal")
        if not all(isinstance(t, str) for t in texts):
            raise _malformed(self.name, "a text block")
        usage = anthropic_usage(data.get("usage"))
        return settle(
            self.name,
            Completion(
                text="".join(texts),
                model=_str(data.get("model")) or None,
                tokens_in=usage.tokens_in,
                tokens_out=usage.tokens_out,
                tool_calls=calls,
                finish_reason=anthropic_finish(stop),
                reasoning="".join(t for t in thoughts if isinstance(t, str)),
                cache_read_tokens=usage.cache_read,
                cache_write_tokens=usage.cache_write,
            ),
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
    probe_path = "/api/tags"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": _openai_messages(request, ollama=True),
            "stream": False,
        }
        # Ollama has no tool_choice: "none" is honoured by not offering the tools, "auto" is
        # what it does anyway; anything else cannot be said, and is not silently dropped.
        choice = request.tool_choice
        if choice is not None and choice not in ("auto", "none"):
            raise _unsupported(self.name, f"tool_choice {choice!r} (Ollama has no tool_choice)")
        if request.tools and choice != "none":
            body["tools"] = _openai_tools(request)
        if request.response_format is not None:
            schema = request.response_format.get("json_schema")
            body["format"] = schema.get("schema", "json") if isinstance(schema, dict) else "json"
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.seed is not None:
            options["seed"] = request.seed
        if request.stop:
            options["stop"] = list(request.stop)
        if options:
            body["options"] = options
        return body

    def completion(self, data: Any) -> Completion:
        try:
            message = data["message"]
            content = message.get("content")
            calls = tuple(
                ToolCall(_str(c.get("id")) or f"call_{i}", c["function"]["name"],
                         _arguments(c["function"].get("arguments")))
                for i, c in enumerate(message.get("tool_calls") or [])
            )  # fmt: skip
        except (KeyError, TypeError, AttributeError):
            raise _malformed(self.name, "message.content") from None
        if content is not None and not isinstance(content, str):
            raise _malformed(self.name, "a text answer")
        if data.get("done") is False:
            raise ProviderError("ollama reply ended before done", code="truncated_response")
        return settle(
            self.name,
            Completion(
                text=content or "",
                model=_str(data.get("model")) or None,
                tokens_in=_int(data.get("prompt_eval_count")),
                tokens_out=_int(data.get("eval_count")),
                tool_calls=calls,
                finish_reason=ollama_finish(bool(calls), data.get("done_reason")),
                reasoning=reasoning_of(message),
            ),
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
