"""LiteLLM's Router on the same calls as ``load.py``, run in LiteLLM's own virtual
environment (``load.py --litellm`` creates it and runs this).

Run: VENV/bin/python benchmarks/litellm_load.py BASE_URL CONCURRENCY TOTAL
Prints one JSON line: the same figures as load.py prints for its clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from closedloop import closed_loop, summary

KEY = "load-key"


def main() -> None:
    base, concurrency, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import litellm
    from litellm import Router

    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("LiteLLM Router").setLevel(logging.ERROR)
    router = Router(
        model_list=[
            {"model_name": "chat", "litellm_params": {
                "model": "openai/deepseek-chat", "api_base": f"{base}/deepseek", "api_key": KEY}},
            {"model_name": "backup", "litellm_params": {
                "model": "openai/gpt-4.1-mini", "api_base": f"{base}/openai/v1", "api_key": KEY}},
        ],
        fallbacks=[{"chat": ["backup"]}],
        num_retries=0,
        timeout=30,
    )  # fmt: skip
    messages = [{"role": "user", "content": "What is 2+2?"}]

    async def call() -> bool:
        try:
            reply = await router.acompletion(model="chat", messages=messages)
        except Exception:
            return False
        return bool(reply.choices[0].message.content)

    async def run() -> dict[str, float]:
        await closed_loop(call, min(concurrency, 20), min(total, 100))
        cpu0, started = time.process_time(), time.perf_counter()
        latencies, failed = await closed_loop(call, concurrency, total)
        return summary(latencies, failed, time.perf_counter() - started, time.process_time() - cpu0)

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
