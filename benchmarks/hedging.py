"""Hedged requests against a heavy tail: one deployment answers 95 % of requests in 50 ms and
5 % in 2 s (drawn at random per request, hedged copies included), and the same requests go
through a chain without hedging, with ``hedge: {after: 0.2}``, and with ``hedge: {after:
p95}`` (the step's 95th percentile, 1 s until it has 20 answers). Prints p50, p99, the
slowest request and the extra calls (copies sent per request) of each, async and sync.

Run: .venv/bin/python benchmarks/hedging.py [--requests 1000] [--concurrency 20]
     [--shells async,sync]

Goal: p99 <= 0.3 s with ``after: p95``, at <= 10 % extra calls.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from closedloop import closed_loop, p99
from common import start_simulator

from engine import GenerationMeta, LLMManager

CHAINS = {
    "no hedging": "steps:\n  - id: p\n    provider: tail\n    timeout: 10\n",
    "after: 0.2": "steps:\n  - id: p\n    provider: tail\n    timeout: 10\n"
    "    hedge: {after: 0.2}\n",
    "after: p95": "steps:\n  - id: p\n    provider: tail\n    timeout: 10\n"
    "    hedge: {after: p95}\n",
}
PROVIDERS = (
    'providers:\n  tail: {{kind: openai, base_url: "{base}/tail/v1", model: m, '
    "api_key_env: BENCH_KEY, max_in_flight: 512}}\n"
)


def script(seed: int, items: int) -> str:
    """The deployment's replies: 5 % take 2 s, the rest 50 ms, in a seeded random order."""
    draw = random.Random(seed)
    delays = [2.0 if draw.random() < 0.05 else 0.05 for _ in range(items)]
    lines = "".join(f"  - {{answer: {{text: ok, delay: {d}}}}}\n" for d in delays)
    return f"cycle: true\ntail:\n{lines}"


def folder_for(work: Path, label: str, base: str) -> Path:
    folder = work / label.replace(" ", "_").replace(":", "").replace(".", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "providers.yaml").write_text(PROVIDERS.format(base=base))
    (folder / "default.yaml").write_text(CHAINS[label])
    return folder


def extra_calls(metas: list[GenerationMeta]) -> float:
    """Copies sent beyond one per request, per request."""
    return sum(len(m.provider_attempts) - 1 for m in metas) / len(metas)


def run_async(
    folder: Path, total: int, concurrency: int
) -> tuple[list[float], list[GenerationMeta]]:
    metas: list[GenerationMeta] = []

    async def go() -> list[float]:
        async with LLMManager(config={"chains_dir": str(folder)}) as manager:

            async def one() -> bool:
                _, meta = await manager.agenerate_response("hi")
                metas.append(meta)
                return meta.error is None

            latencies, failed = await closed_loop(one, concurrency, total)
            assert failed == 0, f"{failed} requests failed"
            return latencies

    return asyncio.run(go()), metas


def run_sync(
    folder: Path, total: int, concurrency: int
) -> tuple[list[float], list[GenerationMeta]]:
    metas: list[GenerationMeta] = []
    latencies: list[float] = []
    with LLMManager(config={"chains_dir": str(folder)}) as manager:

        def one(_: int) -> None:
            start = time.perf_counter()
            _, meta = manager.generate_response("hi")
            latencies.append(time.perf_counter() - start)
            assert meta.error is None, meta.error
            metas.append(meta)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(total)))
    return latencies, metas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--shells", default="async,sync")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(
        f"{args.requests} requests, {args.concurrency} at once, against 95 % in 50 ms / "
        "5 % in 2 s (goal with after: p95: p99 <= 300 ms at <= 10 % extra calls)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, base = start_simulator(script(args.seed, 997), work)
        try:
            import os

            os.environ["BENCH_KEY"] = "bench"
            for shell in args.shells.split(","):
                run = run_async if shell == "async" else run_sync
                print(f"{shell}:")
                for label in CHAINS:
                    latencies, metas = run(folder_for(work, label, base), args.requests,
                                           args.concurrency)  # fmt: skip
                    print(
                        f"   {label:<11} p50 {statistics.median(latencies) * 1000:6.1f} ms   "
                        f"p99 {p99(latencies) * 1000:7.1f} ms   "
                        f"max {max(latencies) * 1000:7.1f} ms   "
                        f"extra calls {extra_calls(metas):6.1%}",
                        flush=True,
                    )
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


if __name__ == "__main__":
    main()
