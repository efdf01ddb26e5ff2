"""Pools: one step spread over several deployments. The shares of a weighted draw (a property
over the injected randomness), each strategy's choice, breakers taking members out of the
draw (one skipped attempt when none is left), retries going to another member, slow start on
a fake clock, and a pool of HTTP providers over loopback with what it records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from pathlib import Path

import pytest
from helpers import FakeClock, Takes, assert_invariants, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    ChainExhaustedError,
    FallbackExecutor,
    GenerationMeta,
    LLMManager,
    ProviderError,
    Runtime,
    load_chain,
)
from engine.core.machine import compile_chain
from engine.health import Health, HealthConfig, LocalHealthStore, default_policies
from engine.tools.simulator import Behaviour, Script, Simulator


class Named:
    """An in-process provider that answers with its name (or plays a script, then does)."""

    def __init__(self, name: str, *script, clock: FakeClock | None = None, price: float = 0):
        self.name = name
        self.script = list(script)
        self.clock = clock
        self.price = price
        self.calls = 0

    def generate_response(self, *, prompt: str, timeout: float, model=None):
        self.calls += 1
        item = self.script.pop(0) if self.script else f"from {self.name}"
        if isinstance(item, Takes):
            self.clock.now += item.seconds
            item = item.result
        if isinstance(item, BaseException):
            raise item
        return item

    def estimate_cost(self, model, tokens_in, tokens_out):
        return self.price * (tokens_in + tokens_out)


def pool_chain(tmp_path: Path, pool: str, extra: str = "", tail: str = "") -> object:
    path = tmp_path / "default.yaml"
    path.write_text(f"steps:\n  - id: gpt\n    pool: {pool}\n{extra}{tail}")
    return compile_chain(load_chain(path))


def run(executor: FallbackExecutor, compiled, n: int = 1) -> list[GenerationMeta]:
    out = []
    for _ in range(n):
        meta = GenerationMeta()
        with contextlib.suppress(ChainExhaustedError):
            executor.execute(compiled, "hi", meta, 30)
        out.append(meta)
    return out


def winners(metas: list[GenerationMeta]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for meta in metas:
        counts[meta.provider] = counts.get(meta.provider, 0) + 1
    return counts


@settings(max_examples=12, deadline=None)
@given(
    weights=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_weighted_draw_gives_each_member_its_share(tmp_path_factory, weights, seed):
    tmp_path = tmp_path_factory.mktemp("w")
    names = [f"m{i}" for i in range(len(weights))]
    pool = (
        "["
        + ", ".join(f"{{provider: {n}, weight: {w}}}" for n, w in zip(names, weights, strict=False))
        + "]"
    )
    compiled = pool_chain(tmp_path, pool)
    providers = {n: Named(n) for n in names}
    draws = random.Random(seed)
    executor = FallbackExecutor(providers.get, Runtime(random=draws.random))
    total = 3000
    counts = winners(run(executor, compiled, total))
    for name, weight in zip(names, weights, strict=True):
        share = counts.get(f"{name}", 0) / total
        assert abs(share - weight / sum(weights)) < 0.06, (counts, weights)


def test_the_same_seed_draws_the_same_members(tmp_path):
    compiled = pool_chain(tmp_path, "[{provider: a, weight: 3}, b, c]")
    paths = []
    for _ in range(2):
        providers = {n: Named(n) for n in "abc"}
        executor = FallbackExecutor(providers.get, Runtime(random=random.Random(7).random))
        paths.append([m.provider for m in run(executor, compiled, 50)])
    assert paths[0] == paths[1] and len(set(paths[0])) == 3


def test_an_attempt_records_the_member_as_provider_and_the_step_as_state(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]", tail="  - c\n")
    providers = {"a": Named("a", ProviderError("down", code="503")), "b": Named("b"),
                 "c": Named("c")}  # fmt: skip
    clock = FakeClock(jitter=0.1)  # draws a first
    executor = FallbackExecutor(providers.get, clock.runtime())
    (meta,) = run(executor, compiled)
    # No retries: a failed member moves the chain on, like any failed step.
    assert [(a["provider"], a["state"]) for a in meta.provider_attempts] == [
        ("a", "gpt"), ("c", "c")]  # fmt: skip
    assert_invariants(meta)


def test_a_retry_goes_to_another_member(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]", extra="    retries: 1\n")
    providers = {"a": Named("a", ProviderError("down", code="503")), "b": Named("b")}
    clock = FakeClock(jitter=0.1)  # every draw would pick a
    executor = FallbackExecutor(providers.get, clock.runtime())
    (meta,) = run(executor, compiled)
    assert [(a["provider"], a["state"], a["retry"]) for a in meta.provider_attempts] == [
        ("a", "gpt", 0), ("b", "gpt", 1)]  # fmt: skip
    assert meta.provider == "b"


def _health(open_members=(), recovered: dict[str, float] | None = None, now: float = 0.0):
    store = LocalHealthStore()
    for name in open_members:
        store.set(name, Health(state="open", openings=1, open_until=now + 60))
    for name, at in (recovered or {}).items():
        store.set(name, Health(state="closed", recovered_at=at))
    return HealthConfig(store, default_policies)


def test_members_with_an_open_breaker_leave_the_draw(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b, c]")
    providers = {n: Named(n) for n in "abc"}
    clock = FakeClock()
    health = _health(["a", "c"], now=clock.wall())
    executor = FallbackExecutor(providers.get, clock.runtime(), health)
    metas = run(executor, compiled, 20)
    assert winners(metas) == {"b": 20}
    assert all(len(m.provider_attempts) == 1 for m in metas)  # choosing is not an attempt
    assert providers["a"].calls == providers["c"].calls == 0


def test_a_pool_with_no_member_available_records_one_skipped_attempt(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]", tail="  - c\n")
    providers = {n: Named(n) for n in "abc"}
    clock = FakeClock()
    health = _health(["a", "b"], now=clock.wall())
    executor = FallbackExecutor(providers.get, clock.runtime(), health)
    (meta,) = run(executor, compiled)
    first, second = meta.provider_attempts
    assert (first["status"], first["state"], first["error_code"]) == ("skipped", "gpt",
                                                                       "circuit_open")  # fmt: skip
    assert "no member of pool 'gpt' is available (a open, b open" in first["message"]
    assert second["provider"] == "c" and meta.provider == "c"
    assert providers["a"].calls == providers["b"].calls == 0


def test_priority_takes_the_first_available(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b, c]", extra="    strategy: priority\n")
    providers = {n: Named(n) for n in "abc"}
    clock = FakeClock()
    executor = FallbackExecutor(providers.get, clock.runtime(), _health(["a"], now=clock.wall()))
    assert winners(run(executor, compiled, 5)) == {"b": 5}


def test_cost_takes_the_cheapest_for_the_request(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b, c]", extra="    strategy: cost\n")
    providers = {"a": Named("a", price=3), "b": Named("b", price=1), "c": Named("c", price=2)}
    executor = FallbackExecutor(providers.get, FakeClock().runtime())
    assert winners(run(executor, compiled, 5)) == {"b": 5}


def test_latency_steers_away_from_a_slow_member(tmp_path):
    compiled = pool_chain(tmp_path, "[fast1, slow, fast2]", extra="    strategy: latency\n")
    clock = FakeClock()
    providers = {
        "fast1": Named("fast1", *[Takes(0.05, "ok")] * 400, clock=clock),
        "fast2": Named("fast2", *[Takes(0.05, "ok")] * 400, clock=clock),
        "slow": Named("slow", *[Takes(0.25, "ok")] * 400, clock=clock),
    }
    executor = FallbackExecutor(providers.get, Runtime(
        monotonic=clock.monotonic, wall=clock.wall, sleep=clock.sleep, asleep=clock.asleep,
        random=random.Random(3).random))  # fmt: skip
    counts = winners(run(executor, compiled, 300))
    # Two choices among three: once measured, the slow member loses every comparison it is
    # in; only before that can it be chosen.
    assert counts.get("slow", 0) <= 3, counts
    assert counts["fast1"] > 100 and counts["fast2"] > 100


async def test_least_busy_spreads_requests_in_flight(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b, c]", extra="    strategy: least_busy\n")
    release = asyncio.Event()

    class Waiting:
        def __init__(self):
            self.calls = 0

        async def generate_response(self, *, prompt, timeout, model=None):
            self.calls += 1
            await release.wait()
            return "ok"

    providers = {n: Waiting() for n in "abc"}
    executor = FallbackExecutor(providers.get, Runtime(random=random.Random(1).random))
    tasks = [
        asyncio.create_task(executor.aexecute(compiled, "hi", GenerationMeta(), 30))
        for _ in range(9)
    ]
    while sum(p.calls for p in providers.values()) < 9:
        await asyncio.sleep(0)
    assert [p.calls for p in providers.values()] == [3, 3, 3]
    release.set()
    await asyncio.gather(*tasks)
    assert executor.routing.in_flight == {"a": 0, "b": 0, "c": 0}


async def test_a_cancelled_request_leaves_nothing_in_flight(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]", extra="    strategy: least_busy\n")

    class Forever:
        async def generate_response(self, *, prompt, timeout, model=None):
            await asyncio.Event().wait()

    executor = FallbackExecutor({"a": Forever(), "b": Forever()}.get)
    task = asyncio.create_task(executor.aexecute(compiled, "hi", GenerationMeta(), 30))
    while not any(executor.routing.in_flight.values()):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(executor.routing.in_flight.values()) == {0}


def test_slow_start_grows_a_recovered_members_share(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]", extra="    slow_start: 30\n")
    clock = FakeClock()
    providers = {n: Named(n) for n in "ab"}
    draws = random.Random(11)
    runtime = Runtime(monotonic=clock.monotonic, wall=clock.wall, sleep=clock.sleep,
                      asleep=clock.asleep, random=draws.random)  # fmt: skip
    health = _health(recovered={"a": clock.wall()})
    executor = FallbackExecutor(providers.get, runtime, health)
    shares = []
    for elapsed in (3, 15, 30, 60):
        clock.now = 1000.0 + elapsed
        counts = winners(run(executor, compiled, 2000))
        shares.append(counts.get("a", 0) / 2000)
    # weight share of a: f / (f + 1), f = elapsed / 30 (full from 30 s on)
    for got, want in zip(shares, (0.1 / 1.1, 0.5 / 1.5, 0.5, 0.5), strict=True):
        assert abs(got - want) < 0.04, shares


def test_a_member_recovers_through_the_breaker_then_slow_starts(tmp_path):
    """The whole cycle on a fake clock: a fails until its breaker opens, traffic goes to b;
    after the cooldown a probe succeeds and a comes back with a small share first."""
    compiled = pool_chain(tmp_path, "[a, b]", extra="    retries: 1\n    slow_start: 30\n")
    clock = FakeClock()
    failing = [ProviderError("down", code="503")] * 5
    providers = {"a": Named("a", *failing), "b": Named("b")}
    runtime = Runtime(monotonic=clock.monotonic, wall=clock.wall, sleep=clock.sleep,
                      asleep=clock.asleep, random=random.Random(5).random)  # fmt: skip
    store = LocalHealthStore()
    executor = FallbackExecutor(providers.get, runtime, HealthConfig(store, default_policies))
    run(executor, compiled, 40)
    assert store.snapshot()["a"].state == "open" and providers["a"].script == []
    clock.now += 31  # past the first cooldown (30 s by default)
    run(executor, compiled, 40)
    a = store.snapshot()["a"]
    assert a.state == "closed" and a.recovered_at > 0
    clock.now += 1
    early = winners(run(executor, compiled, 1000)).get("a", 0)
    clock.now += 40
    late = winners(run(executor, compiled, 1000)).get("a", 0)
    assert early < 150 < 350 < late


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


@pytest.mark.parametrize("call", ["sync", "async"])
def test_a_pool_of_http_providers(sim, monkeypatch, tmp_path, call):
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text(
        "steps:\n  - id: chat\n    pool:\n      - {provider: deepseek, weight: 1}\n"
        "      - {provider: openai, weight: 1, model: gpt-4o-mini}\n    retries: 1\n"
    )
    sim.script = Script({"deepseek": [Behaviour("rate_limit")] * 20,
                         "openai": [Behaviour("answer", text="pooled")] * 20})  # fmt: skip
    log = tmp_path / "log.jsonl"
    manager = LLMManager(config={"chains_dir": str(folder), "telemetry": {"path": str(log)}})
    try:
        for _ in range(6):
            if call == "sync":
                text, meta = manager.generate_response("hi")
            else:
                text, meta = asyncio.run(manager.agenerate_response("hi"))
            assert text == "pooled" and meta.provider == "openai" and meta.model == "gpt-4o-mini"
            assert {a["state"] for a in meta.provider_attempts} == {"chat"}
            assert_invariants(meta)
    finally:
        manager.close()
    lines = log.read_text().splitlines()
    assert len(lines) == 6 and all('"provider":"openai"' in line for line in lines)


# -- review --------------------------------------------------------------------------------

POOLED = (
    "steps:\n  - id: gpt\n    pool:\n      - {provider: openai, weight: 3}\n"
    "      - {provider: deepseek, weight: 1, model: deepseek-chat}\n    retries: 1\n"
    "  - claude\n"
)


def _pooled_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pooled"
    folder.mkdir()
    (folder / "default.yaml").write_text(POOLED)
    return folder


def test_simulate_draws_members_from_the_seed_and_skips_a_closed_pool(tmp_path):
    folder = _pooled_dir(tmp_path)
    picked = set()
    for seed in range(8):
        result = run_cli("simulate", "direct", "--chains", str(folder), "--json",
                         "--outcomes", "claude=success", "--seed", str(seed))  # fmt: skip
        assert result.returncode == 0, result.stderr
        (attempt,) = json.loads(result.stdout)["meta"]["provider_attempts"]
        assert attempt["state"] == "gpt"
        picked.add(attempt["provider"])
        again = run_cli("simulate", "direct", "--chains", str(folder), "--json",
                        "--outcomes", "claude=success", "--seed", str(seed))  # fmt: skip
        assert again.stdout == result.stdout  # the same seed, the same draw
    assert picked == {"openai", "deepseek"}
    closed = run_cli("simulate", "direct", "--chains", str(folder), "--json",
                     "--outcomes", "claude=success", "--health", "openai=open,deepseek=open")  # fmt: skip
    first, second = json.loads(closed.stdout)["meta"]["provider_attempts"]
    assert (first["status"], first["state"], second["provider"]) == ("skipped", "gpt", "claude")
    retried = run_cli("simulate", "direct", "--chains", str(folder), "--json",
                      "--outcomes", "openai=retryable:503,deepseek=retryable:503")  # fmt: skip
    attempts = json.loads(retried.stdout)["meta"]["provider_attempts"]
    assert [(a["provider"], a["state"]) for a in attempts] == [
        ("openai", "gpt"), ("deepseek", "gpt"), ("claude", "claude")]  # fmt: skip


def test_explain_and_diagrams_show_the_pool(tmp_path):
    folder = _pooled_dir(tmp_path)
    out = run_cli("explain", "direct", "--chains", str(folder), "--code", "503").stdout
    assert (
        "[pool, weighted: openai weight 3, deepseek weight 1; a retry goes to another member]"
        in out
    )
    result = run_cli("render", "--chains", str(folder), "--out", str(tmp_path / "d"),
                     "--format", "dot,mermaid")  # fmt: skip
    assert result.returncode == 0, result.stderr
    mermaid = (tmp_path / "d" / "default.mmd").read_text()
    for text in ("pool (weighted, slow start 30 s)", "• openai: gpt-4.1-mini, weight 3 (75%)",
                 "• deepseek: deepseek-chat, weight 1 (25%)", "retries: 1 (not timeouts), to "
                 "another member"):  # fmt: skip
        assert text in mermaid and text in (tmp_path / "d" / "default.dot").read_text()


def test_validate_refuses_undeclared_members(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "default.yaml").write_text(
        "steps:\n  - id: gpt\n    pool:\n      - openai\n      - {provider: opnai_west}\n"
    )
    result = run_cli("validate", str(folder))
    assert result.returncode == 1
    assert "default.yaml:5:20: steps[0].pool[1].provider: unknown provider 'opnai_west'" in \
        result.stdout  # fmt: skip
    assert "(did you mean 'openai'?)" in result.stdout


def test_a_pool_attempt_looks_its_provider_up_once(tmp_path):
    compiled = pool_chain(tmp_path, "[a, b]")
    providers = {n: Named(n) for n in "ab"}
    looked: list[str] = []

    def lookup(name):
        looked.append(name)
        return providers.get(name)

    executor = FallbackExecutor(lookup, Runtime(random=random.Random(2).random))
    metas = run(executor, compiled, 10)
    assert len(looked) == 10 and looked == [m.provider for m in metas]
