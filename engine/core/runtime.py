"""Clock, sleep and randomness, injected so that retries and deadlines are testable without
waiting, and the backoff policy that uses them."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Runtime", "backoff_bound", "backoff_delay"]


@dataclass(frozen=True)
class Runtime:
    """What the executor asks of the outside world besides providers.

    ``monotonic`` measures latency and deadlines; ``wall`` stamps records; ``sleep`` and
    ``asleep`` wait between retries (sync and async); ``random`` draws the jitter in [0, 1).
    """

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)


def backoff_delay(
    retry: int, base: float, cap: float, retry_after: float | None, draw: Callable[[], float]
) -> float:
    """Seconds to wait before retry number ``retry`` (0-based) of the same step.

    Full jitter: uniform in ``[0, min(cap, base * 2**retry))``. A ``retry_after`` from the
    provider is a floor: waiting less would be refused again. The result may exceed ``cap``
    only through ``retry_after``; the machine's guard then declines the retry.
    """
    jitter = draw() * min(cap, base * (2.0**retry))
    if retry_after is not None and retry_after > jitter:
        return float(retry_after)
    return jitter


def backoff_bound(retry: int, base: float, cap: float, retry_after: float | None) -> float:
    """The longest `backoff_delay` can be for these inputs: the jitter's ceiling, or
    the ``retry_after`` floor when that is longer.

    Whether a retry fits (under ``backoff_max``, before the deadline) is decided on this
    bound, never on the jittered draw, so the path a request takes depends only on the
    outcomes and the clock: the jitter changes how long the engine sleeps, nothing else.
    """
    ceiling = min(cap, base * (2.0**retry))
    return max(ceiling, float(retry_after)) if retry_after is not None else ceiling
