"""The gateway under load, side by side with LiteLLM's proxy and a pass-through floor.

Run: .venv/bin/python benchmarks/gateway.py [--levels 1,50,500] [--requests 4000]
                                            [--litellm] [--litellm-requests 1000]
                                            [--soak 100000]

One simulator process serves every target; each target is a server process of its own
with one worker, in front of it:

- ``direct``: no server between the client and the simulator (the baseline that "added
  latency" is measured over);
- ``passthrough``: ``passthrough_app.py`` under uvicorn (uvloop, httptools), forwarding
  each body to the simulator over the engine's own HTTP/1.1 transport and the reply back
  as it comes, with no engine: the floor any gateway of this design stands on;
- ``gateway``: ``torq-fallback serve`` with a two-step chain (deepseek, then openai);
- ``gateway+page``: the same gateway with its live dashboard open (a client reading
  ``/dashboard/events`` all along), to see what the page costs the request path;
- ``litellm``: with ``--litellm``, LiteLLM's proxy (``litellm[proxy]``, in its own virtual
  environment, ``.bench/litellm-proxy-venv``, made once) with the same two deployments as
  a fallback list, no retries.

The client is this process: ``C`` workers on uvloop send requests back to back over
kept-alive connections (the engine's HTTP/1.1 transport, so the client costs the same for
every target) until the level's total is done; targets alternate level by level. Reported
per target, non-streamed and streamed: requests/s, p50/p99 latency and the p50/p99 added
over ``direct``, the server's CPU per request (its own process, from /proc), its RSS after
the level, and for streams the time to the first event. ``--soak N`` then sends N requests
through the gateway at concurrency 50 and prints its RSS every N/10 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import start_simulator

from engine.providers.h1 import H1Transport

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "load-key"
# LiteLLM's proxy refuses to start without a master key (and checks it on every request).
MASTER = "sk-bench-0123456789abcdef0123456789abcdef"
SCRIPT = """deepseek:
  - answer: {text: "The answer is 4, as it has always been.", chunks: 6}
openai:
  - answer: {text: "4", chunks: 2}
cycle: true
"""
MESSAGES = [{"role": "user", "content": "What is 2+2?"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Target:
    """One server in front of the simulator (or none: ``direct``); ``page``: the URL of a
    dashboard to keep open while it is measured."""

    def __init__(
        self, name: str, url: str, body: dict, proc: subprocess.Popen[bytes] | None,
        page: str | None = None,
    ) -> None:  # fmt: skip
        self.name, self.url, self.body, self.proc = name, httpx.URL(url), body, proc
        self.page = page

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_ready(url: str, proc: subprocess.Popen[bytes], name: str, within: float = 180) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited {proc.returncode} before it answered")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{name} did not answer {url} within {within:.0f} s")


def sim_env(base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
    env.update({
        "DEEPSEEK_BASE_URL": f"{base}/deepseek", "DEEPSEEK_API_KEY": KEY,
        "OPENAI_BASE_URL": f"{base}/openai/v1", "OPENAI_API_KEY": KEY,
    })  # fmt: skip
    return env


def start_gateway(base: str, folder: Path) -> Target:
    chains = folder / "chains"
    chains.mkdir(exist_ok=True)
    (chains / "default.yaml").write_text("steps: [deepseek, openai]\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--chains",
         str(chains), "--max-in-flight", "4096"],
        env=sim_env(base), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/healthz", proc, "the gateway")
    return Target("gateway", url + "/v1/chat/completions", {"model": "direct"}, proc)


def start_passthrough(base: str) -> Target:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "passthrough_app:app", "--app-dir", str(HERE),
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level",
         "warning", "--no-access-log", "--backlog", "4096"],
        env={**sim_env(base), "PASSTHROUGH_UPSTREAM": base},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", proc, "the pass-through app")
    return Target("passthrough", url + "/v1/chat/completions", {"model": "deepseek-chat"}, proc)


def litellm_proxy() -> Path:
    """The ``litellm`` command of LiteLLM's own virtual environment, made once."""
    venv = ROOT / ".bench" / "litellm-proxy-venv"
    command = venv / "bin" / "litellm"
    if not command.exists():
        print("  (creating .bench/litellm-proxy-venv, installing litellm[proxy]: once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "litellm[proxy]"], check=True)  # fmt: skip
    return command


def start_litellm(base: str, folder: Path) -> Target:
    config = folder / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "direct",
                        "litellm_params": {
                            "model": "openai/deepseek-chat",
                            "api_base": f"{base}/deepseek",
                            "api_key": KEY,
                        },
                    },
                    {
                        "model_name": "backup",
                        "litellm_params": {
                            "model": "openai/gpt-4.1-mini",
                            "api_base": f"{base}/openai/v1",
                            "api_key": KEY,
                        },
                    },
                ],
                "router_settings": {"fallbacks": [{"direct": ["backup"]}], "num_retries": 0},
                "litellm_settings": {"num_retries": 0, "request_timeout": 30, "telemetry": False},
                "general_settings": {"master_key": MASTER},
            }
        )
    )
    port = free_port()
    env = {**sim_env(base), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = subprocess.Popen(
        [str(litellm_proxy()), "--config", str(config), "--host", "127.0.0.1", "--port",
         str(port), "--num_workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health/liveliness", proc, "LiteLLM's proxy")
    return Target("litellm", url + "/v1/chat/completions", {"model": "direct"}, proc)


async def load(
    target: Target, concurrency: int, total: int, stream: bool
) -> tuple[list[float], list[float], int, float]:
    """(latencies, times to the first event, failures, wall seconds) of ``total`` requests."""
    client = H1Transport(
        httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        ssl.create_default_context(),
        [("content-type", "application/json"), ("authorization", f"Bearer {MASTER}")],
    )
    body = json.dumps({**target.body, "messages": MESSAGES, "stream": stream}).encode()
    latencies: list[float] = []
    firsts: list[float] = []
    failed = 0
    remaining = total

    async def one() -> None:
        nonlocal failed
        started = time.perf_counter()
        try:
            reply = await client.post(target.url, body, 30.0)
            data = await reply.content.readany()
            first = time.perf_counter()
            while True:
                more = await reply.content.readany()
                if not more:
                    break
                data += more
            reply.release()
        except (httpx.HTTPError, OSError):
            failed += 1
            return
        ended = time.perf_counter()
        if reply.status != 200 or (b"[DONE]" not in data if stream else b'"choices"' not in data):
            failed += 1
        latencies.append(ended - started)
        firsts.append(first - started)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    remaining = min(total, max(concurrency * 2, 50))  # warm the connections up
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.clear()
    firsts.clear()
    failed, remaining = 0, total
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    await client.aclose()
    return latencies, firsts, failed, wall


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(int(len(ordered) * q) - 1, 0))] * 1000


