"""Active health checks: while a provider's breaker is open it is asked its model list (no
tokens), and the breaker half-opens as soon as it answers, so a recovered provider gets
traffic again within a probe interval, with no user request spent on finding out. On a
fake clock with the simulator, with registered objects' own health_check(), per provider
switches in providers.yaml, and across two processes sharing a real redis-server (one
prober for the deployment)."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

import pytest
from helpers import PYTHON, ROOT, FakeClock, run_cli

from engine import LLMManager
from engine.health.policy import BreakerPolicy, RetryBudgetPolicy
from engine.health.redis_store import RedisHealthStore
from engine.simulator import Simulator, environment
from engine.telemetry.events import ProbeFinished

CHAIN = "steps: [deepseek, claude]\n"


def _manager(
    tmp_path: Path, clock: FakeClock, providers: str | None = None, **config
) -> LLMManager:
    (tmp_path / "default.yaml").write_text(CHAIN, encoding="utf-8")
    if providers is not None:
        (tmp_path / "providers.yaml").write_text(providers, encoding="utf-8")
    return LLMManager({"chains_dir": str(tmp_path), **config}, runtime=clock.runtime())


def _state(manager: LLMManager, key: str) -> str:
    found = manager.health.store.snapshot().get(key)
    return found.state if found is not None else "closed"


def _open_the_breaker(manager: LLMManager) -> None:
    for _ in range(5):  # the default threshold
        manager.generate_response("hi")
    assert _state(manager, "deepseek") == "open"


def test_a_recovered_provider_is_back_within_a_probe_interval_with_no_request_spent(tmp_path):
    clock = FakeClock()
    with Simulator() as sim, environment(sim):
        manager = _manager(tmp_path, clock)
        sim.outage("deepseek")
        _open_the_breaker(manager)
        assert manager.prober.tick() and sim.probes["deepseek"] == 1  # still down: stays open
        assert _state(manager, "deepseek") == "open"
        asked = len([r for r in sim.requests if r.provider == "deepseek"])
        sim.outage("deepseek", down=False)  # it recovers now
        clock.now += 0.5  # one probe interval later
        found = manager.prober.tick()
        assert [(p.provider, p.answered, p.opened) for p in found] == [
            ("deepseek", True, ("deepseek",))
        ]
        assert _state(manager, "deepseek") == "half_open"
        _, meta = manager.generate_response("hi")
        assert meta.provider == "deepseek" and _state(manager, "deepseek") == "closed"
        # No user request went to deepseek between its recovery and the one it answered.
        assert len([r for r in sim.requests if r.provider == "deepseek"]) == asked + 1
        manager.close()


def test_a_probe_is_never_a_request(tmp_path):
    clock = FakeClock()
    with Simulator() as sim, environment(sim):
        manager = _manager(tmp_path, clock)
        sim.outage("deepseek")
        _open_the_breaker(manager)
        before = manager.health.store.snapshot()["deepseek"]
        for _ in range(3):
            clock.now += 0.5
            manager.prober.tick()
        after = manager.health.store.snapshot()["deepseek"]
        assert (after.calls, after.traffic, after.consecutive) == (
            before.calls, before.traffic, before.consecutive,
        )  # fmt: skip
        assert after.probed_at and after.probe_answered is False
        assert sim.probes["deepseek"] == 3
        manager.close()


def test_requests_a_second_apart_meet_a_recovered_primary_within_two_seconds(tmp_path):
    """The outage-then-recovery sequence, requests 1.2 s apart, on virtual time: the
    primary's 10 s cooldown would outlast it; the probes do not."""
    clock = FakeClock()
    with Simulator() as sim, environment(sim):
        manager = _manager(tmp_path, clock)
        sim.outage("deepseek")
        served: list[tuple[float, str]] = []
        recovery = None
        for number in range(20):
            if number == 8:
                sim.outage("deepseek", down=False)
                recovery = clock.now
            _, meta = manager.generate_response("hi")
            served.append((clock.now, meta.provider))
            for _ in range(12):  # 1.2 s to the next request; the prober's thread ticks
                clock.now += 0.1
                manager.prober.tick()
        back = min(at for at, provider in served if provider == "deepseek")
        assert recovery is not None and back - recovery <= 2.0, (recovery, served)
        manager.close()


def test_a_registered_objects_own_health_check_is_used(tmp_path):
    clock = FakeClock()
    from engine import ProviderError

    class Own:
        model = "own-model"

        def __init__(self) -> None:
            self.healthy, self.checks = False, 0

        def generate_response(self, *, prompt, timeout):
            if not self.healthy:
                raise ProviderError("down", code="503")
            return "from own"

        async def health_check(self):  # an async one, as TORQ Console's providers have
            self.checks += 1
            return {"status": "healthy" if self.healthy else "unhealthy"}

    own = Own()
    (tmp_path / "default.yaml").write_text("steps: [own, backup]\n", encoding="utf-8")

    class Backup:
        def generate_response(self, *, prompt, timeout):
            return "from backup"

    manager = LLMManager({"chains_dir": str(tmp_path), "providers": {"own": own, "backup": Backup()}},
                         runtime=clock.runtime())  # fmt: skip
    _open = [manager.generate_response("hi") for _ in range(5)]
    assert _state(manager, "own") == "open"
    manager.prober.tick()
    assert own.checks == 1 and _state(manager, "own") == "open"
    own.healthy = True
    clock.now += 0.5
    manager.prober.tick()
    assert _state(manager, "own") == "half_open"
    assert manager.generate_response("hi")[0] == "from own"
    manager.close()


