"""The breaker machine drawn from the definition the engine runs (``BREAKER_STATES`` and
``BREAKER_TRANSITIONS``), with the engine's default policy in the labels."""

from __future__ import annotations

import graphviz

from engine.health.breaker import BREAKER_STATES, BREAKER_TRANSITIONS
from engine.health.policy import BreakerPolicy

__all__ = ["breaker_dot", "breaker_mermaid"]

_COLOURS = {"closed": "#2e7d32", "open": "#c62828", "half_open": "#ef6c00"}


def _label(trigger: str, source: str, policy: BreakerPolicy) -> str:
    if trigger == "trip" and source == "closed":
        return (
            f"trip: {policy.failure_threshold} failures in a row, or >= "
            f"{policy.failure_rate:.0%} of >= {policy.min_calls} calls in {policy.window:g} s,"
            " or a Retry-After"
        )
    if trigger == "trip":
        return f"trip: a probe fails (cooldown x{policy.cooldown_multiplier:g})"
    if trigger == "cool":
        return (
            f"cool: after {policy.cooldown:g} s (x{policy.cooldown_multiplier:g} per opening,"
            f" <= {policy.cooldown_max:g} s)"
        )
    return "recover: a probe succeeds"


def _state_label(state: str, policy: BreakerPolicy) -> str:
    return {
        "closed": "closed\ncalls pass",
        "open": "open\ncalls skipped: circuit_open",
        "half_open": f"half_open\n{policy.half_open_probes} probe(s) at once",
    }[state]


def breaker_dot(policy: BreakerPolicy | None = None) -> str:
    """DOT source of the breaker machine."""
    policy = policy or BreakerPolicy()
    graph = graphviz.Digraph("breaker")
    graph.attr(rankdir="LR", label="provider circuit breaker (engine defaults)", labelloc="t")
    graph.attr("node", shape="box", style="rounded", fontname="Helvetica")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    for state in BREAKER_STATES:
        graph.node(state, label=_state_label(state, policy), color=_COLOURS[state])
    for trigger, source, dest in BREAKER_TRANSITIONS:
        graph.edge(source, dest, label=_label(trigger, source, policy), color=_COLOURS[dest])
    return str(graph.source)


def breaker_mermaid(policy: BreakerPolicy | None = None) -> str:
    """Mermaid source of the breaker machine."""
    policy = policy or BreakerPolicy()
    lines = ["stateDiagram-v2", "    direction LR", "    [*] --> closed"]
    for state in BREAKER_STATES:
        label = _state_label(state, policy).replace("\n", " - ")
        lines.append(f'    state "{label}" as {state}')
    for trigger, source, dest in BREAKER_TRANSITIONS:
        lines.append(f"    {source} --> {dest}: {_label(trigger, source, policy)}")
    return "\n".join(lines) + "\n"
