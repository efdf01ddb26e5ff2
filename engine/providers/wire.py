"""The three wire protocols: how a request is written and how a reply is read.

Each protocol knows its path, headers and JSON body, how to turn a successful body into a
:class:`~engine.classify.Completion`, and where its error bodies keep the error's type, code
and message. What those mean for the chain is decided in :mod:`engine.providers.mapping`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ..classify import Completion
from ..errors import AIResponseError, ProviderError
from ..request import ChatRequest, Message, ToolCall

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


def _malformed(wire: str, what: str) -> ProviderError:
    return ProviderError(f"{wire} reply is missing {what}", code="malformed_response")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _unsupported(wire: str, what: str) -> ProviderError:
    return ProviderError(
        f"the {wire} wire protocol cannot express {what}", code="unsupported_request"
    )


def _arguments(raw: Any) -> str:
    """Tool-call arguments as a JSON string, whatever the wire sent (string or object)."""
    if isinstance(raw, str):
        return raw
    return json.dumps(raw if raw is not None else {})


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


def _openai_messages(request: ChatRequest, *, ollama: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content or ""}
        if message.tool_calls:
            item["tool_calls"] = [
                {"function": {"name": c.name, "arguments": json.loads(c.arguments or "{}")}}
                if ollama
                else {"id": c.id, "type": "function",
                      "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]  # fmt: skip
        if message.role == "tool":
            if ollama:
                if message.name:
                    item["tool_name"] = message.name
            else:
                item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def _openai_tools(request: ChatRequest) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": dict(t.parameters)}}
        for t in request.tools
    ]  # fmt: skip


class OpenAIWire:
    """OpenAI chat completions (also DeepSeek and any OpenAI-compatible endpoint)."""

    name = "openai"
    path = "/chat/completions"

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
        for name in ("temperature", "max_tokens", "top_p"):
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


def _anthropic_output(response_format: Any) -> dict[str, Any]:
    """OpenAI's ``response_format`` as the Messages API's structured output
    (``output_config.format``): a JSON schema maps; JSON mode without a schema has no
    counterpart and is ``unsupported_request``."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return {"format": {"type": "json_schema", "schema": dict(spec["schema"])}}
    raise _unsupported(
        "anthropic", f"response_format type {kind!r} (only json_schema with a schema maps)"
    )


def _anthropic_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        function = choice.get("function", choice)
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    raise _unsupported("anthropic", f"tool_choice {choice!r}")


def _anthropic_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages as Anthropic content blocks: an assistant's tool calls become
    ``tool_use`` blocks, tool results ``tool_result`` blocks in one user message."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue  # folded into the top-level system prompt
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content or "",
            }
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name,
                 "input": json.loads(c.arguments or "{}")}
                for c in message.tool_calls
            )  # fmt: skip
            out.append({"role": "assistant", "content": blocks})
            continue
        out.append({"role": message.role, "content": message.content or ""})
    return out


#: Wire protocols by the ``kind`` a provider declares.
WIRES: Final[dict[str, Wire]] = {
    "openai": OpenAIWire(),
    "anthropic": AnthropicWire(),
    "ollama": OllamaWire(),
}
