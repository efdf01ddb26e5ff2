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

from closedloop import closed_loop, open_loop, p99

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch over the network


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

    async def call() -> bool:
        try:
            await router.acompletion(model="chat", messages=messages)
        except Exception:  # a refusal or a 429 that got through: counted as not answered
            return False
        return True

    async def run() -> tuple[list[float], int]:
        if part == "quotas":
            return await open_loop(call, total_n, per_minute)
        await closed_loop(call, 8, 50)  # warm: connections, first measurements
        return await closed_loop(call, 8, total_n)

    latencies, failed = asyncio.run(run())
    print(json.dumps({"answered": len(latencies) - failed,
                      "p50_ms": statistics.median(latencies) * 1000,
                      "p99_ms": p99(latencies) * 1000}))  # fmt: skip


if __name__ == "__main__":
    main()
