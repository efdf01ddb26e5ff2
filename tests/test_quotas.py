"""Quotas: requests and tokens per minute per provider (``quota:`` in providers.yaml). A
provider out of quota is not called (a skipped ``quota_exhausted`` attempt, or out of its
pool's draw); a call waits for room within ``quota_wait``; reported usage corrects the
estimate; over loopback against rate-limited simulator deployments no request goes beyond
the limit; and two processes share one quota through a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, FakeClock, RedisServer, run_cli

from engine import Completion, FallbackExecutor, GenerationMeta, LLMManager, load_chain
from engine.core.machine import compile_chain
from engine.health import HealthConfig, LocalHealthStore, QuotaPolicy, default_policies
from engine.tools.simulator import Behaviour, Script, Simulator


class Answers:
    def __init__(self, name: str, tokens: int = 0):
        self.name = name
        self.tokens = tokens
        self.calls = 0

    def generate_response(self, *, prompt: str, timeout: float, model=None):
        self.calls += 1
        return Completion(f"from {self.name}", "m", self.tokens, 0)


def chain(tmp_path: Path, text: str):
    path = tmp_path / "default.yaml"
    path.write_text(text)
    return compile_chain(load_chain(path))


def executor_with(providers, clock: FakeClock, quotas: dict[str, QuotaPolicy]):
    health = HealthConfig(LocalHealthStore(), default_policies, quotas.get)
    return FallbackExecutor(providers.get, clock.runtime(), health), health


def ask(executor, compiled) -> GenerationMeta:
    meta = GenerationMeta()
    executor.execute(compiled, "hello there", meta, 300)
    return meta


def test_a_provider_out_of_quota_is_skipped_until_the_minute_has_passed(tmp_path):
    compiled = chain(tmp_path, "steps: [a, b]\n")
    clock = FakeClock()
    providers = {"a": Answers("a"), "b": Answers("b")}
    executor, _ = executor_with(providers, clock, {"a": QuotaPolicy(rpm=3)})
    metas = [ask(executor, compiled) for _ in range(5)]
    assert [m.provider for m in metas] == ["a", "a", "a", "b", "b"]
    skipped = metas[3].provider_attempts[0]
    assert (skipped["status"], skipped["error_code"], skipped["category"]) == (
        "skipped", "quota_exhausted", "retryable")  # fmt: skip
    assert "a's quota is used up (3 requests" in skipped["message"]
    assert 60_000 <= skipped["retry_in_ms"] <= 61_000
    assert providers["a"].calls == 3
    clock.now += 61
    assert ask(executor, compiled).provider == "a"


def test_quota_wait_waits_for_room_within_the_deadline(tmp_path):
    compiled = chain(tmp_path, "defaults: {quota_wait: 90}\nsteps: [a, b]\n")
    clock = FakeClock()
    providers = {"a": Answers("a"), "b": Answers("b")}
    executor, _ = executor_with(providers, clock, {"a": QuotaPolicy(rpm=1)})
    assert ask(executor, compiled).provider == "a"
    meta = ask(executor, compiled)
    assert meta.provider == "a" and len(meta.provider_attempts) == 1
    assert len(clock.sleeps) == 1 and 60 <= clock.sleeps[0] <= 61
    short = chain(tmp_path, "defaults: {quota_wait: 5}\nsteps: [a, b]\n")
    assert ask(executor, short).provider == "b"  # the wait would be longer than 5 s


def test_reported_usage_corrects_the_token_estimate(tmp_path):
    compiled = chain(tmp_path, "steps: [a, b]\n")
    clock = FakeClock()
    providers = {"a": Answers("a", tokens=900), "b": Answers("b")}
    executor, health = executor_with(providers, clock, {"a": QuotaPolicy(tpm=1000)})
    assert ask(executor, compiled).provider == "a"  # estimated ~5 tokens, used 900
    record = health.store.snapshot()["quota:a"]
    assert sum(b[1] for b in record.usage.values()) == 900
    meta = ask(executor, compiled)  # 900 + ~5 fits under 1000 ...
    assert meta.provider == "a"
    assert ask(executor, compiled).provider == "b"  # ... but 1800 + ~5 does not


def test_a_pool_draws_only_members_with_room(tmp_path):
    compiled = chain(tmp_path, "steps:\n  - id: p\n    pool: [a, b]\n  - c\n")
    clock = FakeClock()
    providers = {n: Answers(n) for n in "abc"}
    executor, _ = executor_with(
        providers, clock, {"a": QuotaPolicy(rpm=2), "b": QuotaPolicy(rpm=2)}
    )
    metas = [ask(executor, compiled) for _ in range(5)]
    assert sorted(m.provider for m in metas[:4]) == ["a", "a", "b", "b"]
    assert all(len(m.provider_attempts) == 1 for m in metas[:4])
    first, second = metas[4].provider_attempts
    assert (first["status"], first["state"], first["error_code"]) == (
        "skipped", "p", "quota_exhausted")  # fmt: skip
    assert "no member of pool 'p' is available (a out of quota, b out of quota" in first["message"]
    assert second["provider"] == "c"


PROVIDERS = """\
providers:
  east: {kind: openai, base_url: "{sim}/east/v1", model: gpt-4o-mini, api_key_env: EAST_KEY,
         quota: {rpm: 5}}
  west: {kind: openai, base_url: "{sim}/west/v1", model: gpt-4o-mini, api_key_env: WEST_KEY,
         quota: {rpm: 5}}
