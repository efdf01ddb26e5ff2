"""Streaming: engine vs raw httpx + the same SSE parser, on the same 200-chunk streams.

Run: .venv/bin/python benchmarks/stream_overhead.py [--requests N] [--rounds R] [--chunks C]

The simulator runs in its own process. "raw" is hand-written httpx streaming the OpenAI
wire format, parsed with httpx-sse and json (what the engine uses), collecting the text;
"engine" is ``LLMManager.stream`` (sync) and ``astream`` (async) through a one-step chain.
Runs alternate; figures are medians over the rounds. Reported: time to first token (ratio;
target <= 1.10) and the engine's extra time per chunk after the first (target <= 5 us).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from common import start_simulator
from httpx_sse import EventSource

from engine import LLMManager, TextDelta

KEY = "bench-key"
BODY = {"model": "deepseek-chat", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Tell me a story."}]}  # fmt: skip
Timed = tuple[float, float]  # seconds to the first token, seconds in all


def raw_sync(url: str) -> Callable[[], Timed]:
    client = httpx.Client(headers={"Authorization": f"Bearer {KEY}"})

    def run() -> Timed:
        start = time.perf_counter()
        first = 0.0
        texts = []
        with client.stream("POST", url, json=BODY, timeout=30) as response:
            for sse in EventSource(response).iter_sse():
                if sse.data == "[DONE]":
                    break
                chunk = json.loads(sse.data)
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not texts:
                            first = time.perf_counter() - start
                        texts.append(piece)
        assert texts
        return first, time.perf_counter() - start

    return run


def raw_async(url: str) -> Callable[[], Awaitable[Timed]]:
    client: list[httpx.AsyncClient] = []

    async def run() -> Timed:
        if not client:
            client.append(httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}))
        start = time.perf_counter()
        first = 0.0
        texts = []
        async with client[0].stream("POST", url, json=BODY, timeout=30) as response:
            async for sse in EventSource(response).aiter_sse():
                if sse.data == "[DONE]":
                    break
                chunk = json.loads(sse.data)
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not texts:
                            first = time.perf_counter() - start
                        texts.append(piece)
        assert texts
        return first, time.perf_counter() - start

    return run


def engine_sync(manager: LLMManager) -> Callable[[], Timed]:
    def run() -> Timed:
        start = time.perf_counter()
        first = 0.0
        count = 0
        for event in manager.stream([{"role": "user", "content": "Tell me a story."}]):
            if isinstance(event, TextDelta):
                if not count:
                    first = time.perf_counter() - start
                count += 1
        assert count
        return first, time.perf_counter() - start

    return run


def engine_async(manager: LLMManager) -> Callable[[], Awaitable[Timed]]:
    async def run() -> Timed:
        start = time.perf_counter()
        first = 0.0
        count = 0
        async for event in manager.astream([{"role": "user", "content": "Tell me a story."}]):
            if isinstance(event, TextDelta):
                if not count:
                    first = time.perf_counter() - start
                count += 1
        assert count
        return first, time.perf_counter() - start

    return run


def medians(samples: list[Timed]) -> Timed:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def report(label: str, raw: Timed, engine: Timed, chunks: int) -> None:
    per_chunk = ((engine[1] - engine[0]) - (raw[1] - raw[0])) / (chunks - 1) * 1e6
    print(
        f"{label:6} ttft raw {raw[0] * 1e3:7.3f} ms engine {engine[0] * 1e3:7.3f} ms "
        f"ratio {engine[0] / raw[0]:5.3f} | whole stream raw {raw[1] * 1e3:7.2f} ms "
        f"engine {engine[1] * 1e3:7.2f} ms | engine per chunk {per_chunk:+6.2f} us",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40, help="streams per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()
    text = "word " * args.chunks
    script = f"deepseek:\n  - answer: {{text: '{text}', chunks: {args.chunks}}}\ncycle: true\n"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, base = start_simulator(script, folder)
        chains = folder / "chains"
        chains.mkdir()
        (chains / "default.yaml").write_text("steps: [deepseek]\n")
        os.environ.update({"DEEPSEEK_BASE_URL": f"{base}/deepseek", "DEEPSEEK_API_KEY": KEY})
        try:
            manager = LLMManager(config={"chains_dir": str(chains)})
            url = f"{base}/deepseek/chat/completions"
            print(f"{args.rounds} rounds x {args.requests} streams of {args.chunks} chunks")
            raw, engine = raw_sync(url), engine_sync(manager)
            raw(), engine()
            raw_rounds: list[Timed] = []
            engine_rounds: list[Timed] = []
            for _ in range(args.rounds):
                raw_rounds.append(medians([raw() for _ in range(args.requests)]))
                engine_rounds.append(medians([engine() for _ in range(args.requests)]))
            report("sync", medians(raw_rounds), medians(engine_rounds), args.chunks)

            async def run_async() -> None:
                araw, aengine = raw_async(url), engine_async(manager)
                await araw()
                await aengine()
                raw_rounds.clear()
                engine_rounds.clear()
                for _ in range(args.rounds):
                    raw_rounds.append(medians([await araw() for _ in range(args.requests)]))
                    engine_rounds.append(medians([await aengine() for _ in range(args.requests)]))
                report("async", medians(raw_rounds), medians(engine_rounds), args.chunks)
                await manager.aclose()

            asyncio.run(run_async())
            manager.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


if __name__ == "__main__":
    main()
