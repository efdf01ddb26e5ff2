"""Redis health stays inside the request's budget: a frozen Redis (SIGSTOP), one that drips
its replies, garbage and oversized records, and keys that could collide. Every health
command has one deadline, whole; past it the request goes on with local health."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time

import pytest
from helpers import PYTHON, ROOT, Scripted, chains_dir

from engine import LLMManager, ProviderError
from engine.health import BreakerPolicy, RetryBudgetPolicy
from engine.health.redis_store import MAX_RECORD_BYTES, RedisHealthStore

BUDGET = RetryBudgetPolicy()


def _manager(url: str, tmp_path) -> LLMManager:
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    return LLMManager(
        config={
            "chains_dir": str(folder),
            "health": {"backend": "redis", "url": url},
            "providers": {"deepseek": Scripted(*["ok"] * 20), "openai": Scripted(*["ok"] * 20)},
        }
    )


def _within_budget(meta, timeout: float) -> None:
    assert meta.error is None
    assert meta.duration_ms < timeout * 1000  # the health store never held it past its budget


def _both_shells_within_budget(manager) -> None:
    """A sync and an async request each answer within their 2 s budget."""
    _, meta = manager.generate_response("hi", timeout=2)
    _within_budget(meta, 2)

    async def go():
        _, meta = await manager.agenerate_response("hi", timeout=2)
        await manager.aclose()
        return meta

    _within_budget(asyncio.run(go()), 2)


def test_a_frozen_redis_never_holds_a_request(redis_server, tmp_path, caplog):
    manager = _manager(redis_server.url, tmp_path)
    assert manager.generate_response("hi", timeout=2)[1].error is None  # connected, shared
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        _both_shells_within_budget(manager)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        manager.close()
    assert "Redis health store unreachable" in caplog.text


class DrippingRedis:
    """A RESP server that answers every command correctly, one byte every 20 ms."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            while not self.stop.is_set() and conn.recv(65536):
                for byte in b"+OK\r\n":
                    conn.sendall(bytes([byte]))
                    time.sleep(0.02)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_dripping_redis_never_holds_a_request(tmp_path, caplog):
    server = DrippingRedis()
    manager = _manager(server.url, tmp_path)
    try:
        _both_shells_within_budget(manager)
    finally:
        manager.close()
        server.close()
    assert "Redis health store unreachable (TimeoutError)" in caplog.text


GARBAGE = [
    "not json",
    "[]",
    '{"state": 5}',
    '{"state": "open", "open_until": 1e400}',
    '{"calls": {"x": [1, 2]}}',
    '{"openings": "many"}',
    '{"consecutive": 1e300}',
    '{"state": "molten"}',
    "{" * 5000,
]


def test_garbage_records_count_as_absent(redis_server, caplog):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    store = RedisHealthStore(redis_server.url, cache_ttl=0)
    policy = BreakerPolicy(failure_threshold=2)
    caplog.set_level(logging.WARNING, logger="engine.health")
    for number, raw in enumerate(GARBAGE):
        key = f"p{number}"
        client.set(f"torq:health:{key}", raw)
        assert store.admit(key, policy, 10.0, False).allowed  # absent: a closed breaker
        assert store.peek([key], [policy], 10.0)[0].allowed
        assert store.retry_allowed(key, BUDGET, 10.0)
        assert store.shared  # a bad record is not an unreachable Redis
        store.record(key, policy, BUDGET, 10.0, True, False, None, False)
        assert store.snapshot()[key].consecutive == 1  # replaced by a real record
    assert caplog.text.count("not a breaker record") == len(GARBAGE)  # once per key
    store.close()
    client.close()


_BIG = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {root!r})
    import redis
    from engine.health import BreakerPolicy
    from engine.health.redis_store import RedisHealthStore
    store = RedisHealthStore(sys.argv[1], cache_ttl=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    admitted = store.admit("big", BreakerPolicy(), 10.0, False).allowed
    store.record("big", BreakerPolicy(), __import__("engine.health", fromlist=["x"]).RetryBudgetPolicy(),
                 10.0, True, False, None, False)
    size = redis.Redis.from_url(sys.argv[1]).strlen("torq:health:big")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({{"admitted": admitted, "grew_mb": after - before, "size": size}}))
    """
)


def test_an_oversized_record_is_never_read_whole(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.set("torq:health:big", "x" * (64 * 1024 * 1024))
    client.close()
    result = subprocess.run(
        [PYTHON, "-c", _BIG.format(root=str(ROOT)), redis_server.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read["admitted"] and read["grew_mb"] < 20
    assert read["size"] < MAX_RECORD_BYTES  # replaced by a real record


def test_a_provider_named_like_a_provider_and_model_has_its_own_breaker(tmp_path):
    boom = ProviderError("down", code="503")
    folder = chains_dir(
        tmp_path,
        {"direct": "steps:\n  - {id: one, provider: 'acme:gpt'}\n"
                   "  - {id: two, provider: acme, model: gpt}\n"},
    )  # fmt: skip
    manager = LLMManager(
        config={
            "chains_dir": str(folder),
            "providers": {"acme:gpt": Scripted(*[boom] * 10), "acme": Scripted(*["ok"] * 10)},
        }
    )
    for _ in range(8):
        text, meta = manager.generate_response("hi")
        assert text == "ok" and meta.provider == "acme"  # 'acme:gpt' failing never skips it
    assert manager.health.store.snapshot()["acme%3Agpt"].state == "open"
    manager.close()


def test_the_health_command_prints_names_escaped(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    record = {"state": "open", "open_until": time.time() + 60, "consecutive": 5}
    client.set("torq:health:evil\nname\x1b[31m", json.dumps(record))
    client.close()
    env = {**os.environ, "TORQ_REDIS_URL": redis_server.url}
    result = subprocess.run(
        [PYTHON, "-m", "engine.cli", "health"], capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "evil\\nname\\x1b[31m" in result.stdout and "\x1b" not in result.stdout


@pytest.mark.parametrize("op", ["admit", "record", "peek", "retry_allowed"])
def test_no_health_command_outlasts_the_attempt(tmp_path, op):
    from engine.health.deadline import HEALTH_BUDGET

    server = DrippingRedis()
    store = RedisHealthStore(server.url, timeout=5.0)  # a long deadline, but the attempt...
    token = HEALTH_BUDGET.set(0.05)  # ... has 50 ms left
    started = time.monotonic()
    try:
        policy = BreakerPolicy()
        if op == "admit":
            store.admit("p", policy, 1.0, False)
        elif op == "record":
            store.record("p", policy, BUDGET, 1.0, True, False, None, False)
        elif op == "peek":
            store.peek(["p"], [policy], 1.0)
        else:
            store.retry_allowed("p", BUDGET, 1.0)
    finally:
        HEALTH_BUDGET.reset(token)
        store.close()
        server.close()
    assert not store.shared
    assert time.monotonic() - started < 1.0  # the attempt's 50 ms, not the store's 5 s
