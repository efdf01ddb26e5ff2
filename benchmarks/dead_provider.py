"""A dead first provider: what breakers save, and what sharing them through Redis costs.

Run: .venv/bin/python benchmarks/dead_provider.py [--requests 2000] [--concurrency 50]
                                                  [--dead refused|stall]

A 3-step chain (deepseek -> openai -> claude) whose first provider refuses connections (or
stalls until the attempt's 0.5 s timeout), against the simulator in its own process.
Reported for breakers off, breakers in process, and breakers in Redis (a redis-server
started for the run, when one is installed), and for the same chain without the dead
provider: requests/s, p50/p99 latency, and wasted attempts (calls to the dead provider).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from closedloop import closed_loop
from common import start_simulator

from engine import LLMManager

KEY = "bench-key"
SCRIPT = "openai:\n  - answer\nclaude:\n  - answer\ndeepseek:\n  - stall\ncycle: true\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chains(folder: Path, steps: str, breaker: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yaml").write_text(f"defaults: {{timeout: 0.5}}\nsteps: [{steps}]\n")
    off = (
        ""
        if breaker
        else "".join(
            f"  {p}: {{breaker: {{enabled: false}}}}\n" for p in ("deepseek", "openai", "claude")
        )
    )
    (folder / "providers.yaml").write_text("providers:\n" + off if off else "providers: {}\n")
    return folder


def run(label: str, config: dict[str, object], requests: int, concurrency: int) -> None:
    async def go() -> tuple[list[float], int, int, float]:
        manager = LLMManager(config=config)
        wasted = 0

        async def call() -> bool:
            nonlocal wasted
            _, meta = await manager.agenerate_response("hi", timeout=30)
            wasted += sum(
                1
                for a in meta.provider_attempts
                if a["provider"] == "deepseek" and a["status"] != "skipped"
            )
            return meta.error is None

        started = time.perf_counter()
        latencies, failed = await closed_loop(call, concurrency, requests)
        wall = time.perf_counter() - started
        await manager.aclose()
        return latencies, failed, wasted, wall

    latencies, failed, wasted, wall = asyncio.run(go())
    # "Once open": without the first waves, which were in flight before anything was known.
    settled = sorted(latencies[2 * concurrency :])
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    p99_settled = settled[int(len(settled) * 0.99) - 1] * 1000
    print(
        f"  {label:31} {requests / wall:7.1f} req/s  p50 {p50:6.2f} ms  p99 {p99:7.2f} ms"
        f"  (once settled {p99_settled:7.2f} ms)  wasted attempts {wasted:5d}  failed {failed}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--dead", choices=("refused", "stall"), default="refused")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, base = start_simulator(SCRIPT, folder)
        dead_url = (
            f"http://127.0.0.1:{free_port()}" if args.dead == "refused" else f"{base}/deepseek"
        )
        os.environ.update({
            "DEEPSEEK_BASE_URL": dead_url, "OPENAI_BASE_URL": f"{base}/openai/v1",
            "ANTHROPIC_BASE_URL": f"{base}/claude", "DEEPSEEK_API_KEY": KEY,
            "OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY,
        })  # fmt: skip
        redis_proc = None
        try:
            n, c = args.requests, args.concurrency
            print(f"{n} requests, concurrency {c}, first provider {args.dead}", flush=True)
            healthy = chains(folder / "healthy", "openai, claude", True)
            run("without the dead provider", {"chains_dir": str(healthy)}, n, c)
            off = chains(folder / "off", "deepseek, openai, claude", False)
            run("breakers off", {"chains_dir": str(off)}, n, c)
            on = chains(folder / "on", "deepseek, openai, claude", True)
            run("breakers in process", {"chains_dir": str(on)}, n, c)
            binary = shutil.which("redis-server")
            if binary is None:
                print("  (no redis-server installed: the Redis run is skipped)")
                return
            port = free_port()
            redis_proc = subprocess.Popen(
                [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            time.sleep(0.3)
            url = f"redis://127.0.0.1:{port}/0"
            health = {"backend": "redis", "url": url}
            run("breakers in Redis", {"chains_dir": str(on), "health": health}, n, c)
            run(
                "healthy chain, health in Redis",
                {"chains_dir": str(healthy), "health": health},
                n,
                c,
            )
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(10)
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
