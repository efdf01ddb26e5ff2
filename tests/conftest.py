"""Fixtures (no helpers: those are in helpers.py): a manual clock, a clean environment,
Graphviz's dot, a real redis-server of a test's own, and a headless Chromium."""

from __future__ import annotations

import pytest
from helpers import FakeClock, RedisServer, closed_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OLLAMA_HOST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from a known environment: no TORQ_* or provider keys, and the keyless
    built-in (ollama) pointed at a closed loopback port, never at a real local server."""
    import os

    for name in list(os.environ):
        if name.startswith("TORQ_") or name in PROVIDER_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
def graphviz_dot() -> None:
    """Tests of SVG/PNG output need Graphviz's dot. Skipped without it on a developer's
    machine (say so), but a failure in CI, whose .ci/run installs it."""
    import os
    import shutil

    if shutil.which("dot") is None:
        message = "needs Graphviz's dot program (apt-get install graphviz)"
        if os.environ.get("CI"):
            pytest.fail(message + ", which CI must install")
        pytest.skip(message)


@pytest.fixture
def redis_server():
    """A fresh redis-server for one test. Skipped without redis-server on a developer's
    machine (saying so); a failure in CI, whose .ci/run installs it."""
    import os

    server = RedisServer()
    if server.binary is None:
        message = "needs redis-server (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + ", which CI must install")
        pytest.skip(message)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def black_hole():
    """A loopback port whose accept queue is full: connecting to it never completes."""
    import contextlib
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, server]:
        sock.close()


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium (Debian's, driven by Playwright), shared by a module's tests; each
    test opens its own page with ``chromium.new_page()``. Module-scoped, and only for
    modules of plain (not async) tests: Playwright's sync API runs an event loop of its own
    on this thread until it stops. Skipped without Chromium on a developer's machine
    (saying so); a failure in CI, whose .ci/run installs it."""
    import os
    import shutil

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "needs chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + ", which CI must install")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Without the background-networking flags Chromium keeps trying hosts this closed
        # network refuses (updates, sync, QUIC), at every start.
        flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
        browser = playwright.chromium.launch(executable_path=binary, args=flags)
        yield browser
        browser.close()