def test_a_provider_can_be_left_unprobed(tmp_path):
    clock = FakeClock()
    with Simulator() as sim, environment(sim):
        manager = _manager(
            tmp_path, clock, "providers:\n  deepseek:\n    health_check: {enabled: false}\n"
        )
        sim.outage("deepseek")
        _open_the_breaker(manager)
        assert manager.prober.tick() == [] and "deepseek" not in sim.probes
        manager.close()


def test_probes_are_told_to_sinks_that_ask(tmp_path):
    clock = FakeClock()
    seen: list[ProbeFinished] = []

    class Probes:
        events = (ProbeFinished,)

        def handle(self, event):
            seen.append(event)

    with Simulator() as sim, environment(sim):
        manager = _manager(tmp_path, clock)
        manager.add_sink(Probes())
        sim.outage("deepseek")
        _open_the_breaker(manager)
        manager.prober.tick()
        assert [(e.provider, e.answered) for e in seen] == [("deepseek", False)]
        assert "503" in (seen[0].reason or "") or seen[0].reason == "no answer"
        manager.close()


def test_the_prober_starts_by_itself_when_a_breaker_opens(tmp_path):
    """With the real clock: no prober thread until a breaker opens, then probes on their
    own, and a recovered provider is back."""
    (tmp_path / "default.yaml").write_text(CHAIN, encoding="utf-8")
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  deepseek:\n    breaker: {cooldown: 60, cooldown_max: 60}\n"
        "    health_check: {interval: 0.1}\n", encoding="utf-8",
    )  # fmt: skip
    with Simulator() as sim, environment(sim):
        manager = LLMManager({"chains_dir": str(tmp_path)})
        assert manager.prober._thread is None
        sim.outage("deepseek")
        for _ in range(5):
            manager.generate_response("hi")
        sim.outage("deepseek", down=False)
        deadline = time.monotonic() + 5
        while _state(manager, "deepseek") == "open" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(manager, "deepseek") == "half_open"
        manager.close()


def test_the_health_command_shows_the_last_probe(tmp_path, redis_server):
    clock = FakeClock(now=time.time() - 1_700_000_000.0)  # its wall clock: now
    with Simulator() as sim, environment(sim):
        manager = _manager(
            tmp_path, clock, health={"backend": "redis", "url": redis_server.url, "cache_ttl": 0}
        )
        sim.outage("deepseek")
        _open_the_breaker(manager)
        manager.prober.tick()
        manager.close()
    text = run_cli("health", env={"TORQ_REDIS_URL": redis_server.url}).stdout
    assert "deepseek  open" in text and "probe" in text and "not answered" in text


_WORKER = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from engine import LLMManager
from engine.telemetry.events import ProbeFinished
manager = LLMManager({{"chains_dir": sys.argv[1],
                       "health": {{"backend": "redis", "url": sys.argv[2], "cache_ttl": 0}}}})
probes = []
class Probes:
    events = (ProbeFinished,)
    def handle(self, event):
        probes.append(event.wall)
manager.add_sink(Probes())
manager.prober.wake()  # probing from the start (the breaker is already open in Redis)
time.sleep(float(sys.argv[3]))
manager.close()
print(json.dumps(probes))
"""


def test_two_processes_probe_once_per_interval_between_them(tmp_path, redis_server):
    (tmp_path / "default.yaml").write_text(CHAIN, encoding="utf-8")
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  deepseek:\n    breaker: {cooldown: 600, cooldown_max: 600}\n"
        "    health_check: {interval: 0.4}\n", encoding="utf-8",
    )  # fmt: skip
    with Simulator() as sim:
        env = {**sim.env(), "PATH": "/usr/bin:/bin"}

        store = RedisHealthStore(redis_server.url, cache_ttl=0)
        policy = BreakerPolicy(cooldown=600, cooldown_max=600)
        for _ in range(5):  # deepseek's breaker open for the deployment
            store.record(
                "deepseek", policy, RetryBudgetPolicy(), time.time(), True, False, None, False
            )
        assert store.snapshot()["deepseek"].state == "open"
        sim.outage("deepseek")
        seconds = 2.4
        workers = [
            subprocess.Popen(
                [PYTHON, "-c", _WORKER.format(root=str(ROOT)), str(tmp_path), redis_server.url, str(seconds)],
                stdout=subprocess.PIPE, text=True, env=env,
            )
            for _ in range(2)
        ]  # fmt: skip
        import json

        made = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
        times = sorted(t for each in made for t in each)
        assert sim.probes.get("deepseek", 0) == len(times) > 0
        # One prober for the deployment: never two probes within an interval (two probers
        # of their own would probe side by side, every interval).
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= 0.4 * 0.75, (gaps, made)
        store.close()


def test_prometheus_counts_the_probes(tmp_path):
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.CollectorRegistry()
    clock = FakeClock()
    with Simulator() as sim, environment(sim):
        manager = _manager(tmp_path, clock)
        manager.enable_prometheus(registry)
        sim.outage("deepseek")
        _open_the_breaker(manager)
        manager.prober.tick()
        value = registry.get_sample_value(
            "torq_health_probes_total", {"provider": "deepseek", "result": "not"}
        )
        assert value == 1.0
        manager.close()