"""


def _pool_dir(tmp_path: Path, sim: Simulator) -> Path:
    folder = tmp_path / "chains"
    folder.mkdir()
    base = f"http://{sim.host}:{sim.port}"
    (folder / "providers.yaml").write_text(PROVIDERS.replace("{sim}", base))
    (folder / "default.yaml").write_text("steps:\n  - id: gpt\n    pool: [east, west]\n")
    return folder


@pytest.mark.parametrize("call", ["sync", "async"])
def test_no_request_goes_beyond_a_rate_limited_deployment(tmp_path, monkeypatch, call):
    import asyncio

    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    script = Script({"east": [Behaviour("answer", text="e")] * 20,
                     "west": [Behaviour("answer", text="w")] * 20})  # fmt: skip
    with Simulator(script, rate_limits={"east": 5, "west": 5}) as sim:
        manager = LLMManager(config={"chains_dir": str(_pool_dir(tmp_path, sim))})
        try:
            results = []
            for _ in range(12):
                if call == "sync":
                    results.append(manager.generate_response("hi"))
                else:
                    results.append(asyncio.run(manager.agenerate_response("hi")))
        finally:
            manager.close()
        assert sim.limited == {}  # not one 429: nothing went beyond a limit
        answered = [m for _, m in results if m.error is None]
        assert len(answered) == 10 and len(sim.requests) == 10
        refused = [m for _, m in results if m.error is not None]
        assert all(m.provider_attempts[0]["error_code"] == "quota_exhausted" for m in refused)
    out = run_cli("validate", str(tmp_path / "chains"))
    assert out.returncode == 0, out.stdout


def test_without_quotas_the_same_traffic_meets_429s(tmp_path, monkeypatch):
    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    script = Script({"east": [Behaviour("answer", text="e")] * 20,
                     "west": [Behaviour("answer", text="w")] * 20})  # fmt: skip
    with Simulator(script, rate_limits={"east": 5, "west": 5}) as sim:
        folder = _pool_dir(tmp_path, sim)
        text = (folder / "providers.yaml").read_text().replace(",\n         quota: {rpm: 5}", "")
        (folder / "providers.yaml").write_text(text)
        with LLMManager(config={"chains_dir": str(folder)}) as manager:
            for _ in range(12):
                manager.generate_response("hi")
        assert sum(sim.limited.values()) >= 2


_WORKER = textwrap.dedent(
    """
    import json, sys
    from engine import LLMManager
    folder, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # a second per command: sharing is tested here, not how a slow store degrades
    config = {"chains_dir": folder, "health": {"backend": "redis", "url": url, "timeout": 1.0}}
    codes = []
    with LLMManager(config=config) as manager:
        for _ in range(n):
            _, meta = manager.generate_response("hi")
            codes.append(meta.provider_attempts[-1]["error_code"])
    print(json.dumps(codes))
    """
)


def test_two_processes_share_one_quota_through_redis(tmp_path):
    redis = RedisServer()
    if redis.binary is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    redis.start()
    try:
        script = Script({"east": [Behaviour("answer", text="e")] * 40,
                         "west": [Behaviour("answer", text="w")] * 40})  # fmt: skip
        with Simulator(script, rate_limits={"east": 5, "west": 5}) as sim:
            folder = _pool_dir(tmp_path, sim)
            env = {"EAST_KEY": "k1", "WEST_KEY": "k2", "PATH": "/usr/bin:/bin"}
            workers = [
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(folder), redis.url, "8"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            outputs = [w.communicate(timeout=120) for w in workers]
            for worker, (_, err) in zip(workers, outputs, strict=True):
                assert worker.returncode == 0, err
            codes = [c for out, _ in outputs for c in json.loads(out)]
            assert sim.limited == {}  # the two processes together stayed within each limit
            assert len(sim.requests) == 10 and codes.count(None) == 10
            assert codes.count("quota_exhausted") == 6
    finally:
        redis.stop()


def test_health_shows_quota_use(tmp_path, monkeypatch):
    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    with Simulator() as sim:
        folder = _pool_dir(tmp_path, sim)
    result = run_cli("health", "--chains", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    quotas = json.loads(result.stdout)["quotas"]
    assert [(q["provider"], q["requests"], q["requests_limit"]) for q in quotas] == [
        ("east", 0, 5), ("west", 0, 5)]  # fmt: skip
    text = run_cli("health", "--chains", str(folder)).stdout
    assert "quotas (the last minute):" in text and "east  0/5 request" in text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("quota: {rpm: 0}", "providers.east.quota.rpm: must be 1 or more"),
        ("quota: {rmp: 5}", "unknown key 'rmp' (did you mean 'rpm'?)"),
    ],
)
def test_bad_quotas_are_located(tmp_path, entry, message):
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  east:\n    kind: openai\n    base_url: http://127.0.0.1:9/v1\n"
        f"    model: m\n    {entry}\n"
    )
    (tmp_path / "default.yaml").write_text("steps: [east]\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1 and "providers.yaml:6:" in result.stdout
    assert message in result.stdout


def test_prometheus_labels_the_member_and_shows_no_quota_record_as_a_breaker(tmp_path, monkeypatch):
    from prometheus_client import CollectorRegistry, generate_latest

    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    script = Script({"east": [Behaviour("answer", text="e")] * 4,
                     "west": [Behaviour("answer", text="w")] * 4})  # fmt: skip
    with Simulator(script) as sim:
        registry = CollectorRegistry()
        with LLMManager(config={"chains_dir": str(_pool_dir(tmp_path, sim))}) as manager:
            manager.enable_prometheus(registry)
            for _ in range(4):
                manager.generate_response("hi")
    text = generate_latest(registry).decode()
    assert 'provider="east"' in text or 'provider="west"' in text
    assert "quota:" not in text


def test_async_calls_take_their_quota_in_redis_too(tmp_path, monkeypatch):
    import asyncio

    redis = RedisServer()
    if redis.binary is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    redis.start()
    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    try:
        script = Script({"east": [Behaviour("answer", text="e")] * 20,
                         "west": [Behaviour("answer", text="w")] * 20})  # fmt: skip
        with Simulator(script, rate_limits={"east": 5, "west": 5}) as sim:
            folder = _pool_dir(tmp_path, sim)
            # A second per command: what is tested here is that async takes are atomic in
            # Redis, not how a store too slow for its deadline degrades (a burst of first
            # connections can outlast the 25 ms default on a loaded machine).
            health = {"backend": "redis", "url": redis.url, "timeout": 1.0}
            config = {"chains_dir": str(folder), "health": health}

            async def go():
                async with LLMManager(config=config) as manager:
                    return await asyncio.gather(
                        *(manager.agenerate_response("hi") for _ in range(12))
                    )

            results = asyncio.run(go())
            assert sim.limited == {} and len(sim.requests) == 10
            assert sum(meta.error is None for _, meta in results) == 10
            # The use is in Redis, where another process would see it.
            check = LLMManager(config=config)
            try:
                records = check.health.store.snapshot()
                used = [sum(b[0] for b in records[f"quota:{n}"].usage.values()) for n in
                        ("east", "west")]  # fmt: skip
            finally:
                check.close()
            assert used == [5, 5]
    finally:
        redis.stop()


@pytest.mark.parametrize("call", ["stream", "astream"])
def test_a_pool_streams_through_the_member_drawn(tmp_path, monkeypatch, call):
    import asyncio

    monkeypatch.setenv("EAST_KEY", "k1")
    monkeypatch.setenv("WEST_KEY", "k2")
    script = Script({"east": [Behaviour("answer", text="from east", chunks=3)] * 6,
                     "west": [Behaviour("answer", text="from west", chunks=3)] * 6})  # fmt: skip
    with Simulator(script) as sim:
        folder = _pool_dir(tmp_path, sim)
        (folder / "default.yaml").write_text(
            "steps:\n  - id: gpt\n    pool: [east, west]\n    strategy: latency\n"
        )
        messages = [{"role": "user", "content": "hi"}]
        with LLMManager(config={"chains_dir": str(folder)}) as manager:
            for _ in range(6):
                if call == "stream":
                    stream = manager.stream(messages)
                    text = "".join(e.text for e in stream)
                else:

                    async def go():
                        stream = manager.astream(messages)
                        return "".join([e.text async for e in stream]), stream

                    text, stream = asyncio.run(go())
                (attempt,) = stream.meta.provider_attempts
                assert text == f"from {attempt['provider']}" and attempt["state"] == "gpt"
                assert attempt["ttft_ms"] is not None
        # the latency strategy learnt each member it called from its first token
        assert set(manager._executor.routing.latency) <= {"east", "west"}
        assert manager._executor.routing.latency


def test_when_redis_goes_away_local_counting_starts_from_what_it_last_said(caplog):
    import time

    from engine.health.redis_store import RedisHealthStore

    redis = RedisServer()
    if redis.binary is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    redis.start()
    store = RedisHealthStore(redis.url, timeout=1.0, retry_interval=60)
    policy = QuotaPolicy(rpm=5)
    now = time.time()
    try:
        assert all(store.take_quota("quota:east", policy, now, 0).allowed for _ in range(3))
    finally:
        redis.stop()
    with caplog.at_level("WARNING", logger="engine.health"):
        grants = [store.take_quota("quota:east", policy, now + 1, 0).allowed for _ in range(4)]
    store.close()
    assert grants == [True, True, False, False]  # 3 counted in Redis, 2 more locally
    assert "unreachable" in caplog.text


def test_the_simulator_command_serves_rate_limited_deployments():
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "simulator", "--rate-limit", "east=1",
         "--rate-window", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        statuses = [
            httpx.post(f"{base}/east/v1/chat/completions", json=body, timeout=10).status_code
            for _ in range(3)
        ]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert statuses == [200, 429, 429]
    assert 'rate-limited: {"east": 2}' in out
    bad = run_cli("simulator", "--rate-limit", "east=0")
    assert bad.returncode == 2 and "write PROVIDER=N" in bad.stderr
