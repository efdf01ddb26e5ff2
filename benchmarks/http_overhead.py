"""Engine vs raw httpx, making the same HTTP calls to the simulator, in one run.

Run: .venv/bin/python benchmarks/http_overhead.py [--requests N] [--rounds R]

The simulator runs in its own process (``torq-fallback simulator``) so that the server
does not compete with the client for the interpreter. Two scenarios:

- success: DeepSeek answers (1 HTTP call per request);
- 3-hop fallback: DeepSeek, OpenAI and Claude answer 503, Ollama answers (4 calls).

For each, "raw" is hand-written httpx (one reused client per provider, the same JSON body
and headers, the reply parsed) and "engine" is ``LLMManager.generate_response`` (sync) or
``agenerate_response`` (async). Runs alternate between the two to cancel drift; the
figure is the median time per request over the rounds. Targets: ratio <= 1.15 on the
success path and <= 1.25 on the fallback path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from common import start_simulator

from engine import LLMManager

SUCCESS = "deepseek:\n  - answer\ncycle: true\n"
FALLBACK = (
    "deepseek:\n  - unavailable\nopenai:\n  - unavailable\nclaude:\n  - unavailable\n"
    "ollama:\n  - answer\ncycle: true\n"
)
KEY = "bench-key"


def raw_calls(
    base: str, names: list[str]
) -> tuple[Callable[[], str], Callable[[], Awaitable[str]]]:
    """Hand-written httpx doing what the chain does: try each provider until one answers."""
    bearer = {"Authorization": f"Bearer {KEY}"}
    anthropic = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    specs = {
        "deepseek": (f"{base}/deepseek/chat/completions", bearer, "openai"),
        "openai": (f"{base}/openai/v1/chat/completions", bearer, "openai"),
        "claude": (f"{base}/claude/v1/messages", anthropic, "anthropic"),
        "ollama": (f"{base}/ollama/api/chat", {}, "ollama"),
    }
    models = {"deepseek": "deepseek-chat", "openai": "gpt-4.1-mini", "claude": "claude-sonnet-4-5",
              "ollama": "llama3.2"}  # fmt: skip
    clients = {n: httpx.Client(headers=specs[n][1]) for n in names}
    aclients: dict[str, httpx.AsyncClient] = {}

    def body(name: str) -> dict[str, object]:
        msg = [{"role": "user", "content": "What is 2+2?"}]
        if specs[name][2] == "anthropic":
            return {"model": models[name], "max_tokens": 4096, "messages": msg}
        if specs[name][2] == "ollama":
            return {"model": models[name], "messages": msg, "stream": False}
        return {"model": models[name], "messages": msg}

    def text(name: str, data: dict) -> str:
        kind = specs[name][2]
        if kind == "openai":
            return str(data["choices"][0]["message"]["content"])
        if kind == "anthropic":
            return str(data["content"][0]["text"])
        return str(data["message"]["content"])

    def sync() -> str:
        for name in names:
            reply = clients[name].post(specs[name][0], json=body(name), timeout=30)
            data = reply.json()
            if reply.status_code == 200:
                return text(name, data)
        raise RuntimeError("all failed")

    async def asynchronous() -> str:
        for name in names:
            client = aclients.get(name)
            if client is None:
                client = aclients[name] = httpx.AsyncClient(headers=specs[name][1])
            reply = await client.post(specs[name][0], json=body(name), timeout=30)
            data = reply.json()
            if reply.status_code == 200:
                return text(name, data)
        raise RuntimeError("all failed")

    return sync, asynchronous


def timed(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def atimed(fn: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


def scenario(label: str, script: str, names: list[str], requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_simulator(script, Path(tmp))
        try:
            env = {
                "DEEPSEEK_BASE_URL": f"{base}/deepseek",
                "OPENAI_BASE_URL": f"{base}/openai/v1",
                "ANTHROPIC_BASE_URL": f"{base}/claude",
                "OLLAMA_HOST": f"{base}/ollama",
                "DEEPSEEK_API_KEY": KEY,
                "OPENAI_API_KEY": KEY,
                "ANTHROPIC_API_KEY": KEY,
            }
            os.environ.update(env)
            # Breakers on (the default) for the success path; off for the fallback path: the
            # raw client makes every call, so the engine must too (with breakers on, the
            # failing providers would soon be skipped without a call).
            health = {"backend": "off" if len(names) > 1 else "local"}
            manager = LLMManager(config={"health": health})
            raw_sync, raw_async = raw_calls(base, names)
            assert manager.generate_response("What is 2+2?")[1].error is None
            assert len(manager.generate_response("w")[1].provider_attempts) == len(names)
            raw_sync()
            engine_us, raw_us = [], []
            for _ in range(rounds):
                raw_us.append(timed(raw_sync, requests))
                engine_us.append(timed(lambda: manager.generate_response("What is 2+2?"), requests))
            report(f"{label}, sync", raw_us, engine_us)

            async def run_async() -> None:
                await raw_async()
                await manager.agenerate_response("What is 2+2?")
                a_engine, a_raw = [], []
                for _ in range(rounds):
                    a_raw.append(await atimed(raw_async, requests))
                    a_engine.append(
                        await atimed(lambda: manager.agenerate_response("What is 2+2?"), requests)
                    )
                report(f"{label}, async", a_raw, a_engine)
                await manager.aclose()

            asyncio.run(run_async())
            manager.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


def report(label: str, raw: list[float], engine: list[float]) -> None:
    r, e = statistics.median(raw), statistics.median(engine)
    print(f"{label:34} raw {r:8.1f} us  engine {e:8.1f} us  ratio {e / r:5.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{args.rounds} rounds x {args.requests} requests, median per request", flush=True)
    scenario("success (1 call)", SUCCESS, ["deepseek"], args.requests, args.rounds)
    scenario(
        "3-hop fallback (4 calls)",
        FALLBACK,
        ["deepseek", "openai", "claude", "ollama"],
        args.requests,
        args.rounds,
    )


if __name__ == "__main__":
    main()
