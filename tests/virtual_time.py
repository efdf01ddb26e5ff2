"""An asyncio event loop whose clock jumps to the next timer whenever nothing is ready, so
that races of in-process coroutines (``asyncio.sleep``, ``asyncio.timeout``) run at once and
deterministically, on virtual seconds. Only for code that does no real I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector loop on virtual time (``time()`` starts at 1000)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def _run_once(self) -> None:
        ready: Any = getattr(self, "_ready")  # noqa: B009 - the loop's own queue
        scheduled: Any = getattr(self, "_scheduled")  # noqa: B009
        if not ready:
            due = [h.when() for h in scheduled if not h.cancelled()]
            if due and min(due) > self.now:
                self.now = min(due)  # nothing to do until then: go there at once
        super()._run_once()  # type: ignore[misc]


def run_virtual(coro: Coroutine[Any, Any, T]) -> tuple[T, VirtualTimeLoop]:
    """Run ``coro`` on a fresh virtual-time loop; return its result and the loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro), loop
    finally:
        loop.close()
