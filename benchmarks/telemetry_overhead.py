"""What telemetry costs per request, and whether a burst loses lines.

Run: .venv/bin/python benchmarks/telemetry_overhead.py [--requests N] [--rounds R]

In-process instant providers (no I/O), so the figure is the engine's own cost: per-request
time with no sink, with the JSONL log, and with OpenTelemetry spans (SDK, in-memory
exporter); runs alternate, medians over the rounds. Then 1,000 concurrent async requests
with the JSONL log on: lines written and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from engine import LLMManager


class Instant:
    def generate_response(self, *, prompt: str, timeout: float) -> str:
        return "answer"


def per_request(manager: LLMManager, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        manager.generate_response("hi", provider="claude")
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = LLMManager(config={"providers": {"claude": Instant()}})
        logged = LLMManager(
            config={"providers": {"claude": Instant()}, "telemetry": {"path": f"{tmp}/a.jsonl"}}
        )
        traced = LLMManager(config={"providers": {"claude": Instant()}})
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        traced.enable_opentelemetry(provider)
        rows: dict[str, list[float]] = {"no sink": [], "jsonl": [], "otel": []}
        for _ in range(args.rounds):
            rows["no sink"].append(per_request(plain, args.requests))
            rows["jsonl"].append(per_request(logged, args.requests))
            rows["otel"].append(per_request(traced, args.requests))
            exporter.clear()
        base = statistics.median(rows["no sink"])
        for name, values in rows.items():
            median = statistics.median(values)
            print(f"{name:8} {median:7.2f} us/request  (+{median - base:5.2f} us)", flush=True)
        logged.close()
        print(f"jsonl: {logged.telemetry.written if logged.telemetry else 0} lines written, "
              f"{logged.telemetry.dropped if logged.telemetry else 0} dropped")  # fmt: skip

        burst = LLMManager(
            config={"providers": {"claude": Instant()}, "telemetry": {"path": f"{tmp}/b.jsonl"}}
        )

        async def go() -> None:
            await asyncio.gather(
                *(burst.agenerate_response("hi", provider="claude") for _ in range(1000))
            )
            await burst.aclose()

        asyncio.run(go())
        lines = len(Path(f"{tmp}/b.jsonl").read_text().splitlines())
        sink = burst.telemetry
        assert sink is not None
        print(f"1,000 concurrent async requests: {lines} lines, {sink.dropped} dropped")


if __name__ == "__main__":
    main()
