"""Hedged requests: a slow attempt is sent again and the first success wins.

Races of in-process providers run on a virtual-time event loop (deterministic, instant);
races over loopback HTTP use the provider simulator, which counts the clients that hang up
on a reply it is still delaying. A property checks that ``simulate`` (its own virtual race)
and the async shell take the same path, with the same latencies, for random scripts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_invariants, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from virtual_time import run_virtual

from engine import (
    AIResponseError,
    ChainAbortedError,
    ChainExhaustedError,
    FallbackExecutor,
    GenerationMeta,
    LLMManager,
    ProviderError,
    Runtime,
    load_chain,
)
from engine.core.machine import compile_chain
from engine.health import (
    BreakerPolicy,
    HealthConfig,
    LocalHealthStore,
    RetryBudgetPolicy,
    default_policies,
)
from engine.tools.scenario import simulate
from engine.tools.simulator import Behaviour, Script, Simulator
from engine.types.meta import ExecutionMode

_ERRORS = {"retryable": ProviderError, "non_retryable": AIResponseError}


class Timed:
    """An async in-process provider playing ``category[:code]@seconds`` items on the event
    loop's clock (as ``simulate`` scripts them); counts the calls cancelled mid-way."""

    def __init__(self, name: str, script: list[str]) -> None:
        self.name = name
        self.script = list(script)
        self.calls = 0
        self.cancelled = 0

    async def achat(self, *, request: Any, timeout: float, model: str | None = None) -> str:
        self.calls += 1
        item = self.script.pop(0) if self.script else "success"
        outcome, _, took = item.partition("@")
        category, _, code = outcome.partition(":")
        try:
            await asyncio.sleep(float(took or 0))  # longer than the timeout: cut off there
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if category == "success":
            return f"(simulated answer from {self.name})"
        raise _ERRORS[category](f"simulated {outcome}", code=code or None, provider=self.name)


def chain_file(tmp_path: Path, text: str, name: str = "default") -> Any:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return compile_chain(load_chain(path))


def path_of(meta: GenerationMeta) -> list[tuple[Any, ...]]:
    return [
        (a["provider"], a["status"], a["error_code"], a.get("hedge"), a["state"], a["next"],
         a["latency_ms"], a["retry"])
        for a in meta.provider_attempts
    ]  # fmt: skip


def run_async(
    compiled: Any, scripts: dict[str, list[str]], policies: Any = default_policies
) -> tuple[str | None, GenerationMeta, dict[str, Timed], FallbackExecutor]:
    """One request through the async shell on virtual time."""
    providers = {name: Timed(name, scripts.get(name, [])) for name in {"a", "b", "c", *scripts}}
    meta = GenerationMeta()
    holder: dict[str, FallbackExecutor] = {}

    async def main() -> str | None:
        loop = asyncio.get_running_loop()
        runtime = Runtime(
            monotonic=loop.time, wall=lambda: 1_767_225_600.0 + loop.time(),
            asleep=asyncio.sleep, random=lambda: 0.5,
        )  # fmt: skip
        executor = FallbackExecutor(
            providers.get, runtime, HealthConfig(LocalHealthStore(), policies)
        )
        holder["executor"] = executor
        try:
            answer = await executor.aexecute(compiled, "hi", meta, compiled.chain.deadline)
        except (ChainExhaustedError, ChainAbortedError):
            return None
        return answer.text

    text, _ = run_virtual(main())
    return text, meta, providers, holder["executor"]


HEDGED = (
    "steps:\n  - id: gpt\n    pool: [a, b]\n    strategy: priority\n"
    "    hedge: {after: 0.2}\n    timeout: 5\n  - c\n"
)


# -- who wins ------------------------------------------------------------------------------


def test_a_fast_copy_wins_and_the_slow_one_is_cancelled(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)
    text, meta, providers, _ = run_async(compiled, {"a": ["success@2"], "b": ["success@0.1"]})
    assert text == "(simulated answer from b)"
    assert path_of(meta) == [
        ("a", "cancelled", "hedge_lost", 0, "gpt", "gpt", 300, 0),
        ("b", "success", None, 1, "gpt", "succeeded", 100, 0),
    ]
    assert meta.provider == "b" and meta.fallback_used and meta.duration_ms == 300
    assert meta.fallback_reason == "timeout:hedge_lost"
    assert providers["a"].cancelled == 1 and providers["c"].calls == 0
    assert_invariants(meta)


