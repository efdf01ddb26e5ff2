"""What a provider's settings may put on the wire: header names that are tokens, no header
the transport writes itself, and base URLs the endpoint's path can be appended to. Checked
when settings are loaded (``providers.yaml``, with file:line) and when they are resolved."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from engine.chain.loader import locate
from engine.chain.spec import Loc
from engine.errors import Problem

__all__ = ["OWNED_HEADERS", "base_url_problem", "header_problem", "sendable_problems"]

# A header name is an RFC 9110 token.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Headers the transport writes itself (from the URL and the body): given again, they would
#: go out twice, in the shape of request smuggling.
OWNED_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def header_problem(name: str) -> str | None:
    """Why ``name`` cannot be a provider's header (None: it can)."""
    if name.lower() in OWNED_HEADERS:
        return f"header {name!r} is written by the transport (from the URL and the body); remove it"
    if not _TOKEN.match(name):
        near = re.sub(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]+", "-", name.strip().rstrip(":")).strip("-")
        hint = f" (did you mean '{near}'?)" if near and _TOKEN.match(near) else ""
        return (
            f"header name {name!r} is not a token (letters, digits and !#$%&'*+-.^_`|~: no "
            f"space, no colon){hint}"
        )
    return None


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a provider's base URL (None: it can): the endpoint's path is
    appended to it, so a query string or a fragment would end up in the middle."""
    if "?" in url or "#" in url:
        part = "a query string (?...)" if "?" in url else "a fragment (#...)"
        return f"a base URL cannot have {part}: the endpoint's path is appended to it"
    return None


def sendable_problems(
    headers: Iterable[str],
    base_url: str | None,
    source: str,
    loc: Loc,
    values: Any,
    keys: Any,
) -> list[Problem]:
    """The problems of a providers file entry's headers and base URL, located."""
    where = ".".join(map(str, loc))
    found: list[Problem] = []
    for header in headers:
        why = header_problem(header)
        if why is not None:
            line, column = locate((*loc, "headers", header), values, keys, key=True)
            found.append(Problem(source, line, column, f"{where}.headers", why))
    if base_url is not None:
        why = base_url_problem(base_url)
        if why is not None:
            line, column = locate((*loc, "base_url"), values, keys, key=False)
            found.append(Problem(source, line, column, f"{where}.base_url", why))
    return found
