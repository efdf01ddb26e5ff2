"""Keeping secrets out of everything the engine says: one registry of the secret values the
process knows (API keys, header values read from the environment, passwords in base URLs),
one `redact` that masks them, whole or in part, plus anything shaped like an API key,
and a logging filter that runs httpx's and httpcore's log lines through it.

A secret is masked wherever at least `MIN_PART` consecutive characters of it appear,
so a server that echoes a key's first characters ("incorrect key sk-proj-AbCd...") does not
leak them either. Text is always redacted *before* it is cut to length, so no cut can split a
key into a piece that no longer looks like one.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = [
    "MIN_PART",
    "REDACTED",
    "excerpt",
    "install_log_filter",
    "invalid_secret",
    "redact",
    "register_environment_secrets",
    "register_secret",
]

REDACTED: Final = "[redacted]"
#: Shortest piece of a known secret that is masked on its own.
MIN_PART: Final = 8

# Prefixes of the common providers' key formats (OpenAI/DeepSeek/Anthropic "sk-", Groq
# "gsk_", xAI "xai-", Google "AIza", Hugging Face "hf_", ...) and bearer tokens. No word
# boundary in front: a key glued to other text ("keysk-...") is still a key.
_KEY_SHAPES: Final = re.compile(
    r"(?:[sprSPR][kK]-|(?:gsk|hf|ghp|gho|xoxb|xoxp)_|xai-|AIza)[A-Za-z0-9_\-*]{6,}"
    r"|\b(?:[Bb]earer|BEARER)\s+[A-Za-z0-9._\-~+/]{6,}=*"
    r"|\b(?:[Bb]asic|BASIC)\s+[A-Za-z0-9+/]{6,}=*"
)
_RUNS: Final = re.compile(r"[^\s'\"<>(){}\[\],;]" + "{" + str(MIN_PART) + ",}")
_lock = threading.Lock()
_secrets: set[str] = set()
# The registered secrets, longest first (a longer one may hold a shorter one).
_longest_first: tuple[str, ...] = ()
# Every MIN_PART-long piece of every registered secret, for the partial match.
_pieces: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret of this process (masked by every later `redact`).

    Values shorter than `MIN_PART` are not remembered: no provider issues keys that
    short, and masking them wherever they appear would mangle every message."""
    global _pieces, _longest_first
    if not value or len(value) < MIN_PART or value in _secrets:
        return
    with _lock:
        _secrets.add(value)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))
        pieces = set(_pieces)
        for start in range(max(1, len(value) - MIN_PART + 1)):
            piece = value[start : start + MIN_PART]
            if len(piece) == MIN_PART:
                pieces.add(piece)
        _pieces = frozenset(pieces)
        _redacted.cache_clear()  # readings made before this secret was known


# Environment variables whose values are credentials by their name (an application's own
# provider objects read their keys from such variables, not through the engine).
_CREDENTIAL_NAME: Final = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE
)


def register_environment_secrets(environ: Mapping[str, str]) -> None:
    """Remember the values of the variables in ``environ`` named like credentials
    (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ...), so that no failure message the engine
    records quotes them, whoever's provider raised it."""
    for name, value in environ.items():
        if _CREDENTIAL_NAME.search(name) and len(value.strip()) >= MIN_PART:
            register_secret(value.strip())


def _mask_known(text: str, extra: Iterable[str]) -> str:
    # Whole secrets first (short ones too), then any run built of known pieces.
    # Made once per registration, not per call: this runs on every failure's message.
    ordered = (
        _longest_first
        if not extra
        else sorted({*_secrets, *(s for s in extra if s)}, key=len, reverse=True)
    )
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    pieces = _pieces
    extra_pieces = (
        {s[i : i + MIN_PART] for s in extra if s for i in range(len(s) - MIN_PART + 1)}
        if extra
        else ()
    )
    if not pieces and not extra_pieces:
        return text
    spans: list[list[int]] = []
    # Only runs of key-like characters can hold a piece of a key: scanning just those keeps
    # this a few microseconds on an ordinary error message.
    for run in _RUNS.finditer(text):
        first, stop = run.span()
        for start in range(first, stop - MIN_PART + 1):
            piece = text[start : start + MIN_PART]
            if piece in pieces or piece in extra_pieces:
                end = start + MIN_PART
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], end)
                else:
                    spans.append([start, end])
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret (registered or given), whole or in part, and anything
    shaped like an API key, masked."""
    extra = tuple(secrets)
    if not extra and len(text) <= _REMEMBERED_LENGTH:
        return _redacted(text)
    return _KEY_SHAPES.sub(REDACTED, _mask_known(text, extra))


# Failure messages repeat (the same provider says the same thing under load): the last
# readings of short ones are remembered, and forgotten whenever a secret is registered.
_REMEMBERED_LENGTH: Final = 1000


@functools.lru_cache(maxsize=512)
def _redacted(text: str) -> str:
    return _KEY_SHAPES.sub(REDACTED, _mask_known(text, ()))


def excerpt(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """A redacted excerpt of at most ``limit`` characters (redacted first, then cut)."""
    # Only a bounded window is redacted: a reply may be megabytes long.
    window = redact(text[: limit * 4 + 64], secrets)
    return window if len(window) <= limit else window[: limit - 1] + "…"


def invalid_secret(value: str) -> str | None:
    """Why ``value`` cannot be sent as a credential (None if it can). Never quotes it."""
    for index, char in enumerate(value):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            return f"contains a control character (at position {index + 1})"
        if code == 0x20:
            return f"contains a space (at position {index + 1})"
        if code > 0x7E:
            return f"contains a non-ASCII character (at position {index + 1})"
    return None


class _RedactingFilter(logging.Filter):
    """Rewrites a log record's message with secrets masked (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is logging's business, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTERED_LOGGERS: Final = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_filter = _RedactingFilter()


def install_log_filter() -> None:
    """Mask secrets in the log lines of httpx and httpcore (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
