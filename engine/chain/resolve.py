"""A validated chain spec resolved into a runnable `Chain`: every
setting known (the step's, else the chain's ``defaults``, else the built-ins), every route a
machine state, pools resolved into members and acceptance rules compiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.chain.accept import resolve_acceptance
from engine.chain.hedge import resolve_hedge
from engine.chain.pools import DEFAULT_SLOW_START, as_member
from engine.chain.spec import (
    _KEYWORD_DEST,
    BUILTIN_DEFAULTS,
    BUILTIN_GOTO,
    EXHAUSTED,
    Chain,
    ChainSpec,
    Step,
    StepSpec,
    _as_step,
    _step_id,
)
from engine.types.outcomes import FAILURE_CATEGORIES

__all__ = ["build_chain"]


def _target(spec: ChainSpec, step: StepSpec, category: str) -> str:
    for goto in (step.goto, spec.defaults.goto):
        if goto is not None and getattr(goto, category) is not None:
            return str(getattr(goto, category))
    return BUILTIN_GOTO[category]


def _setting(spec: ChainSpec, step: StepSpec, name: str) -> Any:
    value = getattr(step, name)
    if value is None:
        value = getattr(spec.defaults, name)
    return BUILTIN_DEFAULTS[name] if value is None else value


def _optional(spec: ChainSpec, step: StepSpec, name: str) -> float | None:
    value = getattr(step, name)
    if value is None:
        value = getattr(spec.defaults, name)
    return None if value is None else float(value)


def _params(spec: ChainSpec, step: StepSpec) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for params in (spec.defaults.params, step.params):
        if params is not None:
            merged.update(params.model_dump(exclude_none=True))
    return merged


def build_chain(spec: ChainSpec, name: str, source: str, base: Path | None = None) -> Chain:
    """Resolve a spec that `check_chain` found sound (and whose
    schemas compile) into a `Chain`; ``base``: where ``schema_file`` paths start."""
    entries = [_as_step(entry) for entry in spec.steps]
    ids = [_step_id(entry) for entry in entries]
    steps: list[Step] = []
    for index, entry in enumerate(entries):
        pool = tuple(as_member(m, entry.model) for m in entry.pool or ())
        routes: dict[str, str] = {}
        for category in FAILURE_CATEGORIES:
            target = _target(spec, entry, category)
            if target == "next":
                routes[category] = ids[index + 1] if index + 1 < len(ids) else EXHAUSTED
            else:
                routes[category] = _KEYWORD_DEST.get(target, target)
        steps.append(
            Step(
                id=ids[index],
                provider=pool[0].provider if pool else str(entry.provider),
                model=entry.model,
                timeout=float(_setting(spec, entry, "timeout")),
                retries=int(_setting(spec, entry, "retries")),
                retry_timeouts=bool(_setting(spec, entry, "retry_timeouts")),
                backoff_base=float(_setting(spec, entry, "backoff_base")),
                backoff_max=float(_setting(spec, entry, "backoff_max")),
                routes=routes,
                params=_params(spec, entry),
                first_token_timeout=_optional(spec, entry, "first_token_timeout"),
                idle_timeout=_optional(spec, entry, "idle_timeout"),
                accept=resolve_acceptance(spec.defaults.accept, entry.accept, base),
                pool=pool,
                strategy=entry.strategy or "weighted",
                slow_start=DEFAULT_SLOW_START if entry.slow_start is None else entry.slow_start,
                quota_wait=float(_setting(spec, entry, "quota_wait")),
                hedge=resolve_hedge(entry.hedge),
            )
        )
    return Chain(
        name=name,
        source=source,
        spec=spec,
        steps=tuple(steps),
        error_codes=dict(spec.error_codes),
        by_id={step.id: step for step in steps},
        base=base,
    )