def test_the_first_copy_still_wins_when_it_answers_first(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)
    text, meta, providers, _ = run_async(compiled, {"a": ["success@0.3"], "b": ["success@0.5"]})
    assert text == "(simulated answer from a)"
    assert [(p, s, h) for p, s, _, h, *_ in path_of(meta)] == [
        ("b", "cancelled", 1), ("a", "success", 0)
    ]  # fmt: skip
    assert providers["b"].cancelled == 1


def test_an_attempt_faster_than_after_sends_no_copy(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)
    text, meta, providers, _ = run_async(compiled, {"a": ["success@0.1"]})
    assert text == "(simulated answer from a)" and providers["b"].calls == 0
    assert len(meta.provider_attempts) == 1 and not meta.fallback_used
    assert meta.provider_attempts[0]["hedge"] == 0


def test_one_copy_failing_does_not_end_the_step_while_another_runs(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)
    text, meta, _, _ = run_async(compiled, {"a": ["success@0.5"], "b": ["retryable:503@0.1"]})
    assert text == "(simulated answer from a)"
    assert [(p, s, c, h, n) for p, s, c, h, _, n, *_ in path_of(meta)] == [
        ("b", "failed", "503", 1, "gpt"),
        ("a", "success", None, 0, "succeeded"),
    ]


def test_when_every_copy_fails_the_last_decides_the_step(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)
    text, meta, _, _ = run_async(
        compiled, {"a": ["retryable:503@0.5"], "b": ["retryable:401@0.4"], "c": ["success"]}
    )
    assert text == "(simulated answer from c)"
    assert [(p, s, c, h, n) for p, s, c, h, _, n, *_ in path_of(meta)] == [
        ("a", "failed", "503", 0, "gpt"),
        ("b", "failed", "401", 1, "c"),
        ("c", "success", None, None, "succeeded"),
    ]
    assert meta.fallback_reason == "provider_error:503"


def test_a_step_without_a_pool_hedges_to_the_same_provider(tmp_path):
    compiled = chain_file(tmp_path, "steps:\n  - provider: a\n    hedge: {after: 0.2, max: 2}\n")
    text, meta, providers, _ = run_async(compiled, {"a": ["success@3", "success@3", "success@0.1"]})
    assert text == "(simulated answer from a)" and providers["a"].calls == 3
    assert [(s, h, lat) for _, s, _, h, _, _, lat, _ in path_of(meta)] == [
        ("cancelled", 0, 500), ("cancelled", 1, 300), ("success", 2, 100),
    ]  # fmt: skip


def test_no_hedge_once_the_retry_budget_is_spent(tmp_path):
    compiled = chain_file(tmp_path, HEDGED)

    def stingy(name: str) -> tuple[BreakerPolicy, RetryBudgetPolicy]:
        return BreakerPolicy(), RetryBudgetPolicy(ratio=0.0, min_per_second=0.0)

    text, meta, providers, _ = run_async(compiled, {"a": ["success@2"]}, stingy)
    assert text == "(simulated answer from a)" and providers["b"].calls == 0
    assert [(p, s, lat) for p, s, _, _, _, _, lat, _ in path_of(meta)] == [("a", "success", 2000)]


def test_cancelling_the_caller_cancels_every_copy(tmp_path):
    compiled = chain_file(tmp_path, HEDGED.replace("priority", "least_busy"))
    providers = {"a": Timed("a", ["success@9"]), "b": Timed("b", ["success@9"])}
    holder: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runtime = Runtime(monotonic=loop.time, asleep=asyncio.sleep, random=lambda: 0.0)
        executor = FallbackExecutor(providers.get, runtime)
        holder["executor"] = executor
        task = loop.create_task(executor.aexecute(compiled, "hi", GenerationMeta(), 60))
        await asyncio.sleep(1.0)  # both copies are out by now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    assert providers["a"].calls == providers["b"].calls == 1
    assert providers["a"].cancelled == providers["b"].cancelled == 1
    assert not any(holder["executor"].routing.in_flight.values())


