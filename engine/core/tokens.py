"""How many tokens a request will take, before it is sent: a cheap estimate by default (about
four characters a token), and an exact count for OpenAI's models when the optional extra
``tokens`` is installed (``pip install 'torq-fallback[tokens]'``: bpe-openai, whose
encodings ship inside it, so nothing is downloaded).

Counting exactly costs about half a microsecond a character, so it is done only where the
answer could change a decision: a request whose UTF-8 length (never less than its token
count: a token is at least a byte) fits the window is known to fit without counting.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Final

from engine.types.request import ChatRequest

__all__ = ["count_tokens", "estimate_tokens", "fits_for_sure", "request_bytes"]

#: Tokens each message costs beyond its text (OpenAI's chat format: role and separators).
_PER_MESSAGE: Final = 4
#: Tokens a tool's definition costs beyond its name and description (a schema's worth).
_PER_TOOL: Final = 50
#: Model name prefixes and their encodings (OpenAI's published tokenizers).
_ENCODINGS: Final = (
    ("gpt-4o", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"), ("o1", "o200k_base"), ("o3", "o200k_base"), ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-3.5", "cl100k_base"),
)  # fmt: skip


def _texts(request: ChatRequest) -> list[str]:
    texts = [request.system] if request.system else []
    for message in request.messages:
        if message.content:
            texts.append(message.content)
        for call in message.tool_calls:
            texts += (call.name, call.arguments)
    for tool in request.tools:
        texts += (tool.name, tool.description)
    return texts


def _overhead(request: ChatRequest) -> int:
    return _PER_MESSAGE * (len(request.messages) + 1) + _PER_TOOL * len(request.tools)


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap estimate of a request's input tokens: about 4 characters a token, plus the
    overhead of its messages and tools (the texts the exact count reads)."""
    return sum(len(text) for text in _texts(request)) // 4 + _overhead(request)


def request_bytes(request: ChatRequest) -> int:
    """The request's text in UTF-8 bytes plus its overhead: never fewer than its tokens."""
    return sum(len(text.encode()) for text in _texts(request)) + _overhead(request)


def fits_for_sure(request: ChatRequest, room: int) -> bool:
    """Whether the request's input surely fits in ``room`` tokens, without counting them."""
    chars = sum(len(text) for text in _texts(request))
    if chars * 4 + _overhead(request) <= room:  # 4 bytes is the most a character takes
        return True
    return request_bytes(request) <= room


@functools.cache
def _encoding(name: str) -> Any:
    # bpe-openai reads its tables with an importlib.resources call deprecated since 3.11;
    # the warning is its own, not the application's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import bpe_openai  # the optional extra
        except ImportError:
            return None
        return bpe_openai.get_encoding(name)


def count_tokens(request: ChatRequest, model: str | None) -> int | None:
    """The request's input tokens counted exactly with the model's own tokenizer, or None
    (a model whose tokenizer is not known, or the extra not installed)."""
    if not model:
        return None
    name = next((enc for prefix, enc in _ENCODINGS if model.startswith(prefix)), None)
    encoding = _encoding(name) if name is not None else None
    if encoding is None:
        return None
    texts = _texts(request)
    return sum(len(encoding.encode_ordinary(text)) for text in texts) + _overhead(request)
