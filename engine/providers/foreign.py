"""Failures raised by other HTTP clients and SDKs, read as the engine reads its own.

An application may register a provider object built on the official ``openai`` or
``anthropic`` SDK, on httpx, requests or aiohttp. Their exceptions carry what the engine's
own HTTP provider would have seen: the reply (``exc.response`` with its status, headers and
body) or the transport fault (raised directly, or as ``__cause__``). `read_foreign`
turns them into the outcome error the engine's own provider raises for the same bytes, through
the same mapping (`engine.providers.mapping`), so a chain takes the same path whichever
client made the call.

What is read (docs/providers.md has the table):

* a reply: ``exc.response`` with ``status_code`` (httpx, requests, the SDKs) or ``status``
  (aiohttp), its ``headers`` and its body (``.content``; the SDKs' parsed ``exc.body``
  otherwise); aiohttp's ``ClientResponseError`` has the status and headers only;
* a transport fault: httpx's exceptions as they are, and those of its relatives (httpx2, the
  SDKs' fork, and httpcore) by their names; requests', urllib3's and aiohttp's by what they
  mean (connect and read timeouts, refused or failed connections, replies cut short); the
  SDKs' ``APITimeoutError`` / ``APIConnectionError`` through the error they were raised from.

Nothing here imports requests, aiohttp or the SDKs: their classes are told by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import httpx

from engine.providers.mapping import OutcomeError, error_for_status, error_for_transport
from engine.providers.wire import WIRES, Wire

__all__ = ["read_foreign", "reply_of", "wire_named"]

_CAUSE_DEPTH: Final = 8
_OPENAI: Final = WIRES["openai"]  # reads OpenAI's, Anthropic's and Ollama's error envelopes


def wire_named(declared: Any) -> Wire | None:
    """The wire a provider object declares (``wire = "anthropic"``, or a wire object), or
    None when it declares none the engine knows."""
    if isinstance(declared, str):
        return WIRES.get(declared)
    name = getattr(declared, "name", None)
    found = WIRES.get(name) if isinstance(name, str) else None
    return found if found is declared else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from (``__cause__``), nearest first, bounded."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _CAUSE_DEPTH:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _status(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _headers(raw: Any) -> dict[str, str]:
    """Any client's headers as one lower-cased dict (repeated names joined, as on the wire)."""
    items = getattr(raw, "items", None)
    if not callable(items):
        return {}
    found: dict[str, str] = {}
    try:
        for name, value in items():
            key = str(name).lower()
            found[key] = f"{found[key]}, {value}" if key in found else str(value)
    except Exception:  # an exotic headers object: read what there is, never fail
        return found
    return found


def _body(exc: BaseException, response: Any) -> bytes | None:
    """The reply's bytes, when the client read them (None: not read)."""
    try:
        content = getattr(response, "content", None)
    except Exception:  # httpx.ResponseNotRead and the like: the body was never read
        content = None
    if isinstance(content, bytes | bytearray):
        return bytes(content)
    parsed = getattr(exc, "body", None)  # the SDKs keep the parsed JSON body
    if parsed is not None:
        try:
            return json.dumps(parsed).encode()
        except (TypeError, ValueError):
            return None
    return None


def reply_of(exc: BaseException) -> tuple[int, dict[str, str], bytes | None] | None:
    """``(status, headers, body)`` of the error reply an exception carries, or None. The
    body is None when the client never read it."""
    response = getattr(exc, "response", None)
    if response is not None and not isinstance(response, Mapping):
        status = _status(getattr(response, "status_code", None)) or _status(
            getattr(response, "status", None)
        )
        if status is not None and status >= 400:
            return status, _headers(getattr(response, "headers", None)), _body(exc, response)
    # aiohttp's ClientResponseError keeps the status and headers on itself, and no body.
    status = _status(getattr(exc, "status", None))
    if status is not None and status >= 400 and _named(exc, "ClientResponseError"):
        return status, _headers(getattr(exc, "headers", None)), None
    return None


def _names(exc: BaseException) -> set[str]:
    return {f"{k.__module__.split('.')[0]}.{k.__name__}" for k in type(exc).__mro__}


def _named(exc: BaseException, name: str) -> bool:
    return any(k.__name__ == name for k in type(exc).__mro__)


