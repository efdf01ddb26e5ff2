"""Test helpers shared by the test modules: a manual clock, scripted providers, chain
files in a temporary directory, the metadata invariants, the CLI in a subprocess, and a
real redis-server of a test's own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import GenerationMeta, Runtime
from engine.types.meta import ATTEMPT_KEYS

ROOT = Path(__file__).resolve().parent.parent


CHAINS = ROOT / "chains"


PYTHON = sys.executable


@dataclass
class FakeClock:
    """Time that only moves when something sleeps or a provider 'takes' time."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    draws: list[float] = field(default_factory=list)
    jitter: float = 0.5

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def random(self) -> float:
        self.draws.append(self.jitter)
        return self.jitter

    def runtime(self) -> Runtime:
        return Runtime(
            monotonic=self.monotonic,
            wall=self.wall,
            sleep=self.sleep,
            asleep=self.asleep,
            random=self.random,
        )


@dataclass
class Takes:
    """A scripted step: spend ``seconds`` on the clock, then return or raise ``result``."""

    seconds: float
    result: Any


class Scripted:
    """A sync provider that plays a script: each call takes the next item (an exception is
    raised, anything else returned). Records every prompt, timeout and model it saw."""

    def __init__(self, *script: Any, clock: FakeClock | None = None, model: str | None = None):
        self.script = list(script)
        self.clock = clock
        self.calls: list[dict[str, Any]] = []
        if model is not None:
            self.model = model

    def _next(self, kwargs: dict[str, Any]) -> Any:
        self.calls.append(kwargs)
        if not self.script:
            raise AssertionError("provider called more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, Takes):
            assert self.clock is not None
            self.clock.now += item.seconds
            item = item.result
        if isinstance(item, BaseException):
            raise item
        return item

    def generate_response(self, **kwargs: Any) -> Any:
        return self._next(kwargs)


class AsyncScripted(Scripted):
    """The same, with ``async def generate_response``."""

    async def generate_response(self, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._next(kwargs)


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_chain(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def chains_dir(tmp_path: Path, chains: dict[str, str] | Iterable[tuple[str, str]]) -> Path:
    """A chains directory with ``default.yaml`` plus the given chains."""
    folder = tmp_path / "chains"
    items = dict(chains)
    items.setdefault("default", "steps: [deepseek, claude]\n")
    for name, text in items.items():
        write_chain(folder, name, text)
    return folder


def assert_invariants(meta: GenerationMeta) -> None:
    attempts = meta.provider_attempts
    assert len(attempts) >= 1
    for attempt in attempts:
        assert set(ATTEMPT_KEYS) <= set(attempt)
        assert attempt["status"] in ("success", "failed", "skipped", "cancelled")
    assert meta.fallback_used is (len(attempts) > 1)
    if meta.fallback_used:
        first = attempts[0]
        expected = first["error_category"]
        if first["error_code"]:
            expected = f"{expected}:{first['error_code']}"
        assert meta.fallback_reason == expected
    else:
        assert meta.fallback_reason is None
    if meta.error is None:
        winner = attempts[-1]
        assert winner["status"] == "success"
        assert (meta.provider, meta.model, meta.latency_ms) == (
            winner["provider"],
            winner["model"],
            winner["latency_ms"],
        )
        assert meta.error_category is None
    else:
        assert meta.error_category
    json.dumps(meta.to_dict())


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``torq-fallback ARGS`` in a subprocess, from the repository, without TORQ_* variables."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
    full_env.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=timeout,
    )


class RedisServer:
    """A real redis-server of the test's own, on a free loopback port, stopped by pid."""

    def __init__(self) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        self.port = closed_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import time

        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
