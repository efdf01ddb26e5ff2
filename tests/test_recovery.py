"""Coming back after an outage, and breaker arithmetic that never overflows: under the
default policy a recovered provider gets traffic again within 30 s, while a dead one costs
at most one probe per cooldown; any number of openings gives a finite cooldown."""

from __future__ import annotations

import itertools

from helpers import FakeClock, chains_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import LLMManager
from engine.health.breaker import MAX_OPENINGS, Health, admit, cooldown_for, record
from engine.health.policy import BreakerPolicy
from engine.tools.simulator import Behaviour, Script, Simulator, environment


@settings(max_examples=300, deadline=None)
@given(
    openings=st.integers(min_value=0, max_value=1_000_000),
    cooldown=st.floats(min_value=0.001, max_value=1e6),
    multiplier=st.floats(min_value=1.0, max_value=1e12),
    cap=st.floats(min_value=0.001, max_value=1e9),
)
def test_the_cooldown_is_finite_capped_and_grows_for_any_openings(
    openings, cooldown, multiplier, cap
):
    policy = BreakerPolicy(cooldown=cooldown, cooldown_multiplier=multiplier, cooldown_max=cap)
    wait = cooldown_for(policy, openings)
    assert 0 < wait <= cap
    assert wait <= cooldown_for(policy, openings + 1)


def test_a_million_openings_later_the_breaker_still_works():
    policy = BreakerPolicy()
    health = Health(openings=1_029)  # past this count, the old arithmetic overflowed
    for second in range(2_000):
        now = 1000.0 + second * 400
        admission = admit(health, policy, now)
        if admission.allowed:
            record(health, policy, now, failed=True, probe=admission.probe)
    health.openings = MAX_OPENINGS
    record(health, policy, 10**7, failed=True, probe=False)
    assert health.openings <= MAX_OPENINGS and health.open_until - 10**7 <= policy.cooldown_max


def _outage(down_until: float, horizon: float) -> tuple[list[float], float | None]:
    """One request a second against a provider down until ``down_until``: the times it was
    called, and the first time it answered."""
    policy, health = BreakerPolicy(), Health()
    called: list[float] = []
    first_success = None
    now = 0.0
    while now < horizon:
        admission = admit(health, policy, now)
        if admission.allowed:
            called.append(now)
            healthy = now >= down_until
            record(health, policy, now, failed=not healthy, probe=admission.probe)
            if healthy and first_success is None:
                first_success = now
        now += 1.0
    return called, first_success


def test_a_recovered_provider_gets_traffic_within_30_seconds_by_default():
    for down in (60.0, 61.0, 75.0, 300.0, 3600.0):
        _, first = _outage(down, down + 120)
        assert first is not None and first - down <= 30, (down, first)


def test_a_dead_provider_costs_at_most_one_probe_per_cooldown():
    called, first = _outage(float("inf"), 3600.0)
    assert first is None
    probes = called[BreakerPolicy().failure_threshold :]  # after the breaker first opened
    assert all(b - a >= 10 for a, b in itertools.pairwise(probes))
    assert len(probes) <= 3600 / 30 + 3


def test_recovery_over_real_http(tmp_path):
    """deepseek answers 500 for the first 160 virtual seconds (one request a second), then
    answers; with breakers at their defaults it is called again within 30 s of coming back,
    and during the outage it was probed, not hammered."""
    clock = FakeClock()
    script = Script(
        {"openai": [Behaviour("answer", text="stand-in")]},
        cycle=True,
        prompts={
            "during the outage": {"deepseek": [Behaviour("server_error")]},
            "after it": {"deepseek": [Behaviour("answer", text="back")]},
        },
    )
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    outage = 160  # long enough for the cooldown to reach its maximum
    with Simulator(script) as sim, environment(sim):
        manager = LLMManager(config={"chains_dir": str(folder)}, runtime=clock.runtime())
        providers = []
        try:
            for second in range(outage + 40):
                prompt = "during the outage" if second < outage else "after it"
                providers.append(manager.generate_response(prompt)[1].provider)
                clock.now += 1.0
        finally:
            manager.close()
        called = sum(r.provider == "deepseek" for r in sim.requests)
    back = providers.index("deepseek")
    assert outage <= back <= outage + 30
    assert providers[-1] == "deepseek"
    # the failures that opened the breaker, then one probe per cooldown (10, 20, 30, 30 s...)
    assert called - (len(providers) - back) <= 5 + outage / 30 + 2
