"""Throughput under concurrency: an async closed loop against the simulator, in one run.

Run: .venv/bin/python benchmarks/load.py [--levels 1,50,200,1000] [--requests N]
                                          [--limit 256] [--scenarios success,429]

The simulator runs in its own process (``torq-fallback simulator``), and its CPU use is
reported next to each run, so that a saturated server would show (it never should: the
client does far more work per request than the server). Each level runs ``C`` workers that
send requests back to back until the level's total is done, for three clients, each with a
2-step chain (``deepseek``, then ``openai``):

- ``raw``: hand-written httpx, default settings (one ``AsyncClient`` per provider);
- ``raw+limit``: the same behind an ``asyncio.Semaphore(limit)`` per provider;
- ``aiohttp+limit``: hand-written aiohttp (the engine's async transport), same limit;
- ``engine``: ``LLMManager.agenerate_response`` (bulkhead ``max_in_flight`` = limit), on
  its default async transport (HTTP/1.1 on asyncio);
- ``engine-aiohttp``: the same with ``async_transport: aiohttp`` (not run unless named in
  ``--clients``).

With ``--litellm``, LiteLLM's Router makes the same calls (same chain as a fallback list, no
retries, 30 s timeout) from its own virtual environment, ``.bench/litellm-venv``, made once.

Scenarios: ``success`` (deepseek answers) and ``429`` (30 % of deepseek's replies are 429s,
in a fixed pseudo-random order, and the request falls back to openai). Every attempt has
a 30 s timeout. Reported per client: requests answered and failed, requests/s, p50 and p99
latency, client CPU per request, and the simulator's CPU share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from closedloop import closed_loop, summary
from common import litellm_python, start_simulator

from engine import LLMManager
from engine.providers.bulkhead import DEFAULT_MAX_IN_FLIGHT

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "load-key"
PROVIDERS = ("deepseek", "openai")
TIMEOUT = 30.0
Call = Callable[[], Awaitable[bool]]


def script(share_429: float) -> str:
    draw = random.Random(42)
    items = ["rate_limit" if draw.random() < share_429 else "answer" for _ in range(100)]
    lines = "".join(f"  - {item}\n" for item in items)
    return f"deepseek:\n{lines}openai:\n  - answer\ncycle: true\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_client(base: str, limit: int | None) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """Hand-written httpx doing what the chain does: deepseek, then openai on failure."""
    urls = [f"{base}/deepseek/chat/completions", f"{base}/openai/v1/chat/completions"]
    clients = [httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) for _ in urls]
    gates = [asyncio.Semaphore(limit) for _ in urls] if limit else None
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "What is 2+2?"}]}

    async def one(index: int) -> bool:
        reply = await clients[index].post(urls[index], json=body, timeout=TIMEOUT)
        data = reply.json()
        return reply.status_code == 200 and bool(data["choices"][0]["message"]["content"])

    async def call() -> bool:
        for index in range(len(urls)):
            try:
                if gates is None:
                    ok = await one(index)
                else:
                    async with gates[index]:
                        ok = await one(index)
            except httpx.HTTPError:
                ok = False
            if ok:
                return True
        return False

    async def close() -> None:
        for client in clients:
            await client.aclose()

    return call, close


def aiohttp_client(base: str, limit: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """Hand-written aiohttp (the engine's async transport) behind the same limit."""
    import aiohttp

    urls = [f"{base}/deepseek/chat/completions", f"{base}/openai/v1/chat/completions"]
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    sessions: list[aiohttp.ClientSession] = []
    gates = [asyncio.Semaphore(limit) for _ in urls]

    async def call() -> bool:
        if not sessions:
            sessions.extend(
                aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {KEY}"},
                    connector=aiohttp.TCPConnector(limit=limit),
                )
                for _ in urls
            )
        for index, url in enumerate(urls):
            try:
                async with gates[index], sessions[index].post(url, json=body) as reply:
                    data = await reply.json()
                    if reply.status == 200 and data["choices"][0]["message"]["content"]:
                        return True
            except aiohttp.ClientError:
                pass
        return False

    async def close() -> None:
        for session in sessions:
            await session.close()

    return call, close


def engine_client(manager: LLMManager) -> tuple[Call, Callable[[], Awaitable[None]]]:
    async def call() -> bool:
        _, meta = await manager.agenerate_response("What is 2+2?", timeout=60)
        return meta.error is None

    return call, manager.aclose


def measure(
    label: str, make: Callable[[], tuple[Call, Callable[[], Awaitable[None]]]],
    concurrency: int, total: int, sim_pid: int,
) -> dict[str, float]:  # fmt: skip
    async def run() -> tuple[list[float], int, float]:
        call, close = make()
        await closed_loop(call, min(concurrency, 20), min(total, 100))  # warm connections
        started = time.perf_counter()
        latencies, failed = await closed_loop(call, concurrency, total)
        wall = time.perf_counter() - started
        await close()
        return latencies, failed, wall

    cpu0, sim0 = time.process_time(), cpu_seconds(sim_pid)
    latencies, failed, wall = asyncio.run(run())
    cpu, sim = time.process_time() - cpu0, cpu_seconds(sim_pid) - sim0
    row = {**summary(latencies, failed, wall, cpu), "sim": sim / wall * 100}
    show(label, row)
    return row


