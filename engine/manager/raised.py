"""What a failed chain is raised as, for a host that catches its own exception classes.

A provider's own exception that stopped the chain (a policy block) is re-raised as it is.
Otherwise the classes are, first found first:

1. those the host names (``error_classes={"provider_error": ProviderError, "ai_error":
   AIResponseError, "timeout": AITimeoutError}``, or the module holding them);
2. those the host's manager's module calls ``ProviderError``, ``AIResponseError`` and
   ``AITimeoutError``: the very classes its ``except`` clauses catch;
3. the class of the provider exception that ended the request (a class with an
   ``error_category``);
4. the engine's own (`ChainExhaustedError`,
   `ChainAbortedError`).

So the host's ``except (AITimeoutError, ProviderError, AIResponseError)`` catches every
failure, with no line of glue.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from engine.errors import ChainAbortedError, ChainExhaustedError

__all__ = ["CATEGORY_CLASS_NAMES", "RaisedClasses", "raised_classes"]

#: error_category -> the class name a host's module holds for it (TORQ Console's).
CATEGORY_CLASS_NAMES: Final = {
    "provider_error": "ProviderError",
    "ai_error": "AIResponseError",
    "timeout": "AITimeoutError",
}


def _made(cls: type[BaseException], message: str, code: str | None, cause: Any) -> BaseException:
    """An instance of a host's class, through the constructor it has: TORQ Console's
    ``(message, code=..., cause=...)``, or ``(message, code=...)``, or ``(message)``."""
    attempts: tuple[dict[str, Any], ...] = ({"code": code, "cause": cause}, {"code": code}, {})
    last: TypeError | None = None
    for kwargs in attempts:
        try:
            return cls(message, **kwargs)
        except TypeError as exc:  # not this constructor: the next simpler one
            last = exc
    raise TypeError(f"cannot make a {cls.__name__} from a message: {last}") from last


def _engine_class(cls: type[BaseException]) -> bool:
    return cls.__module__ == "engine" or cls.__module__.startswith("engine.")


@dataclass(frozen=True)
class RaisedClasses:
    """The host's classes by ``error_category`` (empty: the engine's own)."""

    classes: Mapping[str, type[BaseException]]

    def owns(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be re-raised as it is: always with the engine's classes, and
        when it is one of the host's classes otherwise."""
        if not self.classes:
            return True
        return isinstance(exc, tuple(self.classes.values()))

    def with_seen(self, raised: list[BaseException]) -> RaisedClasses:
        """These classes, completed by those of the host's exceptions ``raised`` (a class
        whose ``error_category`` is one of the three; the first seen of each)."""
        found = dict(self.classes)
        for exc in raised:
            said = getattr(exc, "error_category", None)
            if said in CATEGORY_CLASS_NAMES and not _engine_class(type(exc)):
                found.setdefault(said, type(exc))
        return self if len(found) == len(self.classes) else RaisedClasses(found)

    def make(
        self,
        category: str,
        message: str,
        code: str | None,
        cause: BaseException | None,
        attempts: list[dict[str, Any]],
    ) -> BaseException:
        """The exception for a chain that failed in ``category`` (``provider_error``:
        exhausted; ``timeout``: every attempt timed out, or the deadline passed;
        ``ai_error``: stopped), with the attempt history as ``.attempts``. Of the host's
        classes, the category's, else its ``ProviderError``, else any: what it catches."""
        classes = self.classes
        cls = classes.get(category) or classes.get("provider_error")
        if cls is None and classes:
            cls = next(iter(classes.values()))
        if cls is None:
            if category == "ai_error":
                return ChainAbortedError(message, code, attempts, cause)
            error = ChainExhaustedError(message, code, attempts, cause)
            if category == "timeout":
                error.error_category = "timeout"
            return error
        made = _made(cls, message, code, cause)
        for name, value in (("attempts", attempts), ("code", code)):
            if name == "code" and getattr(made, "code", None) is not None:
                continue
            try:
                setattr(made, name, value)
            except (AttributeError, TypeError):  # a class that takes no attributes
                continue
        if cause is not None and made.__cause__ is None:
            made.__cause__ = cause
        return made


def _module_classes(module: Any) -> dict[str, type[BaseException]]:
    """The host's classes a module names as TORQ Console's manager imports them (none when
    they are the engine's own: a host that adopted them needs nothing more)."""
    found: dict[str, type[BaseException]] = {}
    for key, name in CATEGORY_CLASS_NAMES.items():
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and not _engine_class(cls):
            found[key] = cls
    return found


def raised_classes(given: Any, manager: Any = None) -> RaisedClasses:
    """Check ``error_classes``: None (look in ``manager``'s module, see the module
    docstring), a mapping of ``error_category`` to an exception class, or an object (a
    module) holding ``ProviderError``, ``AIResponseError`` and ``AITimeoutError``."""
    if given is None:
        module = sys.modules.get(type(manager).__module__) if manager is not None else None
        return RaisedClasses(_module_classes(module) if module is not None else {})
    if isinstance(given, Mapping):
        found: dict[str, Any] = {}
        for key, cls in given.items():
            if key not in CATEGORY_CLASS_NAMES:
                close = difflib.get_close_matches(str(key), list(CATEGORY_CLASS_NAMES), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(
                    f"error_classes: unknown category {key!r}{hint}; categories: "
                    + ", ".join(CATEGORY_CLASS_NAMES)
                )
            found[key] = cls
    else:
        found = {
            key: getattr(given, name)
            for key, name in CATEGORY_CLASS_NAMES.items()
            if getattr(given, name, None) is not None
        }
        if not found:
            raise TypeError(
                f"error_classes: {given!r} holds none of "
                + ", ".join(CATEGORY_CLASS_NAMES.values())
                + "; give a mapping of error_category to class"
            )
    for key, cls in found.items():
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"error_classes[{key!r}] must be an exception class, not {cls!r}")
    return RaisedClasses(found)