def test_a_percentile_waits_the_floor_until_the_step_has_answers(tmp_path):
    compiled = chain_file(
        tmp_path, "steps:\n  - provider: a\n    hedge: {after: p90, floor: 1.5}\n"
    )
    # 19 answers in 0.2 s and one in 0.1 s: never at the very instant a hedge is due.
    fast = ["success@0.2"] * 19 + ["success@0.1"]
    providers = {"a": Timed("a", [*fast, "success@1", "success@0.1"])}
    metas = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runtime = Runtime(monotonic=loop.time, asleep=asyncio.sleep, random=lambda: 0.5)
        executor = FallbackExecutor(providers.get, runtime)
        slow_before = GenerationMeta()  # no answers yet: the floor, 1.5 s, is not reached
        providers["a"].script.insert(0, "success@1")
        await executor.aexecute(compiled, "hi", slow_before, 60)
        metas.append(slow_before)
        for _ in range(20):
            await executor.aexecute(compiled, "hi", GenerationMeta(), 60)
        slow_after = GenerationMeta()  # p90 of the answers is now 0.2 s
        await executor.aexecute(compiled, "hi", slow_after, 60)
        metas.append(slow_after)

    run_virtual(main())
    before, after = metas
    assert [a["status"] for a in before.provider_attempts] == ["success"]
    assert [(a["status"], a["hedge"], a["latency_ms"]) for a in after.provider_attempts] == [
        ("cancelled", 0, 300), ("success", 1, 100),
    ]  # fmt: skip


# -- simulate and a real run agree ---------------------------------------------------------

_ITEMS = st.sampled_from(["success", "retryable:503", "retryable:401", "non_retryable:400"])
# Latencies on a 0.2 s grid against hedges 0.15 s apart and a 1.05 s timeout: no two events
# of one attempt ever fall at the same instant, so the path is one whatever the shell.
_TIMES = st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
_SCRIPT = st.lists(st.tuples(_ITEMS, _TIMES).map(lambda t: f"{t[0]}@{t[1]:g}"), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    scripts=st.fixed_dictionaries({"a": _SCRIPT, "b": _SCRIPT, "c": _SCRIPT}),
    pooled=st.booleans(),
    copies=st.integers(1, 2),
    retries=st.integers(0, 1),
)
def test_simulate_and_the_async_shell_agree_on_the_path(tmp_path_factory, scripts, pooled,
                                                         copies, retries):  # fmt: skip
    where = "pool: [a, b]\n    strategy: priority" if pooled else "provider: a"
    compiled = chain_file(
        tmp_path_factory.mktemp("agree"),
        f"steps:\n  - id: first\n    {where}\n    hedge: {{after: 0.15, max: {copies}}}\n"
        f"    timeout: 1.05\n    retries: {retries}\n  - c\n",
    )
    outcomes = {name: list(items) for name, items in scripts.items() if pooled or name != "b"}
    ((simulated, expected),) = simulate(compiled, outcomes, "hi", ExecutionMode.DIRECT)
    text, meta, _, _ = run_async(compiled, outcomes)
    assert path_of(meta) == path_of(expected)
    assert text == simulated
    assert meta.duration_ms == expected.duration_ms


# -- over loopback HTTP --------------------------------------------------------------------


@pytest.fixture()
def sim(monkeypatch):
    with Simulator() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        yield server


def _hedged_manager(tmp_path: Path, log: Path | None = None) -> LLMManager:
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text(
        "steps:\n  - id: chat\n    pool: [deepseek, openai]\n    strategy: priority\n"
        "    hedge: {after: 0.2}\n"
    )
    config: dict[str, Any] = {"chains_dir": str(folder)}
    if log is not None:
        config["telemetry"] = {"path": str(log)}
    return LLMManager(config=config)


def _hung_up(sim: Simulator, count: int) -> bool:
    ends = time.monotonic() + 5
    while sim.hung_up < count and time.monotonic() < ends:
        time.sleep(0.01)
    return sim.hung_up == count


