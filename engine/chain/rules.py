"""The rules a chain spec must follow beyond its schema: unique and valid step ids, targets
that name a later step, steps that can be reached, no backward or self jumps, and a bounded
number of steps; every problem located by its path in the file."""

from __future__ import annotations

from collections.abc import Sequence

from engine.chain.pools import as_member
from engine.chain.resolve import _target
from engine.chain.spec import (
    _ID_PATTERN,
    _IDS_SHOWN,
    _RESERVED_IDS,
    KEYWORD_TARGETS,
    ChainSpec,
    Loc,
    StepSpec,
    _as_step,
    _step_id,
)
from engine.types.outcomes import FAILURE_CATEGORIES

__all__ = ["check_chain"]


def _excerpt(text: str, limit: int = 40) -> str:
    shown = text[:limit].encode("unicode_escape").decode("ascii")
    return shown + ("…" if len(text) > limit else "")


def _suggest(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _hedge_problems(step: StepSpec, index: int) -> list[tuple[Loc, str]]:
    """A hedge waits a positive number of seconds, and a floor goes with a percentile."""
    hedge = step.hedge
    if hedge is None:
        return []
    here: Loc = ("steps", index, "hedge")
    if not isinstance(hedge.after, str) and hedge.after <= 0:
        return [((*here, "after"), "after must be more than 0 seconds (or p90, p95, ...)")]
    if not isinstance(hedge.after, str) and hedge.floor is not None:
        return [((*here, "floor"), "floor goes with a percentile after (e.g. after: p95)")]
    return []


def _pool_problems(step: StepSpec, index: int) -> list[tuple[Loc, str]]:
    """A step names one provider or a pool (with an id), and a pool each member once."""
    here: Loc = ("steps", index)
    if step.pool is None:
        missing = ((*here, "provider"), "required key 'provider' is missing (or write a pool)")
        problems = [] if step.provider else [missing]
        for name in ("strategy", "slow_start"):
            if getattr(step, name) is not None:
                problems.append(((*here, name), f"{name} applies to a pool; this step has none"))
        return problems
    if step.provider is not None:
        return [((*here, "pool"), "write provider or pool, not both")]
    problems = []
    if step.id is None:
        problems.append(((*here, "pool"), "a pool step needs an id (e.g. id: gpt)"))
    seen: dict[tuple[str, str | None], int] = {}
    for number, entry in enumerate(step.pool):
        member = as_member(entry, step.model)
        key = (member.provider, member.model)
        if key in seen:
            what = member.provider + (f" (model {member.model})" if member.model else "")
            problems.append(
                ((*here, "pool", number), f"{what} is already member {seen[key] + 1} of the pool")
            )
        seen.setdefault(key, number)
    return problems


def check_chain(spec: ChainSpec, *, reachability: bool = True) -> list[tuple[Loc, str]]:
    """Problems pydantic cannot see: ids, targets, reachability, termination.

    Returns ``(location, message)`` pairs; an empty list means the chain is sound. Only
    forward jumps are allowed and retries are bounded, so a sound chain always terminates
    within `Chain.max_attempts` attempts.
    """
    problems: list[tuple[Loc, str]] = []
    ids = [_step_id(entry) for entry in spec.steps]
    seen: dict[str, int] = {}
    for index, (entry, sid) in enumerate(zip(spec.steps, ids, strict=True)):
        loc: Loc = ("steps", index) if isinstance(entry, str) else ("steps", index, "id")
        if isinstance(entry, StepSpec):
            found = _pool_problems(entry, index)
            problems += found + _hedge_problems(entry, index)
            if found and not sid:
                continue  # the id problem is the pool's (named above)
        if isinstance(entry, StepSpec) and entry.id is None:
            loc = ("steps", index, "provider")
        if not _ID_PATTERN.match(sid):
            problems.append(
                (
                    loc,
                    f"step id '{_excerpt(sid)}' must start with a letter and use only letters, "
                    "digits, _ . - (at most 100 characters)",
                )
            )
        elif sid in _RESERVED_IDS:
            problems.append((loc, f"step id '{sid}' is reserved; give the step another id"))
        if sid in seen:
            problems.append(
                (
                    loc,
                    f"duplicate step id '{sid}' (also step {seen[sid] + 1}); "
                    "give one of them its own `id:`",
                )
            )
        else:
            seen[sid] = index

    if spec.defaults.goto is not None:
        for category in FAILURE_CATEGORIES:
            target = getattr(spec.defaults.goto, category)
            if target is not None and target not in KEYWORD_TARGETS:
                hint = _suggest(target[:100], KEYWORD_TARGETS)
                problems.append(
                    (
                        ("defaults", "goto", category),
                        f"'{_excerpt(target)}' is not allowed in defaults: "
                        f"use next, abort or exhausted{hint}",
                    )
                )

    position = {sid: i for i, sid in reversed(list(enumerate(ids)))}
    reachable = [False] * len(ids)
    reachable[0] = True
    for index, entry in enumerate(spec.steps):
        step = _as_step(entry)
        for category in FAILURE_CATEGORIES:
            target = _target(spec, step, category)
            written_here = step.goto is not None and getattr(step.goto, category) is not None
            dest_index: int | None
            if not written_here and target not in KEYWORD_TARGETS:
                dest_index = None  # a bad default, reported once above
            elif target == "next":
                dest_index = index + 1 if index + 1 < len(ids) else None
            elif target in KEYWORD_TARGETS:
                dest_index = None
            elif target in position:
                dest_index = position[target]
                if dest_index <= index:
                    what = "itself" if dest_index == index else f"an earlier step '{target}'"
                    problems.append(
                        (
                            ("steps", index, "goto", category),
                            f"jumps back to {what}, which could loop forever; "
                            "a goto must name a later step (use retries to try a step again)",
                        )
                    )
                    dest_index = None
            else:
                hint = _suggest(target[:100], [*KEYWORD_TARGETS, *ids])
                later = list(dict.fromkeys(ids[index + 1 :]))
                shown = ", ".join(later[:_IDS_SHOWN]) or "(no later step)"
                if len(later) > _IDS_SHOWN:
                    shown += f", … ({len(later) - _IDS_SHOWN} more)"
                problems.append(
                    (
                        ("steps", index, "goto", category),
                        f"'{_excerpt(target)}' names no step; use next, abort, exhausted "
                        f"or a later step: {shown}{hint}",
                    )
                )
                dest_index = None
            if reachable[index] and dest_index is not None:
                reachable[dest_index] = True
    for index, ok in enumerate(reachable):
        if reachability and not ok:
            problems.append(
                (
                    ("steps", index),
                    f"step '{ids[index]}' can never be reached: no earlier step leads to it",
                )
            )
    return problems
