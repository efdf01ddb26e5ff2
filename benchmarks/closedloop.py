"""The closed loop both load benchmarks run (no dependencies: it also runs in the separate
virtual environment that holds LiteLLM)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable


async def closed_loop(
    call: Callable[[], Awaitable[bool]], concurrency: int, total: int
) -> tuple[list[float], int]:
    """``concurrency`` workers sending requests back to back until ``total`` are done;
    returns every latency (seconds) and how many requests failed."""
    latencies: list[float] = []
    failed = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, failed
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            ok = await call()
            latencies.append(time.perf_counter() - start)
            failed += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failed


async def open_loop(
    call: Callable[[], Awaitable[bool]], total: int, per_minute: float
) -> tuple[list[float], int]:
    """``total`` requests, one every ``60 / per_minute`` seconds whatever the answers take;
    returns every latency (seconds) and how many requests failed."""
    latencies: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        start = time.perf_counter()
        ok = await call()
        latencies.append(time.perf_counter() - start)
        failed += not ok

    gap, begin, tasks = 60.0 / per_minute, time.perf_counter(), []
    for index in range(total):
        delay = begin + index * gap - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, failed


def p99(latencies: list[float]) -> float:
    """The 99th percentile of ``latencies``."""
    ordered = sorted(latencies)
    return ordered[max(int(len(ordered) * 0.99) - 1, 0)]


def summary(latencies: list[float], failed: int, wall: float, cpu: float) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), CPU per request (ms), answered and failed."""
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
        "cpu": cpu / len(latencies) * 1000,
        "ok": len(latencies) - failed,
        "failed": failed,
    }
