"""``explain``: where one outcome (an error code, or a bare category) leads from each step of
a chain, with its pools, its streams' policy and the rules its answers must meet; no provider
and no network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from engine.core.classify import rule_for
from engine.core.machine import CompiledChain
from engine.errors import ProviderError
from engine.types.outcomes import CATEGORIES, TAXONOMY

__all__ = ["explain"]


_STREAM_CODES: Final = frozenset({"first_token_timeout", "idle_timeout", "stream_error"})


def explain(
    compiled: CompiledChain,
    code: str | None,
    category: str | None,
    known: Callable[[str], bool] | None = None,
) -> list[str]:
    """Where an outcome (an error code, or a bare category) leads from each step; a step
    whose provider nobody declared is shown as what every call to it ends in."""
    chain = compiled.chain
    if code is not None:
        rule = rule_for(code, ProviderError)
        cat: str = chain.error_codes.get(code, rule.category)
        source = "the chain's error_codes" if code in chain.error_codes else "the taxonomy"
        transient = rule.transient
        head = (
            f"code {code}: {cat} (error_category {rule.error_category}, "
            f"{'transient' if transient else 'not transient'}; from {source})"
        )
        if code not in chain.error_codes and code not in TAXONOMY:
            head += "; an unknown code is a retryable provider_error"
    else:
        if category not in ("success", "retryable", "timeout", "non_retryable"):
            raise ValueError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
        cat, transient = str(category), category in ("retryable", "timeout")
        head = f"category {cat} ({'if transient' if transient else 'never transient'})"
    also = f", also called {', '.join(chain.spec.aliases)}" if chain.spec.aliases else ""
    lines = [f"chain '{chain.name}' (deadline {chain.deadline:g} s{also}): {head}"]
    pauses = chain.rate_limit_pause > 0 and (code == "429" or (code is None and cat == "retryable"))
    if pauses:
        lines.append(
            f"after a 429 the chain waits {chain.rate_limit_pause:g} s before the next step "
            "(rate_limit_pause; within the deadline)"
        )
    width = max(len(step.id) for step in chain.steps)
    for step in chain.steps:
        if cat == "success":
            where = "-> succeeded"
        else:
            dest = step.routes[cat]
            retry = step.retries > 0 and cat != "non_retryable" and transient
            if cat == "timeout":
                retry = retry and step.retry_timeouts
            where = f"-> {dest}"
            if retry:
                where = (
                    f"retry here up to {step.retries}x (waits <= {step.backoff_max:g} s, "
                    f"within the deadline), then -> {dest}"
                )
            if pauses and dest in chain.by_id:
                where += f" after a {chain.rate_limit_pause:g} s pause"
        if step.pool:
            weights = ", ".join(f"{m.provider} weight {m.weight:g}" for m in step.pool)
            where += f" [pool, {step.strategy}: {weights}"
            where += "; a retry goes to another member]" if step.retries else "]"
        if known is not None and not known(step.provider):
            where = (
                f"-> {step.routes['retryable']} (provider '{step.provider}' is not declared: "
                "every call ends provider_not_found)"
            )
        lines.append(f"  {step.id.ljust(width)}  {where}")
    hedged = [step for step in chain.steps if step.hedge is not None]
    if hedged or code == "hedge_lost":
        lines.append(
            "hedged steps (an attempt slower than this is sent again, the first success "
            "wins, the other copies are cancelled as hedge_lost; no hedge once the retry "
            "budget is spent):"
        )
        for step in hedged:
            assert step.hedge is not None
            target = "another member of the pool" if step.pool else "the same provider"
            lines.append(f"  {step.id.ljust(width)}  {step.hedge.describe()}, to {target}")
        if not hedged:
            lines.append("  (none in this chain)")
    checked = [(step, step.accept.rules()) for step in chain.steps]
    if code == "answer_rejected" or any(rules for _, rules in checked):
        lines.append(
            "answers checked before they count (a failure is answer_rejected; a json_schema "
            "response_format and the tools sent are checked too):"
        )
        for step, rules in checked:
            shown = ", ".join(rules) or "not blank; tool arguments match the tools sent"
            lines.append(f"  {step.id.ljust(width)}  {shown}")
    streamy = chain.on_midstream != "fail" or any(
        s.first_token_timeout or s.idle_timeout for s in chain.steps
    )
    if code not in _STREAM_CODES and not streamy:
        return lines
    cut = (
        "restart: the step's retryable route answers from the start, after a reset event"
        if chain.on_midstream == "restart"
        else "fail: the stream raises StreamInterruptedError, marked truncated"
    )
    lines.append(f"streams (a cut after the first chunk -> {cut}):")
    for step in chain.steps:
        first = step.first_token_timeout or step.timeout
        idle = step.idle_timeout or step.timeout
        lines.append(f"  {step.id.ljust(width)}  first token ≤{first:g} s, gaps ≤{idle:g} s")
    return lines
