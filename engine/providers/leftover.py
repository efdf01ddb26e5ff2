"""RFC 9112, decided once for every transport: a connection that carried more bytes than its
reply framed is closed, not reused, so that no request ever reads another's leftovers as
its reply.

Two kinds of reply leave such bytes: one followed by bytes its framing does not account
for (a body longer than its Content-Length, a second reply nobody asked for), and a 204 or
304, which has no body whatever its headers say, that announces one anyway (the server may
send it, late). The default async transport decides this as it parses
(`engine.providers.h1_connection`); the httpx paths ask h11 what it holds unread
(`close_if_leftover`); aiohttp's parser refuses a reply followed by unframed bytes in
the same read (``malformed_response``) and closes that connection itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["aclose_if_leftover", "announces_a_body", "close_if_leftover"]


def announces_a_body(status: int, headers: Mapping[str, str]) -> bool:
    """A 204 or 304 whose headers announce a body it must not have (the bytes may come)."""
    if status not in (204, 304):
        return False
    length = headers.get("content-length", "").strip()
    return (length not in ("", "0")) or "transfer-encoding" in headers


def _h11_connection(response: Any) -> Any:
    """httpcore's HTTP/1.1 connection under an httpx response, or None (another transport,
    a response built in memory). Found through httpx's and httpcore's stream wrappers."""
    layer = getattr(response, "stream", None)
    for _ in range(5):  # httpx's client stream, its transport's, httpcore's pool's, its own
        connection = getattr(layer, "_connection", None)
        if connection is not None and hasattr(connection, "_h11_state"):
            return connection
        layer = getattr(layer, "_httpcore_stream", None) or getattr(layer, "_stream", None)
        if layer is None:
            return None
    return None


def _leftover(response: Any, connection: Any) -> bool:
    try:
        unread, _closed = connection._h11_state.trailing_data
    except (AttributeError, TypeError, ValueError):  # another h11: nothing to go by
        return False
    return bool(unread) or announces_a_body(response.status_code, response.headers)


def close_if_leftover(response: Any) -> None:
    """Close the connection of a read httpx ``response`` if it holds bytes its reply did
    not frame (the pool then opens a new one for the next request)."""
    connection = _h11_connection(response)
    if connection is not None and _leftover(response, connection):
        connection.close()


async def aclose_if_leftover(response: Any) -> None:
    """The async twin of `close_if_leftover` (httpx's async pool)."""
    connection = _h11_connection(response)
    if connection is not None and _leftover(response, connection):
        await connection.aclose()
