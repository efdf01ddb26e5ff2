"""Property-based: random outcome sequences through every default chain (as shipped, and
with same-step retries switched on) always terminate within the chain's bound, keep the
metadata invariants, and follow the same path for the same sequence."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from helpers import CHAINS, FakeClock, Scripted, Takes, assert_invariants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    AIResponseError,
    AITimeoutError,
    ChainAbortedError,
    ChainExhaustedError,
    FallbackExecutor,
    GenerationMeta,
    ProviderError,
    compile_chain,
    load_chains,
)
from engine.chain.loader import rebuild
from engine.chain.spec import FINAL_STATES

MISSING = object()

OUTCOMES = st.one_of(
    st.just("answer"),
    st.just("Error: disguised failure"),
    st.just({"not": "text"}),
    st.just(MISSING),
    st.sampled_from(
        ["429", "500", "503", "529", "401", "insufficient_quota", "malformed_response"]
    ).map(lambda code: ProviderError("failed", code=code)),
    st.floats(0, 20).map(lambda s: ProviderError("slow down", code="429", retry_after=s)),
    st.sampled_from([None, "read_timeout", "connect_timeout"]).map(
        lambda code: AITimeoutError("slow", code=code)
    ),
    st.sampled_from(["content_filter", "refusal", "400"]).map(
        lambda code: AIResponseError("refused", code=code)
    ),
    st.just(RuntimeError("bug")),
)
STEP = st.tuples(OUTCOMES, st.floats(0, 45))


def _chains() -> dict[str, Any]:
    shipped = load_chains(CHAINS)
    variants = {}
    for name, chain in shipped.items():
        variants[name] = chain
        retrying = chain.spec.model_copy(
            update={
                "defaults": chain.spec.defaults.model_copy(
                    update={"retries": 2, "retry_timeouts": True, "backoff_max": 8}
                )
            }
        )
        variants[f"{name}+retries"] = rebuild(retrying, chain, f"{name}+retries")
    return {name: compile_chain(chain) for name, chain in variants.items()}


CHAINS_UNDER_TEST = _chains()


def run(compiled, script: list[tuple[Any, float]]):
    clock = FakeClock(jitter=0.25)
    queue = list(script)

    def lookup(name: str) -> Any:
        outcome, seconds = queue.pop(0) if queue else ("answer", 0.0)
        if outcome is MISSING:
            return None
        return Scripted(Takes(seconds, outcome), clock=clock)

    meta = GenerationMeta()
    error: Exception | None = None
    try:
        FallbackExecutor(lookup, clock.runtime()).execute(compiled, "prompt", meta, timeout=600)
    except (ChainExhaustedError, ChainAbortedError) as exc:
        error = exc
    return meta, error, clock


@pytest.mark.parametrize("name", sorted(CHAINS_UNDER_TEST))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(STEP, min_size=1, max_size=16))
def test_random_outcomes(name, script):
    compiled = CHAINS_UNDER_TEST[name]
    chain = compiled.chain
    meta, error, clock = run(compiled, script)
    attempts = meta.provider_attempts

    assert 1 <= len(attempts) <= chain.max_attempts
    assert_invariants(meta)
    # the recorded path is connected: each attempt says where the next one happened
    for before, after in itertools.pairwise(attempts):
        assert before["next"] == after["state"]
    assert attempts[-1]["next"] in FINAL_STATES or error is not None
    if error is None:
        assert attempts[-1]["next"] == "succeeded" and meta.error is None
    elif isinstance(error, ChainAbortedError):
        assert attempts[-1]["category"] == "non_retryable"
    # retries stay on one step and within its bound
    for attempt in attempts:
        assert attempt["retry"] <= chain.by_id[attempt["state"]].retries
    # no attempt started at or after the deadline
    deadline_at = FakeClock().wall() + min(chain.deadline, 600)
    for attempt in attempts:
        assert datetime.fromisoformat(attempt["timestamp"]).timestamp() < deadline_at

    again, again_error, again_clock = run(compiled, script)
    assert again.provider_attempts == attempts
    assert again_clock.sleeps == clock.sleeps
    assert type(again_error) is type(error)
