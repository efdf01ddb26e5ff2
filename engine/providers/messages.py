"""How each wire writes a conversation: OpenAI-shaped messages and tools, Anthropic's content
blocks, system prompt and tool choice, and structured output; what a wire cannot say is
unsupported_request."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import ProviderError
from engine.types.request import ChatRequest, Message


def _unsupported(wire: str, what: str) -> ProviderError:
    return ProviderError(
        f"the {wire} wire protocol cannot express {what}", code="unsupported_request"
    )


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