@pytest.mark.parametrize("shell", ["sync", "async", "stream", "astream"])
def test_over_http_the_slow_connection_is_closed(sim, tmp_path, shell):
    slow = {"delay": 5.0} if shell in ("sync", "async") else {"first_token_delay": 5.0}
    sim.script = Script({"deepseek": [Behaviour("answer", text="slow", **slow)],
                         "openai": [Behaviour("answer", text="fast", delay=0.05)]})  # fmt: skip
    manager = _hedged_manager(tmp_path)
    try:
        if shell == "sync":
            text, meta = manager.generate_response("hi")
        elif shell == "async":
            text, meta = asyncio.run(manager.agenerate_response("hi"))
        elif shell == "stream":
            stream = manager.stream([{"role": "user", "content": "hi"}])
            events = list(stream)
            text, meta = stream.text, stream.meta
            assert all(getattr(e, "text", "") != "slow" for e in events)
        else:

            async def consume() -> Any:
                stream = manager.astream([{"role": "user", "content": "hi"}])
                async for _ in stream:
                    pass
                return stream

            stream = asyncio.run(consume())
            text, meta = stream.text, stream.meta
        assert text == "fast"
        first, second = meta.provider_attempts
        assert (first["provider"], first["status"], first["error_code"]) == (
            "deepseek", "cancelled", "hedge_lost"
        )  # fmt: skip
        assert first["latency_ms"] >= 200  # it ran at least as long as the hedge delay
        assert (second["provider"], second["status"], second["hedge"]) == ("openai", "success", 1)
        assert meta.duration_ms < 4000  # the slow reply (5 s) was not waited for
        assert _hung_up(sim, 1)  # the server saw the slow copy's connection closed
        assert_invariants(meta)
    finally:
        manager.close()


def test_the_sync_shell_leaves_no_thread_behind(sim, tmp_path):
    before = {t.ident for t in threading.enumerate()}
    sim.script = Script({"deepseek": [Behaviour("answer", text="slow", delay=5.0)] * 3,
                         "openai": [Behaviour("answer", text="fast", delay=0.05)] * 3})  # fmt: skip
    manager = _hedged_manager(tmp_path)
    for _ in range(3):
        assert manager.generate_response("hi")[0] == "fast"
    manager.close()
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert left == []
    assert _hung_up(sim, 3)


def test_stats_and_prometheus_count_hedges(sim, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    sim.script = Script({"deepseek": [Behaviour("answer", text="slow", delay=5.0),
                                      Behaviour("answer", text="quick")],
                         "openai": [Behaviour("answer", text="fast", delay=0.05)]})  # fmt: skip
    log = tmp_path / "log.jsonl"
    registry = CollectorRegistry()
    manager = _hedged_manager(tmp_path, log)
    manager.enable_prometheus(registry)
    try:
        assert manager.generate_response("hi")[0] == "fast"
        assert manager.generate_response("hi")[0] == "quick"
    finally:
        manager.close()
    metrics = generate_latest(registry).decode()
    assert 'torq_hedges_total{chain="default",provider="openai",result="won"} 1.0' in metrics
    report = run_cli("stats", str(log), "--json")
    assert report.returncode == 0, report.stderr
    chain = json.loads(report.stdout)["chains"]["default"]
    assert (chain["hedge_rate"], chain["hedges_sent"], chain["hedge_wins"]) == (0.5, 1, 1)
    text = run_cli("stats", str(log))
    assert "50.0% hedged (1 copies sent, 1 won by a copy)" in text.stdout


# -- review --------------------------------------------------------------------------------


def test_simulate_explain_and_diagrams_show_the_hedge(tmp_path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text(
        "steps:\n  - id: chat\n    provider: deepseek\n    hedge: {after: 0.5}\n  - claude\n"
    )
    result = run_cli("simulate", "direct", "--chains", str(folder), "--json",
                     "--outcomes", "deepseek=success@2|success@0.1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    attempts = json.loads(result.stdout)["meta"]["provider_attempts"]
    assert [(a["status"], a["hedge"], a["latency_ms"]) for a in attempts] == [
        ("cancelled", 0, 600), ("success", 1, 100),
    ]  # fmt: skip
    explained = run_cli("explain", "direct", "--chains", str(folder), "--code", "hedge_lost")
    assert explained.returncode == 0, explained.stderr
    assert "chat    after 0.5s, up to 1 extra copy, to the same provider" in explained.stdout
    drawn = run_cli("render", "--chains", str(folder), "--out", str(tmp_path / "d"),
                    "--format", "dot")  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    dot = (tmp_path / "d" / "default.dot").read_text()
    assert "hedged: after 0.5s, up to 1 extra copy, to the same provider" in dot
