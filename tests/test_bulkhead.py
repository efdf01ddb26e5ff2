"""Bulkheads: at most max_in_flight requests reach a provider at once, the wait counts
against the attempt's time (queue_timeout), a line that is too long refuses at once
(overloaded) and the chain falls back, and a cancelled wait frees its place. Counted by
the simulator, over real loopback HTTP, sync (threads) and async (tasks)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import LLMManager
from engine.tools.simulator import Behaviour, Script, Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


def manager_for(
    tmp_path: Path, sim: Simulator, monkeypatch, *, limit: int, queue: int = 1000,
    steps: str = "[deepseek, backup]", timeout: float = 10,
) -> LLMManager:  # fmt: skip
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BACKUP_KEY", "k")
    folder = tmp_path / f"chains-{time.monotonic_ns()}"
    folder.mkdir()
    (folder / "default.yaml").write_text(f"defaults: {{timeout: {timeout}}}\nsteps: {steps}\n")
    # A chain whose one attempt may take long: what holds a slot in the tests below.
    (folder / "research.yaml").write_text("steps: [{provider: deepseek, timeout: 5}]\n")
    (folder / "providers.yaml").write_text(
        "providers:\n"
        f"  deepseek: {{max_in_flight: {limit}, max_queue: {queue}}}\n"
        "  backup:\n"
        f"    kind: openai\n    base_url: {sim.base_url('backup')}\n"
        "    api_key_env: BACKUP_KEY\n    model: b\n"
    )
    return LLMManager(config={"chains_dir": str(folder)})


def script(delay: float) -> Script:
    return Script(
        {"deepseek": [Behaviour("answer", delay=delay)], "backup": [Behaviour("answer", text="b")]},
        cycle=True,
    )


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    limit=st.integers(1, 6),
    requests=st.integers(1, 30),
    delay=st.sampled_from([0.0, 0.005, 0.02]),
    mode=st.sampled_from(["async", "sync"]),
)
def test_never_more_than_the_limit_in_flight(tmp_path_factory, sim, limit, requests, delay, mode):
    monkeypatch = pytest.MonkeyPatch()
    try:
        sim.script = script(delay)
        sim.peak_in_flight = 0
        manager = manager_for(tmp_path_factory.mktemp("b"), sim, monkeypatch, limit=limit)
        metas = []
        if mode == "async":

            async def go():
                async with manager:
                    results = await asyncio.gather(
                        *(manager.agenerate_response("hi") for _ in range(requests))
                    )
                metas.extend(meta for _, meta in results)

            asyncio.run(go())
        else:
            lock = threading.Lock()

            def one():
                _, meta = manager.generate_response("hi")
                with lock:
                    metas.append(meta)

            threads = [threading.Thread(target=one) for _ in range(requests)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            manager.close()
        assert sim.peak_in_flight <= limit
        assert [m.provider for m in metas] == ["deepseek"] * requests  # all served, none failed
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_a_queued_attempt_times_out_as_queue_timeout_and_falls_back(
    tmp_path, sim, monkeypatch, mode
):
    sim.script = script(1.5)
    manager = manager_for(tmp_path, sim, monkeypatch, limit=1, timeout=0.4)
    results: list = []

    async def both():
        holder = asyncio.create_task(manager.agenerate_response("hold", mode="research"))
        await asyncio.sleep(0.1)  # the holder has the only slot
        started = time.monotonic()
        results.append(await manager.agenerate_response("hi"))
        results.append(time.monotonic() - started)
        holder.cancel()
        await manager.aclose()

    if mode == "async":
        asyncio.run(both())
    else:
        hold = threading.Thread(
            target=manager.generate_response, args=("hold",), kwargs={"mode": "research"}
        )
        hold.start()
        time.sleep(0.1)
        started = time.monotonic()
        results.append(manager.generate_response("hi"))
        results.append(time.monotonic() - started)
        hold.join()
        manager.close()
    (text, meta), elapsed = results
    first, second = meta.provider_attempts
    assert (first["category"], first["error_code"]) == ("timeout", "queue_timeout")
    assert first["latency_ms"] >= 350  # it waited its attempt's time in line...
    assert second["provider"] == "backup" and text == "b"  # ...then fell back
    assert elapsed < 1.2  # not the holder's 1.5 s


def test_a_full_queue_is_refused_at_once_and_falls_back(tmp_path, sim, monkeypatch):
    sim.script = script(0.5)
    manager = manager_for(tmp_path, sim, monkeypatch, limit=1, queue=1)

    async def go():
        async with manager:
            return await asyncio.gather(*(manager.agenerate_response("hi") for _ in range(4)))

    results = asyncio.run(go())
    served = [meta for _, meta in results if meta.provider == "deepseek"]
    refused = [meta for _, meta in results if meta.provider == "backup"]
    assert len(served) == 2 and len(refused) == 2  # one in flight, one in line
    for meta in refused:
        first = meta.provider_attempts[0]
        assert (first["category"], first["error_code"]) == ("retryable", "overloaded")
        assert first["latency_ms"] < 100
        assert meta.fallback_reason == "provider_error:overloaded"


def test_cancelling_a_queued_request_frees_its_place(tmp_path, sim, monkeypatch):
    sim.script = script(0.4)
    manager = manager_for(tmp_path, sim, monkeypatch, limit=1, queue=1)

    async def go():
        async with manager:
            holder = asyncio.create_task(manager.agenerate_response("a"))
            await asyncio.sleep(0.05)
            queued = asyncio.create_task(manager.agenerate_response("b"))
            await asyncio.sleep(0.05)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            # the place in line is free again: this one waits instead of being refused
            _, meta = await manager.agenerate_response("c")
            await holder
            return meta

    meta = asyncio.run(go())
    assert [a["provider"] for a in meta.provider_attempts] == ["deepseek"]
    assert meta.error is None


def test_the_limits_are_validated(tmp_path: Path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n  openai:\n    max_in_flight: 0\n    max_queue: -1\n"
        "    async_transport: curl\n"
    )
    _, problems = check_providers_file(path)
    assert [(p.line, p.field) for p in problems] == [
        (3, "providers.openai.max_in_flight"),
        (4, "providers.openai.max_queue"),
        (5, "providers.openai.async_transport"),
    ]


def test_explain_knows_the_bulkhead_codes():
    from helpers import run_cli

    result = run_cli("explain", "direct", "--code", "queue_timeout")
    assert result.returncode == 0
    assert "code queue_timeout: timeout (error_category timeout, not transient" in result.stdout
    result = run_cli("explain", "direct", "--code", "overloaded")
    assert "code overloaded: retryable (error_category provider_error" in result.stdout
