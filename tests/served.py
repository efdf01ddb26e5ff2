"""A ``torq-fallback serve`` subprocess on a free loopback port, in front of the engine's
simulator: started, waited for, and stopped by pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
from helpers import PYTHON, ROOT, closed_port

from engine.simulator import Simulator


class Served:
    """One gateway process. ``env`` adds to the environment (TORQ_REDIS_URL, ...)."""

    def __init__(
        self,
        sim: Simulator,
        chains: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
        environment.update(sim.env())
        environment["OLLAMA_HOST"] = sim.base_url("ollama")
        environment.update(env or {})
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "engine.cli", "serve", "--port", str(self.port), "--chains",
             str(chains), *args],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.output = ""
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{out}\n{err}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("serve did not answer /healthz within 60 s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[str, str]:
        """Stop it (by pid) and return what it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                out, err = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
        else:
            out, err = self.proc.communicate()
        self.output = out + err
        return out, err

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
