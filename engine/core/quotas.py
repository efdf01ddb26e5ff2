"""Taking a call's share of its provider's quota before it goes (``quota: {rpm, tpm}`` in
providers.yaml; `engine.health.quota`), waiting for it up to the step's ``quota_wait``
within the deadline, and correcting the tokens taken by the usage the reply reports."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

from engine.core.actions import QuotaSettle, QuotaTake, Sleep
from engine.core.tokens import estimate_tokens
from engine.health import QuotaGrant, QuotaPolicy
from engine.health.quota import quota_key
from engine.types.completion import Completion
from engine.types.request import ChatRequest

__all__ = ["acquire", "quota_tokens", "settle_usage"]

#: Most waits for a quota in one attempt (each as long as the store says, all within
#: quota_wait and the deadline).
_WAITS: Final = 3


def quota_tokens(request: ChatRequest, policy: QuotaPolicy) -> int:
    """The tokens a call is expected to use (input estimated, plus the output it allows);
    0 when the quota counts no tokens."""
    if policy.tpm is None:
        return 0
    return estimate_tokens(request) + (request.max_tokens or 0)


def acquire(
    provider: str,
    policy: QuotaPolicy,
    tokens: int,
    wait_up_to: float,
    wall: Any,
    time_left: Any,
) -> Generator[Any, Any, QuotaGrant]:
    """Take the call's share of ``provider``'s quota; while refused, wait (as long as the
    store says, within ``wait_up_to`` seconds and the deadline) and ask again."""
    waited = 0.0
    for _ in range(_WAITS + 1):
        grant: QuotaGrant = yield QuotaTake(
            key=quota_key(provider), policy=policy, now=wall(), tokens=tokens, left=time_left()
        )
        if grant.allowed:
            return grant
        if waited + grant.wait > wait_up_to or grant.wait >= time_left():
            return grant
        waited += grant.wait
        yield Sleep(grant.wait)
    return grant


def settle_usage(
    provider: str, tokens: int, completion: Completion | None, now: float
) -> QuotaSettle | None:
    """The correction to make once the reply says what the call used (None: nothing to
    correct; a failure without usage keeps its estimate, to stay on the safe side)."""
    if not tokens or completion is None or not completion.tokens_total:
        return None
    delta = completion.tokens_total - tokens
    return QuotaSettle(key=quota_key(provider), now=now, tokens=delta) if delta else None
