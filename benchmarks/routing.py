"""Proactive routing, measured: quotas against rate-limited deployments, the latency strategy
against a slow member, and what choosing a pool member costs in process.

Run: .venv/bin/python benchmarks/routing.py [--requests 1000] [--rate 900] [--litellm]
     [--only quotas,latency,cost] [--instructions]

1. Quotas: two deployments the simulator limits to 600 requests per minute (429 beyond),
   1,000 requests offered at 900 per minute (an open loop). A fallback chain (east, then
   west; breakers on) against a pool of both with ``quota: {rpm: 600}`` each. Counts the
   429s received, the requests answered and the p99.
2. Latency: three members, one 5x slower (20 ms against 100 ms). An equal-weight pool
   (a random draw, as round robin) against the ``latency`` strategy, on p50 and p99; and a
   pool of the two fast members alone, whose p99 is the goal's yardstick.
3. Cost of routing: in process, instant providers, a single-provider step against a pool of
   three (weighted), alternating in one run; with and without breakers. With
   ``--instructions``, also the CPU instructions per request of each row, counted by
   valgrind (the same on every run, however loaded the machine is).

With ``--litellm``, LiteLLM's Router runs 1 and 2 with its equivalents (usage-based routing
with rpm per deployment; simple shuffle and latency-based routing), from its own virtual
environment (``.bench/litellm-venv``, made once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from closedloop import closed_loop, open_loop, p99
from common import litellm_python, measure, start_simulator

from engine import FallbackExecutor, GenerationMeta, LLMManager, Runtime, load_chain
from engine.core.machine import compile_chain
from engine.health import HealthConfig, LocalHealthStore, default_policies

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PROVIDERS = """\
providers:
{entries}
"""
ENTRY = (
    '  {name}: {{kind: openai, base_url: "{base}/{name}/v1", model: m-{name}, '
    "api_key_env: BENCH_KEY{quota}}}\n"
)


def chains(folder: Path, base: str, names: list[str], chain: str, rpm: int | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    quota = f", quota: {{rpm: {rpm}}}" if rpm else ""
    entries = "".join(ENTRY.format(name=n, base=base, quota=quota) for n in names)
    (folder / "providers.yaml").write_text(PROVIDERS.format(entries=entries))
    (folder / "default.yaml").write_text(chain)
    return folder


def stop(proc: subprocess.Popen[str]) -> dict[str, int]:
    """Stop a simulator; return the 429s its rate limits sent, per provider."""
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines():
        if line.startswith("rate-limited: "):
            return dict(json.loads(line.removeprefix("rate-limited: ")))
    return {}


async def offered(manager: LLMManager, total: int, per_minute: float) -> dict[str, float]:
    """The open loop through ``manager``, counting answers and skipped attempts."""
    counts = {"answered": 0, "skipped": 0}

    async def one() -> bool:
        _, meta = await manager.agenerate_response("hi")
        counts["answered"] += meta.error is None
        counts["skipped"] += sum(a["status"] == "skipped" for a in meta.provider_attempts)
        return meta.error is None

    latencies, _ = await open_loop(one, total, per_minute)
    return {**counts, "p99_ms": p99(latencies) * 1000}


def quotas(args: argparse.Namespace, work: Path) -> None:
    print(f"1. quotas: 2 deployments at 600 rpm, {args.requests} requests at {args.rate} rpm")
    script = "cycle: true\neast: [{answer: east}]\nwest: [{answer: west}]\n"
    for label, chain, rpm in (
        ("engine, fallback only", "steps: [east, west]\n", None),
        ("engine, pool with quotas", "steps:\n  - id: p\n    pool: [east, west]\n", 600),
    ):
        proc, base = start_simulator(script, work, "--rate-limit", "east=600",
                                     "--rate-limit", "west=600")  # fmt: skip
        try:
            folder = chains(work / label.replace(" ", "_"), base, ["east", "west"], chain, rpm)

            async def go(folder: Path = folder) -> dict[str, float]:
                async with LLMManager(config={"chains_dir": str(folder)}) as manager:
                    return await offered(manager, args.requests, args.rate)

            row = asyncio.run(go())
        finally:
            sent = sum(stop(proc).values())
        print(
            f"   {label:<28} 429s {sent:>4}   answered {row['answered']:>5.0f}   "
            f"skipped attempts {row['skipped']:>4.0f}   p99 {row['p99_ms']:7.1f} ms"
        )
    if args.litellm:
        litellm("quotas", args, work, script)


async def closed(manager: LLMManager, total: int, concurrency: int) -> list[float]:
    """The closed loop through ``manager``; every latency."""

    async def one() -> bool:
        _, meta = await manager.agenerate_response("hi")
        return meta.error is None

    latencies, _ = await closed_loop(one, concurrency, total)
    return latencies


def latency(args: argparse.Namespace, work: Path) -> None:
    total = args.latency_requests
    print(f"2. latency: 3 members, one 5x slower (20 ms / 100 ms), {total} requests at 8 at once")
    script = (
        "cycle: true\nfast1: [{answer: {text: a, delay: 0.02}}]\n"
        "fast2: [{answer: {text: b, delay: 0.02}}]\nslow: [{answer: {text: c, delay: 0.1}}]\n"
    )
    proc, base = start_simulator(script, work)
    try:
        rows = {}
        for label, members, strategy in (
            ("engine, fast members only", "[fast1, fast2]", "weighted"),
            ("engine, equal weights (random)", "[fast1, slow, fast2]", "weighted"),
            ("engine, latency strategy", "[fast1, slow, fast2]", "latency"),
        ):
            chain = f"steps:\n  - id: p\n    pool: {members}\n    strategy: {strategy}\n"
            folder = chains(work / label.replace(" ", "_").replace(",", ""), base,
                            ["fast1", "fast2", "slow"], chain, None)  # fmt: skip

            async def go(folder: Path = folder) -> list[float]:
                async with LLMManager(config={"chains_dir": str(folder)}) as manager:
                    await closed(manager, 50, 8)  # warm: connections, first measurements
                    return await closed(manager, total, 8)

            values = asyncio.run(go())
            rows[label] = (statistics.median(values) * 1000, p99(values) * 1000)
            print(f"   {label:<32} p50 {rows[label][0]:6.1f} ms   p99 {rows[label][1]:6.1f} ms")
        fast = rows["engine, fast members only"][1]
        print(f"   latency strategy p99 / fast members' p99: "
              f"{rows['engine, latency strategy'][1] / fast:.2f} (goal <= 1.2)")  # fmt: skip
    finally:
        stop(proc)
    if args.litellm:
        litellm("latency", args, work, script)


class Instant:
    def generate_response(self, *, prompt: str, timeout: float, model: str | None = None) -> str:
        return "answer"


def cost_rows(work: Path) -> dict[tuple[str, str], Callable[[], object]]:
    """The four rows: (single step | pool of 3) x (no breakers | with breakers)."""
    single = work / "single.yaml"
    single.write_text("steps: [a]\n")
    pooled = work / "pooled.yaml"
    pooled.write_text("steps:\n  - id: p\n    pool: [a, b, c]\n")
    one, three = compile_chain(load_chain(single)), compile_chain(load_chain(pooled))
    providers = {n: Instant() for n in "abc"}
    rows: dict[tuple[str, str], Callable[[], object]] = {}
    for label, health in (
        ("no breakers", None),
        ("with breakers", HealthConfig(LocalHealthStore(), default_policies)),
    ):
        executor = FallbackExecutor(providers.get, Runtime(), health)
        for name, compiled in (("single", one), ("pool", three)):
            rows[(label, name)] = lambda c=compiled, e=executor: e.execute(
                c, "hi", GenerationMeta(), 30
            )
    return rows


def instructions(label: str, name: str, requests: int) -> int:
    """CPU instructions of this process running one row ``requests`` times (valgrind)."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--cost-row", f"{label}/{name}", "--cost-requests",
         str(requests)],
        capture_output=True, text=True, check=True, cwd=HERE,
    )  # fmt: skip
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def cost(args: argparse.Namespace, work: Path) -> None:
    n = args.cost_requests
    print(f"3. cost of routing, in process, instant providers ({n} requests x {args.rounds} "
          "rounds, the least)")  # fmt: skip
    rows = cost_rows(work)
    for label in ("no breakers", "with breakers"):
        a, b = [], []
        for _ in range(args.rounds):  # alternating, so both see the same machine
            a.append(measure(rows[(label, "single")], n, rounds=1))
            b.append(measure(rows[(label, "pool")], n, rounds=1))
        # The least of the rounds: the one the shared machine disturbed least.
        x, y = min(a), min(b)
        print(f"   {label:<14} single step {x:6.1f} us   pool of 3 {y:6.1f} us   "
              f"routing +{y - x:.1f} us (goal <= 5)")  # fmt: skip
    if not args.instructions:
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    # Instructions do not vary with the machine's load: the same figure on every run.
    for label in ("no breakers", "with breakers"):
        per = {}
        for name in ("single", "pool"):
            per[name] = (instructions(label, name, 2500) - instructions(label, name, 500)) / 2000
        extra = per["pool"] - per["single"]
        print(f"   {label:<14} CPU instructions per request: single step {per['single']:,.0f}"
              f"   pool of 3 {per['pool']:,.0f}   routing +{extra:,.0f} "
              f"(+{extra / per['single']:.1%})")  # fmt: skip