# requests', urllib3's and aiohttp's faults, by what the same fault is in httpx.
_TIMEOUTS: Final = (
    ({"aiohttp.ConnectionTimeoutError", "requests.ConnectTimeout", "urllib3.ConnectTimeoutError"},
     httpx.ConnectTimeout),
    ({"aiohttp.SocketTimeoutError", "aiohttp.ServerTimeoutError", "requests.ReadTimeout",
      "requests.Timeout", "urllib3.ReadTimeoutError", "urllib3.TimeoutError",
      "openai.APITimeoutError", "anthropic.APITimeoutError"}, httpx.ReadTimeout),
)  # fmt: skip
# Connecting failed (aiohttp's connector error is also a ClientOSError: told first).
_NO_CONNECTION: Final = {"aiohttp.ClientConnectorError", "urllib3.NewConnectionError"}
_CUT: Final = {
    "aiohttp.ServerDisconnectedError", "aiohttp.ClientPayloadError", "aiohttp.ClientOSError",
    "requests.ChunkedEncodingError", "requests.ContentDecodingError", "urllib3.ProtocolError",
    "http.RemoteDisconnected", "http.IncompleteRead",
}  # fmt: skip
_CONNECT: Final = {
    "aiohttp.ClientConnectorError", "aiohttp.ClientConnectionError", "requests.ConnectionError",
    "urllib3.NewConnectionError", "urllib3.MaxRetryError", "openai.APIConnectionError",
    "anthropic.APIConnectionError",
}  # fmt: skip
# Words of a connection that broke once open (requests reports those as ConnectionError).
_BROKE: Final = ("aborted", "remotedisconnected", "reset by peer", "without response")


# httpx's relatives (the SDKs' own fork httpx2, httpcore and its fork) name their faults
# as httpx does.
_HTTPX_LIKE: Final = re.compile(r"^http(?:x|core)\d*$")


def _httpx_relative(exc: BaseException) -> httpx.HTTPError | None:
    """httpx's exception of the same name as ``exc``, a fault of one of httpx's relatives."""
    if not _HTTPX_LIKE.match(type(exc).__module__.split(".")[0]):
        return None
    same = getattr(httpx, type(exc).__name__, None)
    if (
        isinstance(same, type)
        and issubclass(same, httpx.HTTPError)
        and not issubclass(same, httpx.HTTPStatusError)
    ):
        return same(str(exc) or type(exc).__name__)
    return None


def _httpx_equivalent(exc: BaseException) -> httpx.HTTPError | None:
    """The httpx exception that means what ``exc`` (another client's fault) means."""
    text = str(exc) or type(exc).__name__
    names = _names(exc)
    if "aiohttp.ServerTimeoutError" in names and text.lower().startswith("connection timeout"):
        return httpx.ConnectTimeout(text)  # aiohttp before 3.10 words a connect timeout so
    for known, kind in _TIMEOUTS:
        if names & known:
            return kind(text)
    if names & _NO_CONNECTION:
        return httpx.ConnectError(text)
    if names & _CUT:
        return httpx.RemoteProtocolError(text)
    if names & _CONNECT:
        if any(word in text.lower() for word in _BROKE):
            return httpx.RemoteProtocolError(text)
        return httpx.ConnectError(text)
    return None


def read_foreign(
    exc: BaseException, provider: str, wire: Wire | None = None, secrets: Iterable[str] = ()
) -> OutcomeError | None:
    """The outcome error the engine's own HTTP provider raises for the failure ``exc``
    carries (a reply, or a transport fault), named after ``provider``; None when ``exc``
    carries neither. ``wire`` reads the error body (default: OpenAI's reading, which also
    reads Anthropic's and Ollama's envelopes)."""
    reply = reply_of(exc)
    if reply is not None:
        status, headers, body = reply
        found = error_for_status(status, headers, body or b"", wire or _OPENAI, provider, secrets)
        if body is None:
            found.message += " (the reply's body was not read)"
            found.args = (found.message,)
        return found
    chain = list(_causes(exc))
    for link in chain:  # httpx's own errors first: the most precise
        if isinstance(link, httpx.HTTPError) and not isinstance(link, httpx.HTTPStatusError):
            return error_for_transport(link, provider, "wait", secrets)
    for reading in (_httpx_relative, _httpx_equivalent):  # the more precise first
        for link in chain:
            equivalent = reading(link)
            if equivalent is not None:
                return error_for_transport(equivalent, provider, "wait", secrets)
    return None