def litellm_row(base: str, concurrency: int, total: int, sim_pid: int) -> dict[str, float]:
    """The same calls through LiteLLM's Router, in its own virtual environment."""
    python = litellm_python()
    sim0, started = cpu_seconds(sim_pid), time.perf_counter()
    out = subprocess.run(
        [str(python), str(HERE / "litellm_load.py"), base, str(concurrency), str(total)],
        capture_output=True, text=True, check=True, cwd=HERE,
    )  # fmt: skip
    wall = time.perf_counter() - started
    row = {**json.loads(out.stdout.strip().splitlines()[-1])}
    row["sim"] = (cpu_seconds(sim_pid) - sim0) / wall * 100
    show("litellm", row)
    return row


def show(label: str, row: dict[str, float]) -> None:
    print(
        f"  {label:10} {row['ok']:6.0f} ok {row['failed']:5.0f} failed  {row['rps']:8.1f} req/s"
        f"  p50 {row['p50']:8.1f} ms  p99 {row['p99']:8.1f} ms  cpu {row['cpu']:6.2f} ms/req"
        f"  simulator {row['sim']:4.0f}% of a core",
        flush=True,
    )


def clients(
    base: str, chains: Path, limit: int
) -> dict[str, Callable[[], tuple[Call, Callable[[], Awaitable[None]]]]]:
    return {
        "raw": lambda: raw_client(base, None),
        "raw+limit": lambda: raw_client(base, limit),
        "aiohttp+limit": lambda: aiohttp_client(base, limit),
        "engine": lambda: engine_client(LLMManager(config={"chains_dir": chains})),
        "engine-aiohttp": lambda: engine_client(
            LLMManager(config={"chains_dir": chains.parent / "chains-aiohttp"})
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,50,200,1000")
    parser.add_argument("--requests", type=int, default=0, help="per level (default: scaled)")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_MAX_IN_FLIGHT, help="in-flight limit per provider"
    )
    parser.add_argument("--scenarios", default="success,429")
    parser.add_argument("--clients", default="raw,raw+limit,aiohttp+limit,engine")
    parser.add_argument(
        "--litellm", action="store_true",
        help="also run LiteLLM's Router on the same calls (in .bench/litellm-venv, made once)",
    )  # fmt: skip
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    chosen = args.clients.split(",")
    for name in args.scenarios.split(","):
        share = {"success": 0.0, "429": 0.3}[name]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            proc, base = start_simulator(script(share), folder)
            chains = folder / "chains"
            chains.mkdir()
            (chains / "default.yaml").write_text(
                f"defaults: {{timeout: {TIMEOUT}}}\nsteps: [deepseek, openai]\n"
            )
            (chains / "providers.yaml").write_text(
                "providers:\n"
                + "".join(f"  {p}: {{max_in_flight: {args.limit}}}\n" for p in PROVIDERS)
            )
            twin = folder / "chains-aiohttp"  # the same chain on the aiohttp transport
            twin.mkdir()
            (twin / "default.yaml").write_text((chains / "default.yaml").read_text())
            (twin / "providers.yaml").write_text(
                "providers:\n"
                + "".join(
                    f"  {p}: {{max_in_flight: {args.limit}, async_transport: aiohttp}}\n"
                    for p in PROVIDERS
                )
            )
            os.environ.update({
                "DEEPSEEK_BASE_URL": f"{base}/deepseek", "OPENAI_BASE_URL": f"{base}/openai/v1",
                "DEEPSEEK_API_KEY": KEY, "OPENAI_API_KEY": KEY,
            })  # fmt: skip
            try:
                print(f"scenario {name} (limit {args.limit})", flush=True)
                for level in levels:
                    total = args.requests or max(500, 3 * level)
                    print(f" concurrency {level}, {total} requests", flush=True)
                    makers = clients(base, chains, args.limit)
                    rows = {c: measure(c, makers[c], level, total, proc.pid) for c in chosen}
                    if args.litellm:
                        rows["litellm"] = litellm_row(base, level, total, proc.pid)
                    for mine in ("engine", "engine-aiohttp"):
                        for ref in ("raw+limit", "aiohttp+limit"):
                            if mine in rows and ref in rows:
                                ratio = rows[ref]["rps"] / rows[mine]["rps"]
                                print(f"  {mine} / {ref}: time per request {ratio:.2f}x")
                    for other in ("raw", "litellm"):
                        if "engine" in rows and other in rows:
                            e, r = rows["engine"], rows[other]
                            print(f"  engine / {other}: throughput {e['rps'] / r['rps']:.2f}x")
            finally:
                proc.terminate()
                proc.wait(timeout=10)
                if proc.stdout:
                    proc.stdout.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