def litellm(part: str, args: argparse.Namespace, work: Path, script: str) -> None:
    python = litellm_python()
    runs = (
        ["fallbacks", "usage-based-routing-v2"]
        if part == "quotas"
        else ["simple-shuffle", "latency-based-routing"]
    )
    for strategy in runs:
        extra = ["--rate-limit", "east=600", "--rate-limit", "west=600"] if part == "quotas" else []
        proc, base = start_simulator(script, work, *extra)
        try:
            out = subprocess.run(
                [str(python), str(HERE / "routing_litellm.py"), part, strategy, base,
                 str(args.requests if part == "quotas" else args.latency_requests),
                 str(args.rate)],
                capture_output=True, text=True, check=True, cwd=HERE, timeout=900,
            )  # fmt: skip
        finally:
            sent = sum(stop(proc).values())
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if part == "quotas":
            print(f"   {'litellm, ' + strategy:<28} 429s {sent:>4}   answered "
                  f"{row['answered']:>5.0f}   p99 {row['p99_ms']:7.1f} ms")  # fmt: skip
        else:
            print(f"   {'litellm, ' + strategy:<32} p50 {row['p50_ms']:6.1f} ms   "
                  f"p99 {row['p99_ms']:6.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="quotas: requests offered")
    parser.add_argument("--rate", type=float, default=900, help="quotas: requests per minute")
    parser.add_argument("--latency-requests", type=int, default=600)
    parser.add_argument("--cost-requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=9, help="cost: rounds, alternating")
    parser.add_argument("--only", default="quotas,latency,cost")
    parser.add_argument("--litellm", action="store_true", help="also run LiteLLM's Router")
    parser.add_argument(
        "--instructions", action="store_true", help="cost: also count CPU instructions (valgrind)"
    )
    parser.add_argument("--cost-row", help=argparse.SUPPRESS)  # one row, for valgrind
    args = parser.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.cost_row:
            label, name = args.cost_row.split("/")
            row = cost_rows(work)[(label, name)]
            for _ in range(args.cost_requests):
                row()
            return
        import os

        os.environ["BENCH_KEY"] = "bench-key"
        if "cost" in parts:
            cost(args, work)
        if "latency" in parts:
            latency(args, work)
        if "quotas" in parts:
            quotas(args, work)


if __name__ == "__main__":
    main()
