"""Engine overhead per request with instant in-process providers (no I/O at all).

Run: .venv/bin/python benchmarks/engine_overhead.py [--requests N]

Prints microseconds per request for the success path (1 attempt) and a 3-hop fallback
(3 failed attempts, then success), through FallbackExecutor and through LLMManager.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import measure

from engine import FallbackExecutor, GenerationMeta, LLMManager, ProviderError


class Instant:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def generate_response(self, *, prompt: str, timeout: float) -> str:
        if self.fail:
            raise ProviderError("unavailable", code="503")
        return "answer"


class AsyncInstant(Instant):
    async def generate_response(self, *, prompt: str, timeout: float) -> str:  # type: ignore[override]
        return super().generate_response(prompt=prompt, timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()

    ok = {"deepseek": Instant(False), "openai": Instant(False)}
    hops = {name: Instant(True) for name in ("deepseek", "openai", "claude")}
    hops["ollama"] = Instant(False)
    manager_ok = LLMManager(config={"providers": ok})
    # Breakers off for the fallback row: with them on, the failing providers would soon be
    # skipped without a call, which is a different (cheaper) path; it has its own row.
    manager_hops = LLMManager(config={"providers": hops, "health": {"backend": "off"}})
    manager_skips = LLMManager(config={"providers": dict(hops)})
    chain = manager_ok.chain_for("direct")

    executor_ok = FallbackExecutor(ok.get)
    executor_hops = FallbackExecutor(hops.get)
    rows = [
        (
            "executor, success (1 attempt)",
            lambda: executor_ok.execute(chain, "p", GenerationMeta(), 60),
        ),
        (
            "executor, 3-hop fallback (4 attempts)",
            lambda: executor_hops.execute(chain, "p", GenerationMeta(), 60),
        ),
        ("LLMManager.generate_response, success", lambda: manager_ok.generate_response("p")),
        (
            "LLMManager.generate_response, 3-hop fallback",
            lambda: manager_hops.generate_response("p"),
        ),
        (
            "LLMManager, 3 open breakers skipped, then answer",
            lambda: manager_skips.generate_response("p"),
        ),
    ]
    print(f"{'path':48} {'us/request':>10}")
    for label, fn in rows:
        print(f"{label:48} {measure(fn, args.requests):10.1f}")

    async_ok = LLMManager(config={"providers": {"deepseek": AsyncInstant(False)}})

    async def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await async_ok.agenerate_response("p")
        return (time.perf_counter() - start) / n * 1e6

    label = "LLMManager.agenerate_response, success (async)"
    print(f"{label:48} {asyncio.run(batch(args.requests)):10.1f}")


if __name__ == "__main__":
    main()
