"""Circuit breakers and the retry budget: every breaker transition on a fake clock, the
half-open probe limit under concurrency, and what the executor does with them (skip an open
provider visibly, probe the nearest when all are open, refuse retries beyond the budget)."""

from __future__ import annotations

import threading

from helpers import Scripted, Takes, assert_invariants, chains_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import AITimeoutError, LLMManager, ProviderError
from engine.health import BreakerPolicy, Health, LocalHealthStore, RetryBudgetPolicy
from engine.health.breaker import admit, record

POLICY = BreakerPolicy(failure_threshold=3, cooldown=10, cooldown_multiplier=2, cooldown_max=25)
BUDGET = RetryBudgetPolicy()


def fail(h: Health, now: float, probe: bool = False, retry_after: float | None = None) -> None:
    record(h, POLICY, now, failed=True, probe=probe, retry_after=retry_after)


def test_closed_open_half_open_closed_and_growing_cooldowns():
    h = Health()
    for t in (0, 1):
        fail(h, t)
    assert h.state == "closed"
    fail(h, 2)  # third consecutive failure
    assert (h.state, h.open_until) == ("open", 12)
    assert admit(h, POLICY, 5).allowed is False and admit(h, POLICY, 5).retry_in == 7
    probe = admit(h, POLICY, 12)  # the cooldown is over: one probe
    assert (h.state, probe.allowed, probe.probe) == ("half_open", True, True)
    assert admit(h, POLICY, 12).allowed is False  # the others behave as open
    fail(h, 13, probe=True)  # the probe failed: open again, for longer
    assert (h.state, h.open_until) == ("open", 13 + 20)
    admit(h, POLICY, 33)
    fail(h, 34, probe=True)
    assert h.open_until == 34 + 25  # capped at cooldown_max
    assert admit(h, POLICY, 59).probe
    record(h, POLICY, 60, failed=False, probe=True)  # a successful probe closes it
    assert (h.state, h.openings, h.consecutive) == ("closed", 0, 0)


def test_a_failure_rate_over_the_window_opens_too():
    policy = BreakerPolicy(failure_threshold=100, failure_rate=0.5, min_calls=10, window=60)
    h = Health()
    for t in range(10):  # 5 of 10: the rate is checked when a failure comes
        record(h, policy, t, failed=t % 2 == 1, probe=False)
    assert h.state == "open" and h.consecutive == 1


def test_retry_after_opens_at_least_that_long_and_never_shortens():
    h = Health()
    fail(h, 0, retry_after=30)  # one 429 with Retry-After: 30 -> open until 30
    assert (h.state, h.open_until) == ("open", 30)
    fail(h, 1, retry_after=5)  # a later, shorter one does not shorten it
    assert h.open_until == 30
    fail(h, 2, retry_after=60)  # a longer one extends it
    assert h.open_until == 62


def test_non_retryable_outcomes_never_count():
    h = Health()
    for t in range(10):
        record(h, POLICY, t, failed=False, probe=False)  # what the executor records for them
    assert h.state == "closed"


@settings(max_examples=30, deadline=None)
@given(probes=st.integers(1, 4), callers=st.integers(1, 30))
def test_half_open_never_admits_more_than_k_probes_at_once(probes, callers):
    policy = BreakerPolicy(failure_threshold=1, cooldown=1, half_open_probes=probes)
    store = LocalHealthStore()
    store.record("p", policy, BUDGET, 0, True, False, None, False)  # open until 1
    barrier = threading.Barrier(callers)
    admitted = []

    def caller():
        barrier.wait()
        admitted.append(store.admit("p", policy, 2.0, False).allowed)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == min(probes, callers)


def manager_with(tmp_path, clock, chain: str, providers_yaml: str = "", **providers):
    folder = chains_dir(tmp_path, {"direct": chain})
    if providers_yaml:
        (folder / "providers.yaml").write_text(providers_yaml)
    return LLMManager(
        config={"chains_dir": str(folder), "providers": providers}, runtime=clock.runtime()
    )


def test_an_open_provider_is_skipped_without_a_call(tmp_path, clock):
    down = Scripted(*[Takes(1, AITimeoutError("t", code="read_timeout"))] * 5, clock=clock)
    backup = Scripted(*["ok"] * 10)
    m = manager_with(tmp_path, clock, "steps: [deepseek, openai]\n", deepseek=down, openai=backup)
    for _ in range(5):  # default threshold: 5 consecutive failures
        m.generate_response("hi")
    assert len(down.calls) == 5
    _, meta = m.generate_response("hi")
    assert len(down.calls) == 5  # no call
    skipped, answered = meta.provider_attempts
    assert (skipped["status"], skipped["error_category"], skipped["error_code"]) == (
        "skipped", "provider_error", "circuit_open")  # fmt: skip
    assert skipped["latency_ms"] == 0 and 0 < skipped["retry_in_ms"] <= 10_000
    assert skipped["next"] == "openai" and answered["status"] == "success"
    assert meta.fallback_reason == "provider_error:circuit_open"
    assert_invariants(meta)
    clock.now += 11  # past the cooldown: one probe goes through
    down.script.append("recovered")
    _, meta = m.generate_response("hi")
    assert meta.provider == "deepseek" and len(down.calls) == 6


