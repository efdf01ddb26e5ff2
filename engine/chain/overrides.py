"""Chains derived from a chain for one call or one configuration: the same steps in another
order, or every step with another timeout (overrides validated by the loader's ``rebuild``)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.chain.spec import Chain, ChainSpec, StepSpec, _as_step

__all__ = ["with_order", "with_timeout"]


def with_order(chain: Chain, providers: Sequence[str]) -> ChainSpec:
    """A spec whose steps are ``providers`` in that order, replacing the chain's order.

    Each provider keeps the settings (model, timeout, retries, backoff) of the chain's first
    step for it; routes fall back to the chain's defaults, since the jumps written for the
    old order may not fit the new one.
    """
    templates: dict[str, StepSpec] = {}
    for entry in chain.spec.steps:
        step = _as_step(entry)
        if step.provider is not None:  # a pool is no template for one provider
            templates.setdefault(step.provider, step)
    steps: list[str | StepSpec] = []
    for provider in providers:
        template = templates.get(provider)
        if template is None:
            steps.append(provider)
        else:
            steps.append(template.model_copy(update={"id": None, "goto": None}))
    return chain.spec.model_copy(update={"steps": steps})


def with_timeout(spec: ChainSpec, timeout: float) -> ChainSpec:
    """A spec where every step's per-attempt timeout is ``timeout`` seconds."""
    steps = [_as_step(entry).model_copy(update={"timeout": timeout}) for entry in spec.steps]
    return spec.model_copy(update={"steps": steps})
