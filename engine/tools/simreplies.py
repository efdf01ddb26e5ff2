"""The simulator's replies in each wire format: answers and tool calls, and the error bodies
and status lines of every fault preset, shaped as the real services shape them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from engine.tools.simscript import (
    PRESETS,
    Behaviour,
)

_LOW_CREDIT: Final = "Your credit balance is too low to access the Anthropic API."


def _tool_answer(wire: str, b: Behaviour, model: str) -> dict[str, Any]:
    arguments = dict(b.arguments)
    if wire == "openai":
        call = {
            "id": "call_sim_1",
            "type": "function",
            "function": {"name": b.tool, "arguments": json.dumps(arguments)},
        }
        return {
            "id": "chatcmpl-sim", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
            "usage": {"prompt_tokens": b.tokens_in, "completion_tokens": b.tokens_out},
        }  # fmt: skip
    if wire == "anthropic":
        return {
            "id": "msg_sim", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "tool_use", "id": "toolu_sim_1", "name": b.tool,
                         "input": arguments}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": b.tokens_in, "output_tokens": b.tokens_out},
        }  # fmt: skip
    return {
        "model": model, "created_at": "2026-01-01T00:00:00Z", "done": True,
        "message": {"role": "assistant", "content": "",
                    "tool_calls": [{"function": {"name": b.tool, "arguments": arguments}}]},
        "done_reason": "stop", "prompt_eval_count": b.tokens_in, "eval_count": b.tokens_out,
    }  # fmt: skip


def _answer(wire: str, b: Behaviour, model: str) -> dict[str, Any]:
    if b.kind == "tool_call":
        return _tool_answer(wire, b, model)
    if wire == "openai":
        finish: str = "stop"
        content: str | None = b.text
        refusal: str | None = None
        if b.kind == "content_filter":
            finish, content = "content_filter", ""
        elif b.kind == "refusal":
            content, refusal = None, b.message or "I can't help with that."
        return {
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": b.tokens_in,
                "completion_tokens": b.tokens_out,
                "total_tokens": b.tokens_in + b.tokens_out,
            },
        }
    if wire == "anthropic":
        refused = b.kind == "refusal"
        return {
            "id": "msg_sim",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [] if refused else [{"type": "text", "text": b.text}],
            "stop_reason": "refusal" if refused else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": b.tokens_in, "output_tokens": b.tokens_out},
        }
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": b.text},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": b.tokens_in,
        "eval_count": b.tokens_out,
    }


def _openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _error_body(wire: str, provider: str, b: Behaviour, model: str) -> tuple[int, Any]:
    """Status and body of an error preset, as the real provider writes them."""
    kind = b.kind
    status = b.status or PRESETS[kind]
    msg = b.message
    if wire == "anthropic":
        status = 400 if kind == "quota" else status
        anthropic = {
            "rate_limit": ("rate_limit_error",
                           "Number of request tokens has exceeded your per-minute rate limit."),
            "quota": ("invalid_request_error", _LOW_CREDIT),
            "balance": ("billing_error", _LOW_CREDIT),
            "auth": ("authentication_error", "invalid x-api-key"),
            "forbidden": ("permission_error",
                          "Your API key does not have permission to use the specified resource."),
            "model_not_found": ("not_found_error", f"model: {model}"),
            "context_length": ("invalid_request_error",
                               "prompt is too long: 215000 tokens > 200000 maximum"),
            "bad_request": ("invalid_request_error", "messages: at least one message is required"),
            "unprocessable": ("invalid_request_error", "Invalid request."),
            "request_timeout": ("timeout_error", "Request timed out."),
            "conflict": ("api_error", "Conflict."),
            "server_error": ("api_error", "Internal server error"),
            "bad_gateway": ("api_error", "Bad gateway"),
            "unavailable": ("api_error", "Service unavailable"),
            "gateway_timeout": ("api_error", "Gateway timeout"),
            "overloaded": ("overloaded_error", "Overloaded"),
        }  # fmt: skip
        type_, text = anthropic[kind]
        return status, _anthropic_error(type_, msg or text)
    if wire == "ollama":
        ollama = {
            "model_not_found": f"model '{model}' not found, try pulling it first",
            "unavailable": "server busy, please try again.  maximum pending requests exceeded",
            "context_length": "input length exceeds maximum context length",
        }
        return status, {"error": msg or ollama.get(kind, f"{kind.replace('_', ' ')}")}
    deepseek = provider == "deepseek"
    openai = {
        "rate_limit": (
            f"Rate limit reached for {model} on requests per min (RPM): Limit 500. "
            "Please try again in 1s.", "requests", "rate_limit_exceeded"),
        "quota": ("You exceeded your current quota, please check your plan and billing details.",
                  "insufficient_quota", "insufficient_quota"),
        "balance": ("Insufficient Balance", "unknown_error", "invalid_request_error"),
        "auth": ("Incorrect API key provided: sk-sim***1234. You can find your API key at "
                 "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                 "invalid_api_key"),
        "forbidden": ("You are not allowed to sample from this model", "invalid_request_error",
                      None),
        "model_not_found": (f"The model `{model}` does not exist or you do not have access to it.",
                            "invalid_request_error", "model_not_found"),
        "context_length": (
            f"This model's maximum context length is {65536 if deepseek else 128000} tokens. "
            "However, you requested 210000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "invalid_request_error" if deepseek else "context_length_exceeded"),
        "bad_request": ("Invalid request: messages must not be empty", "invalid_request_error",
                        None),
        "unprocessable": ("Invalid Parameters", "invalid_request_error", None),
        "request_timeout": ("Request timed out.", "timeout", None),
        "conflict": ("Conflict with a concurrent request.", "invalid_request_error", None),
        "server_error": ("The server had an error while processing your request. Sorry about that!",
                         "server_error", None),
        "bad_gateway": ("Bad gateway.", "server_error", None),
        "unavailable": ("Server overloaded" if deepseek else "The engine is currently overloaded, "
                        "please try again later", "server_error", None),
        "gateway_timeout": ("Gateway timeout.", "server_error", None),
        "overloaded": ("The server is overloaded.", "server_error", None),
    }  # fmt: skip
    text, type_, code = openai[kind]
    if kind == "overloaded":
        status = b.status or 503
    return status, _openai_error(msg or text, type_, code)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Site Overloaded" if status == 529 else "Unknown"


def _head(status: int, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", f"content-length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