def test_when_every_provider_is_open_the_nearest_is_probed(tmp_path, clock):
    yaml = (
        "providers:\n  deepseek: {breaker: {cooldown: 100}}\n  openai: {breaker: {cooldown: 20}}\n"
    )
    boom = ProviderError("x", code="503")
    a = Scripted(*[boom] * 5, clock=clock)
    b = Scripted(*[boom] * 5, "from openai", clock=clock)
    m = manager_with(tmp_path, clock, "steps: [deepseek, openai]\n", yaml, deepseek=a, openai=b)
    for _ in range(5):
        m.generate_response("hi")
    clock.now += 1
    _, meta = m.generate_response("hi")  # both open: openai recovers first, so it is probed
    assert [(x["provider"], x["status"]) for x in meta.provider_attempts] == [
        ("deepseek", "skipped"), ("openai", "success")]  # fmt: skip


def test_fail_fast_when_every_provider_is_open(tmp_path, clock):
    boom = ProviderError("x", code="503")
    a, b = Scripted(*[boom] * 5), Scripted(*[boom] * 5)
    chain = "when_all_open: fail_fast\nsteps: [deepseek, openai]\n"
    m = manager_with(tmp_path, clock, chain, deepseek=a, openai=b)
    for _ in range(5):
        m.generate_response("hi")
    _, meta = m.generate_response("hi")
    assert [x["status"] for x in meta.provider_attempts] == ["skipped", "skipped"]
    assert meta.error and len(a.calls) == len(b.calls) == 5


def test_retries_beyond_the_budget_take_the_route_instead(tmp_path, clock):
    yaml = "providers:\n  deepseek: {retry_budget: {ratio: 0.0, min_per_second: 0.1, window: 10}}\n"
    boom = ProviderError("busy", code="503")
    a = Scripted(*[boom] * 10, clock=clock)
    b = Scripted(*["ok"] * 10)
    chain = "defaults: {retries: 3, backoff_base: 0}\nsteps: [deepseek, openai]\n"
    m = manager_with(tmp_path, clock, chain, yaml, deepseek=a, openai=b)
    _, meta = m.generate_response("hi")  # a budget of one retry per 10 s
    assert [(x["state"], x["next"]) for x in meta.provider_attempts] == [
        ("deepseek", "deepseek"), ("deepseek", "openai"), ("openai", "succeeded")]  # fmt: skip
    assert meta.provider_attempts[1]["retry_refused"] == "retry_budget_exhausted"


def test_breaker_policies_are_validated(tmp_path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  openai:\n    breaker: {failure_threshhold: 3, cooldown: 0}\n")
    _, problems = check_providers_file(path)
    messages = [f"{p.field}: {p.message}" for p in problems]
    assert any("did you mean 'failure_threshold'" in m for m in messages)
    assert any(m.startswith("providers.openai.breaker.cooldown") for m in messages)


def test_explain_circuit_open():
    from helpers import run_cli

    result = run_cli("explain", "direct", "--code", "circuit_open")
    assert (
        "code circuit_open: retryable (error_category provider_error, not transient"
        in result.stdout
    )


def test_simulate_shows_a_breaker_open_skip_probe_and_close():
    import json

    from helpers import run_cli

    outcomes = "deepseek=" + "|".join(["retryable:503"] * 5 + ["success"])
    result = run_cli(
        "simulate", "direct", "--outcomes", outcomes, "--requests", "9", "--every", "3", "--json"
    )
    runs = json.loads(result.stdout)
    statuses = [r["meta"]["provider_attempts"][0]["status"] for r in runs]
    assert statuses == ["failed"] * 5 + ["skipped"] * 3 + [
        "success"
    ]  # opened at t=12, probed at t=24
    started_open = run_cli(
        "simulate", "direct", "--outcomes", "openai=success", "--health", "deepseek=open", "--json"
    )
    first = json.loads(started_open.stdout)["meta"]["provider_attempts"][0]
    assert (first["provider"], first["status"], first["error_code"]) == (
        "deepseek",
        "skipped",
        "circuit_open",
    )
    bad = run_cli("simulate", "direct", "--outcomes", "openai=success", "--health", "deepseek=ajar")
    assert bad.returncode == 2 and "PROVIDER=open|half_open|closed" in bad.stderr
