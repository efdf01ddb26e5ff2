"""Health shared across processes through a real redis-server: the breaker rules hold in
Redis as in process, several processes share one breaker, and requests go on when Redis
dies and share again when it returns."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

from helpers import ROOT, FakeClock, Scripted, chains_dir

from engine import LLMManager, ProviderError
from engine.health import BreakerPolicy, RetryBudgetPolicy
from engine.health.redis_store import RedisHealthStore

POLICY = BreakerPolicy(failure_threshold=2, cooldown=10)
BUDGET = RetryBudgetPolicy()


def test_the_breaker_rules_hold_in_redis(redis_server):
    store = RedisHealthStore(redis_server.url, cache_ttl=0)
    other = RedisHealthStore(redis_server.url, cache_ttl=0)  # another process's view
    for t in (0, 1):
        store.record("p", POLICY, BUDGET, t, True, False, None, False)
    assert other.admit("p", POLICY, 5, False).allowed is False  # open, seen by the other
    probe = other.admit("p", POLICY, 12, False)
    assert probe.allowed and probe.probe
    assert store.admit("p", POLICY, 12, False).allowed is False  # one probe at a time, shared
    other.record("p", POLICY, BUDGET, 13, False, True, None, False)
    assert store.snapshot()["p"].state == "closed"
    store.close()
    other.close()


def test_a_key_of_another_type_in_the_namespace_leaves_the_listing_whole(redis_server, caplog):
    import redis

    store = RedisHealthStore(redis_server.url, cache_ttl=0)
    for t in (0, 1):
        store.record("p", POLICY, BUDGET, t, True, False, None, False)
    client = redis.Redis.from_url(redis_server.url)
    client.hset("torq:health:someone-elses", "field", "value")  # not a string key
    client.close()
    seen = store.snapshot()
    assert seen["p"].state == "open"  # the record is read, not the local fallback
    assert "someone-elses" not in seen
    assert "not a breaker record" in caplog.text
    store.close()


def test_concurrent_writers_lose_no_update(redis_server):
    import threading

    # What is tested is compare-and-set under contention: four threads of one process take
    # turns on the GIL, so each command gets a deadline far above the default 25 ms.
    stores = [RedisHealthStore(redis_server.url, cache_ttl=0, timeout=2.0) for _ in range(4)]
    policy = BreakerPolicy(failure_threshold=10_000, min_calls=10_000)

    def writer(store):
        for _ in range(50):
            store.record("p", policy, BUDGET, 100.0, False, False, None, False)

    threads = [threading.Thread(target=writer, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health = stores[0].snapshot()["p"]
    assert sum(b[0] for b in health.calls.values()) == 200
    for store in stores:
        store.close()


_WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from engine import LLMManager, ProviderError

    class Down:
        calls = 0
        def generate_response(self, *, prompt, timeout):
            Down.calls += 1
            raise ProviderError("down", code="503")

    class Up:
        def generate_response(self, *, prompt, timeout):
            return "ok"

    m = LLMManager(config={{"chains_dir": sys.argv[1], "providers": {{"deepseek": Down(), "openai": Up()}},
                           "health": {{"backend": "redis", "url": sys.argv[2], "cache_ttl": 0}}}})
    statuses = []
    for _ in range(int(sys.argv[3])):
        _, meta = m.generate_response("hi")
        statuses.append(meta.provider_attempts[0]["status"])
    print(json.dumps({{"calls": Down.calls, "statuses": statuses}}))
    """
)


def run_worker(folder, url, requests):
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER.format(root=str(ROOT)), str(folder), url, str(requests)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_processes_share_one_breaker(redis_server, tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    first = run_worker(folder, redis_server.url, 5)  # the default threshold: 5 failures
    assert first["calls"] == 5 and first["statuses"] == ["failed"] * 5
    # Other processes skip it from their first request: no attempt wasted after opening.
    for _ in range(3):
        later = run_worker(folder, redis_server.url, 4)
        assert later["calls"] == 0 and later["statuses"] == ["skipped"] * 4


def test_requests_go_on_when_redis_dies_and_share_again_when_it_returns(
    redis_server, tmp_path, caplog
):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    clock = FakeClock()
    down = Scripted(*[ProviderError("down", code="503")] * 20)
    manager = LLMManager(
        config={"chains_dir": str(folder), "providers": {"deepseek": down, "openai": Scripted(*["ok"] * 40)},
                "health": {"backend": "redis", "url": redis_server.url, "cache_ttl": 0,
                           "retry_interval": 0}},
        runtime=clock.runtime(),
    )  # fmt: skip
    store = manager.health.store
    manager.generate_response("hi")
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="engine.health")
    for _ in range(6):  # Redis is gone: the requests go on, on local health
        text, _meta = manager.generate_response("hi")
        assert text == "ok"
    assert not store.shared
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # said once, not once per request
    redis_server.start()
    manager.generate_response("hi")
    assert store.shared
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert "deepseek" in RedisHealthStore(redis_server.url).snapshot()


def test_the_health_command_reads_shared_state(redis_server, tmp_path):
    from helpers import run_cli

    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    run_worker(folder, redis_server.url, 5)  # opens deepseek's breaker in Redis
    result = run_cli("health", "--json", env={"TORQ_REDIS_URL": redis_server.url})
    assert result.returncode == 0, result.stderr
    rows = {r["provider"]: r for r in json.loads(result.stdout)["providers"]}
    assert rows["deepseek"]["state"] == "open" and rows["deepseek"]["consecutive_failures"] == 5
    assert 0 < rows["deepseek"]["half_open_in_s"] <= 10
    assert rows["openai"]["state"] == "closed"
    text = run_cli("health", env={"TORQ_REDIS_URL": redis_server.url}).stdout
    assert "deepseek  open" in text and redis_server.url not in text


def test_the_breaker_diagram_is_drawn_from_the_machine_definition():
    from engine.health import BREAKER_TRANSITIONS
    from engine.tools.diagrams import render_breaker

    dot = render_breaker("dot").decode()
    for _, source, dest in BREAKER_TRANSITIONS:
        assert f"{source} -> {dest}" in dot
    assert "recover: a probe succeeds" in render_breaker("mermaid").decode()


def test_async_calls_share_health_through_the_asyncio_client(redis_server, tmp_path):
    import asyncio

    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    down = Scripted(*[ProviderError("down", code="503")] * 5)
    config = {"chains_dir": str(folder), "providers": {"deepseek": down, "openai": Scripted(*["ok"] * 10)},
              "health": {"backend": "redis", "url": redis_server.url, "cache_ttl": 0}}  # fmt: skip

    async def go():
        async with LLMManager(config=config) as manager:
            return [await manager.agenerate_response("hi") for _ in range(7)]

    results = asyncio.run(go())
    statuses = [meta.provider_attempts[0]["status"] for _, meta in results]
    assert statuses == ["failed"] * 5 + ["skipped"] * 2
    shared = RedisHealthStore(redis_server.url)
    assert shared.snapshot()["deepseek"].state == "open"  # written by the async client
    shared.close()
