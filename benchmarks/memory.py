"""Memory of the whole process: flat over many requests, and what many open streams hold.

Run: .venv/bin/python benchmarks/memory.py [--requests 100000] [--concurrency 50]
     [--streams 1000]

1. ``--requests`` async requests through ``LLMManager.agenerate_response`` (a 2-step chain,
   the simulator answering), ``--concurrency`` at once: the process's resident memory and
   the objects the garbage collector tracks, every tenth of the run. Flat means the last
   tenth holds no more than the first after warm-up (allocator noise aside).
2. ``--streams`` streams open at once through ``LLMManager.astream`` (each answer in 20
   chunks, 50 ms apart, so that they all overlap): resident memory before, with every
   stream open (after the first chunk of each), and after they end; per stream.

The simulator runs in its own process; only the client is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from pathlib import Path

from closedloop import closed_loop
from common import start_simulator

from engine import LLMManager

SCRIPT = (
    "cycle: true\n"
    "deepseek:\n  - {answer: {text: 'the answer, streamed in pieces', chunks: 20, "
    "chunk_interval: 0.05}}\n"
    "openai:\n  - answer\n"
)


def rss_mb() -> float:
    """Resident memory of this process, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def requests(manager: LLMManager, total: int, concurrency: int) -> None:
    async def one() -> bool:
        _, meta = await manager.agenerate_response("hi")
        return meta.error is None

    await closed_loop(one, concurrency, 2000)  # warm-up: connections, caches, first lines
    gc.collect()
    tenth = total // 10
    print(f"1. {total} requests, {concurrency} at once (after 2,000 to warm up)")
    print(f"   {'done':>8}  {'rss MB':>8}  {'gc objects':>10}  {'req/s':>7}")
    print(f"   {0:>8}  {rss_mb():8.1f}  {len(gc.get_objects()):10d}")
    for step in range(1, 11):
        start = time.perf_counter()
        _, failed = await closed_loop(one, concurrency, tenth)
        rate = tenth / (time.perf_counter() - start)
        assert failed == 0, f"{failed} requests failed"
        gc.collect()
        print(f"   {step * tenth:>8}  {rss_mb():8.1f}  {len(gc.get_objects()):10d}  {rate:7.0f}")


async def streams(manager: LLMManager, count: int) -> None:
    gc.collect()
    before = rss_mb()
    opened = asyncio.Event()
    started = 0
    peak = before

    async def one() -> None:
        nonlocal started, peak
        stream = manager.astream([{"role": "user", "content": "hi"}])
        first = True
        async for _ in stream:
            if first:
                first = False
                started += 1
                if started == count:
                    peak = rss_mb()  # every stream is open now
                    opened.set()
        assert stream.text, stream.meta.error

    print(f"2. {count} streams open at once (20 chunks each, 50 ms apart)")
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    took = time.perf_counter() - start
    gc.collect()
    after = rss_mb()
    print(f"   rss before {before:.1f} MB, all {count} open {peak:.1f} MB, after {after:.1f} MB")
    print(f"   {(peak - before) * 1000 / count:.1f} KB per open stream; all done in {took:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_simulator(SCRIPT, Path(tmp))
        try:
            os.environ.update(
                DEEPSEEK_BASE_URL=f"{base}/deepseek", OPENAI_BASE_URL=f"{base}/openai/v1",
                DEEPSEEK_API_KEY="bench", OPENAI_API_KEY="bench",
            )  # fmt: skip

            chains = Path(tmp) / "chains"
            chains.mkdir()
            (chains / "default.yaml").write_text("steps: [deepseek, openai]\n")
            # Room for every stream at once (the default bulkhead would queue most of them).
            (chains / "providers.yaml").write_text(
                f"providers:\n  deepseek: {{max_in_flight: {args.streams + 50}}}\n"
            )

            async def run() -> None:
                config = {"chains_dir": str(chains)}
                if args.requests:
                    async with LLMManager(config=config) as manager:
                        await requests(manager, args.requests, args.concurrency)
                if args.streams:
                    async with LLMManager(config=config) as manager:
                        await streams(manager, args.streams)

            asyncio.run(run())
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


if __name__ == "__main__":
    main()
