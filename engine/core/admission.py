"""Whether a single-provider step's attempt may call its provider: its breaker's word, and
when every breaker of the chain is open with nothing tried yet, a probe of the provider
closest to recovery (``when_all_open: probe_nearest``); and how skipped attempts are told."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from engine.core.actions import Admit, HealthOp, Peek
from engine.core.classify import classify_exception, coded
from engine.core.machine import CompiledChain
from engine.health import Admission, BreakerPolicy, HealthConfig, QuotaGrant
from engine.types.outcomes import Category, Outcome

__all__ = ["admit_refused", "quota_message", "refusal", "skipped_for"]


def admit_refused(
    compiled: CompiledChain,
    health: HealthConfig,
    key: str,
    breaker: BreakerPolicy,
    admission: Admission,
    force_key: str | None,
    looked_all: bool,
    attempts: list[dict[str, Any]],
    wall: Callable[[], float],
    left: float,
) -> Generator[HealthOp, Any, tuple[Admission, str | None, bool]]:
    """A single step's breaker refused the call (``admission``): when every breaker of the
    chain is open and nothing was tried yet, probe the provider closest to recovery
    (``when_all_open: probe_nearest``). Returns the admission, the key to force a probe of
    on a later step (or None), and whether every breaker was looked at already."""
    chain = compiled.chain
    if (
        not looked_all
        and not any(a["status"] != "skipped" for a in attempts)
        and chain.when_all_open == "probe_nearest"
    ):
        # Nothing tried yet and this one is open: if every breaker of the chain is open,
        # probe the provider closest to recovery rather than fail without trying. (Only on
        # this rare path are the others looked at.)
        looked_all = True
        keys = [s.key for s in chain.steps]
        policies = [health.policies(s.provider)[0] for s in chain.steps]
        admissions: list[Admission] = yield Peek(
            keys=keys, policies=policies, now=wall(), left=left
        )
        if not any(a.allowed for a in admissions):
            nearest = keys[min(range(len(keys)), key=lambda i: admissions[i].retry_in)]
            if nearest == key:
                admission = yield Admit(key=key, policy=breaker, now=wall(), force=True, left=left)
            else:
                force_key = nearest
    return admission, force_key, looked_all


def quota_message(name: str, grant: QuotaGrant) -> str:
    """Why a call was not made: its provider's quota is used up."""
    room = "never, the request alone is over it" if grant.wait == float("inf") else (
        f"room in {grant.wait:.3g}s")  # fmt: skip
    return (
        f"{name}'s quota is used up ({grant.requests} requests, {grant.tokens} tokens in the "
        f"last minute); no call made ({room})"
    )


def skipped_for(admission: Admission | None, grant: QuotaGrant | None) -> float:
    """Seconds until a skipped attempt's provider could be called again."""
    if admission is not None and not admission.allowed:
        return admission.retry_in
    wait = grant.wait if grant is not None else 0.0
    return wait if wait != float("inf") else 60.0


def refusal(
    name: str,
    provider: Any,
    lookup_error: Exception | None,
    admission: Admission | None,
    small: str | None,
    grant: QuotaGrant | None,
    why: str | None,
    overrides: Mapping[str, Category],
) -> Outcome | None:
    """The outcome of an attempt that makes no call (its provider cannot be looked up, its
    breaker is open, its window too small, its quota used up; ``why``: a pool's own
    account), or None when the call may go."""
    if lookup_error is not None:
        return classify_exception(lookup_error, overrides)
    if provider is None:
        return coded("provider_not_found", f"no provider named '{name}' is registered", overrides)
    if admission is not None and not admission.allowed:
        return coded(
            "circuit_open",
            why
            or f"{name}'s breaker is {admission.state.replace('_', '-')}; "
            f"no call made (a probe in {admission.retry_in:.3g}s)",
            overrides,
        )
    if small is not None:
        return coded("context_too_small", small, overrides)
    if grant is not None and not grant.allowed:
        return coded("quota_exhausted", why or quota_message(name, grant), overrides)
    return None
