"""A short Retry-After holds a breaker for what the provider said, never for a cooldown: a
429 saying 0.2 s, then a 529 on the step's retry, leaves claude closed for the next request
(the failures counted), while failures that reach the threshold still open it for the
cooldown, and a Retry-After on the failed probe holds it again for just that long."""

from __future__ import annotations

from helpers import Scripted, Takes, assert_invariants, chains_dir

from engine import LLMManager, ProviderError
from engine.health.breaker import Health, record
from engine.health.policy import BreakerPolicy

CHAIN = "steps:\n  - {provider: claude, retries: 1, backoff_max: 1}\n  - openai\n"


def _manager(tmp_path, clock, claude, openai):
    folder = chains_dir(tmp_path, {"direct": CHAIN})
    config = {"chains_dir": str(folder), "providers": {"claude": claude, "openai": openai}}
    return LLMManager(config=config, runtime=clock.runtime())


def test_a_short_retry_after_then_an_overload_costs_no_cooldown(tmp_path, clock):
    claude = Scripted(
        ProviderError("slow down", code="429", retry_after=0.2),
        Takes(0.05, ProviderError("overloaded", code="529")),
        *["from claude"] * 3,
        clock=clock,
    )
    openai = Scripted(*["from openai"] * 5)
    with _manager(tmp_path, clock, claude, openai) as manager:
        _, first = manager.generate_response("hi")
        tried = [(a["provider"], a["status"], a["error_code"]) for a in first.provider_attempts]
        assert tried == [("claude", "failed", "429"), ("claude", "failed", "529"),
                         ("openai", "success", None)]  # fmt: skip
        assert len(clock.sleeps) == 1 and clock.sleeps[0] >= 0.2  # the retry waited, as said
        for _ in range(3):  # right after: claude is asked again, not skipped for ~10 s
            text, meta = manager.generate_response("hi")
            assert (text, meta.provider) == ("from claude", "claude")
            assert [a["status"] for a in meta.provider_attempts] == ["success"]
            assert_invariants(meta)
        health = manager.health.store.snapshot()["claude"]
        assert health.state == "closed" and not health.held


def test_failures_reaching_the_threshold_still_open_for_the_cooldown():
    policy = BreakerPolicy(failure_threshold=2)
    health = Health()
    record(health, policy, 100.0, failed=True, probe=False, retry_after=0.2)
    assert (health.state, health.held, health.open_until) == ("open", True, 100.2)
    health.state = "half_open"  # what admit does once the 0.2 s are over
    record(health, policy, 100.3, failed=True, probe=True)
    assert health.state == "open" and not health.held  # two in a row: a real opening
    assert health.open_until == 100.3 + policy.cooldown


def test_a_failed_probe_saying_retry_after_is_held_again_for_that_long():
    policy = BreakerPolicy()
    health = Health()
    record(health, policy, 100.0, failed=True, probe=False, retry_after=0.2)
    health.state = "half_open"
    record(health, policy, 100.3, failed=True, probe=True, retry_after=0.5)
    assert (health.state, health.held, health.open_until) == ("open", True, 100.8)
    assert health.openings == 0  # no cooldown was ever started
    round_trip = Health.from_dict(health.to_dict())  # what the Redis store keeps
    assert round_trip.held and round_trip == health
