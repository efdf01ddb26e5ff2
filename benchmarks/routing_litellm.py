"""LiteLLM's Router on the routing benchmark's calls, run in LiteLLM's own virtual environment
(``routing.py --litellm`` creates it and runs this).

Run: VENV/bin/python benchmarks/routing_litellm.py PART STRATEGY BASE_URL TOTAL RATE
PART is quotas (STRATEGY usage-based-routing-v2, or fallbacks) or latency (simple-shuffle or
latency-based-routing). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch over the network


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.99) - 1, 0)]


def deployment(name: str, base: str, rpm: int | None = None) -> dict:
    params = {"model": f"openai/m-{name}", "api_base": f"{base}/{name}/v1", "api_key": "k"}
    if rpm:
        params["rpm"] = rpm
    return {"model_name": "chat", "litellm_params": params}


def main() -> None:
    part, strategy, base, total, rate = sys.argv[1:6]
    total_n, per_minute = int(total), float(rate)
    import litellm
    from litellm import Router

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    messages = [{"role": "user", "content": "hi"}]
    if part == "quotas" and strategy == "fallbacks":
        first, second = deployment("east", base), deployment("west", base)
        second["model_name"] = "backup"
        router = Router(model_list=[first, second], fallbacks=[{"chat": ["backup"]}],
                        num_retries=0, timeout=30)  # fmt: skip
    elif part == "quotas":
        router = Router(
            model_list=[deployment("east", base, 600), deployment("west", base, 600)],
            routing_strategy=strategy, num_retries=0, timeout=30,
        )  # fmt: skip
    else:
        router = Router(
            model_list=[deployment(n, base) for n in ("fast1", "slow", "fast2")],
            routing_strategy=strategy, num_retries=0, timeout=30,
        )  # fmt: skip
    latencies: list[float] = []
    answered = 0

    async def one() -> None:
        nonlocal answered
        started = time.perf_counter()
        try:
            await router.acompletion(model="chat", messages=messages)
            answered += 1
        except Exception:
            pass
        latencies.append(time.perf_counter() - started)

    async def run_open() -> None:
        gap, begin, tasks = 60.0 / per_minute, time.perf_counter(), []
        for index in range(total_n):
            delay = begin + index * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)

    async def run_closed() -> None:
        remaining = 50

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        await asyncio.gather(*(worker() for _ in range(8)))  # warm
        latencies.clear()
        remaining = total_n
        await asyncio.gather(*(worker() for _ in range(8)))

    asyncio.run(run_open() if part == "quotas" else run_closed())
    print(json.dumps({"answered": answered, "p50_ms": statistics.median(latencies) * 1000,
                      "p99_ms": p99(latencies) * 1000}))  # fmt: skip


if __name__ == "__main__":
    main()
