"""Make docs/images/dashboard.png, the Dashboard page's screenshot: a gateway in front of
the provider simulator, traffic with rate limits and an outage that opens DeepSeek's
breaker, and the page opened in headless Chromium (Playwright, with Debian's chromium).

Run: .venv/bin/python docs/_screenshot.py
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from engine.simulator import Behaviour, Script, Simulator

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "dashboard.png"
PROVIDERS = """providers:
  deepseek:
    breaker: {failure_threshold: 3, cooldown: 60}
    health_check: {interval: 30}
"""


def main() -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("needs chromium (apt-get install chromium)")
    answers = {name: [Behaviour("answer", text="4")] for name in ("openai", "claude", "ollama")}
    # one request in four rate-limited at DeepSeek, the rest answered
    deepseek = [Behaviour("rate_limit"), *[Behaviour("answer", text="4")] * 3]
    with (
        tempfile.TemporaryDirectory() as tmp,
        Simulator(Script({"deepseek": deepseek, **answers}, cycle=True)) as sim,
    ):
        folder = Path(tmp) / "chains"
        folder.mkdir()
        for chain in (ROOT / "chains").glob("*.yaml"):
            shutil.copy(chain, folder / chain.name)
        (folder / "providers.yaml").write_text(PROVIDERS)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
        env.update(sim.env(), OLLAMA_HOST=sim.base_url("ollama"))
        gateway = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--chains",
             str(folder)], env=env, cwd=ROOT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(url + "/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)

            def ask(model: str, n: int) -> None:
                body = {"model": model, "messages": [{"role": "user", "content": "2+2?"}]}
                for _ in range(n):
                    httpx.post(url + "/v1/chat/completions", timeout=30, json=body)

            ask("direct", 24)
            ask("code_generation", 6)
            sim.outage("deepseek")  # DeepSeek goes down: three failures open its breaker
            ask("direct", 6)
            ask("research", 4)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=binary,
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                )
                page = browser.new_page(viewport={"width": 1440, "height": 1100})
                page.goto(url + "/dashboard")
                page.wait_for_selector("#status[data-state=live]")
                page.wait_for_selector("#tail tbody tr")
                page.locator("#tail tbody tr").first.click()
                OUT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