def watch(page: str, stop: threading.Event, seen: list[int]) -> None:
    """Read a dashboard's event stream until ``stop`` (counting its pushes in ``seen``)."""
    with httpx.stream("GET", page, timeout=None) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                seen[0] += 1
            if stop.is_set():
                return


def run_cell(target: Target, concurrency: int, total: int, stream: bool) -> dict[str, float]:
    import uvloop

    stop, seen = threading.Event(), [0]
    viewer = None
    if target.page is not None:
        viewer = threading.Thread(target=watch, args=(target.page, stop, seen), daemon=True)
        viewer.start()
        time.sleep(0.6)  # its first picture is out
    cpu0 = cpu_seconds(target.proc.pid) if target.proc else 0.0
    latencies, firsts, failed, wall = uvloop.run(load(target, concurrency, total, stream))
    cpu = (cpu_seconds(target.proc.pid) - cpu0) if target.proc else 0.0
    if viewer is not None:
        stop.set()
        viewer.join(timeout=5)
    done = max(len(latencies), 1)
    return {
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99": quantile(latencies, 0.99) if latencies else 0.0,
        "ttft": statistics.median(firsts) * 1000 if firsts else 0.0,
        "cpu": cpu / done * 1000,
        "rss": rss_mib(target.proc.pid) if target.proc else 0.0,
        "failed": failed,
    }


def show(name: str, row: dict[str, float], base: dict[str, float] | None) -> None:
    added = ""
    if base is not None:
        added = (
            f"  +p50 {row['p50'] - base['p50']:7.2f} ms  +p99 {row['p99'] - base['p99']:7.2f} ms"
        )
    print(
        f"  {name:<12} {row['rps']:8.0f} req/s  p50 {row['p50']:7.2f} ms  p99 {row['p99']:7.2f} ms"
        f"{added}  first event {row['ttft']:6.2f} ms  cpu {row['cpu']:5.2f} ms/req"
        f"  rss {row['rss']:6.1f} MiB  failed {row['failed']:.0f}",
        flush=True,
    )


def soak(target: Target, total: int) -> None:
    import uvloop

    step = max(total // 10, 1)
    print(f"\nmemory over {total:,} requests through the gateway, concurrency 50:")
    print(f"  {0:>8,} requests  rss {rss_mib(target.proc.pid):6.1f} MiB")  # type: ignore[union-attr]
    done = 0
    while done < total:
        _, _, failed, wall = uvloop.run(load(target, 50, step, False))
        done += step
        rss = rss_mib(target.proc.pid)  # type: ignore[union-attr]
        print(
            f"  {done:>8,} requests  rss {rss:6.1f} MiB  ({step / wall:.0f} req/s, {failed} failed)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,50,500")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--litellm", action="store_true", help="also LiteLLM's proxy")
    parser.add_argument("--litellm-requests", type=int, default=1000)
    parser.add_argument("--soak", type=int, default=0, help="then N requests, RSS over time")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sim, base = start_simulator(SCRIPT, folder)
        targets = [
            Target("direct", f"{base}/deepseek/chat/completions", {"model": "deepseek-chat"}, None),
            start_passthrough(base),
            start_gateway(base, folder),
        ]
        gateway_target = targets[2]
        targets.append(Target("gateway+page", str(gateway_target.url), gateway_target.body,
                              gateway_target.proc,
                              str(gateway_target.url).replace("/v1/chat/completions",
                                                              "/dashboard/events")))  # fmt: skip
        try:
            if args.litellm:
                targets.append(start_litellm(base, folder))
            for stream in (False, True):
                for level in levels:
                    kind = "streamed" if stream else "whole"
                    print(f"\nconcurrency {level}, {kind} replies:", flush=True)
                    rows: dict[str, dict[str, float]] = {}
                    for target in targets:
                        total = args.litellm_requests if target.name == "litellm" else args.requests
                        rows[target.name] = run_cell(target, level, max(total, level), stream)
                        show(
                            target.name,
                            rows[target.name],
                            rows.get("direct") if target.name != "direct" else None,
                        )
                    gateway = rows["gateway"]["rps"]
                    ratios = f"  gateway / passthrough {gateway / rows['passthrough']['rps']:.2f}x"
                    paged = rows["gateway+page"]["rps"] / gateway
                    ratios += f", with the page open / without {paged:.2f}x"
                    if "litellm" in rows:
                        litellm = max(rows["litellm"]["rps"], 1e-9)
                        ratios += f", gateway / litellm {gateway / litellm:.1f}x"
                    print(ratios)
            if args.soak:
                soak(targets[2], args.soak)
        finally:
            for target in targets:
                target.stop()
            sim.terminate()


if __name__ == "__main__":
    main()
