"""A chain compiled into a ``transitions`` state machine: the only place that decides where
an outcome leads.

States are the chain's steps plus the final states ``succeeded``, ``exhausted`` and
``aborted``. Triggers are outcome categories (``success``, ``retryable``, ``timeout``,
``non_retryable``) plus ``deadline_exceeded``. A step that may retry has a self-loop, tried
first, guarded by ``can_retry``: the outcome is transient, retries are left, and the
longest the wait could be (``bound``, not the jittered draw) fits under ``backoff_max`` and
before the deadline. Otherwise the category's route is taken.

The machine is built once per chain (``model=None``); each request moves a small
`Run` through it, so nothing is built per request. A chain's machine has no
callbacks (no ``before``/``after``/``prepare``, no state ``on_enter``/``on_exit``, no
machine-wide hooks: what happens around a transition is the executor's business), so its
events and transitions are ``transitions``' own classes with the callback plumbing left out:
a trigger is the same lookup of the model's state, the same ordered transitions with their
conditions, and the same ``Machine.set_state``, at a third of the cost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from transitions import Event, EventData, Machine, Transition

from engine.chain.spec import EXHAUSTED, FINAL_STATES, SUCCEEDED, Chain, Step

__all__ = ["TRIGGERS", "CompiledChain", "Edge", "Run", "compile_chain", "edges"]

#: Every trigger a chain machine knows. ``cut``: a stream broke after its first chunk.
TRIGGERS: Final = ("success", "retryable", "timeout", "non_retryable", "deadline_exceeded", "cut")
_RETRIABLE_TRIGGERS: Final = ("retryable", "timeout")

# At INFO every trigger costs several times more; leave it alone if the application chose.
_transitions_logger = logging.getLogger("transitions")
if _transitions_logger.level == logging.NOTSET:
    _transitions_logger.setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Edge:
    """One transition of a chain's machine, as data (also what diagrams draw).

    ``kind`` is ``retry`` for a guarded self-loop, ``route`` for a category's route,
    ``success``, ``deadline``, or ``cut`` (a stream cut mid-way: to ``exhausted`` when the
    chain's ``on_midstream`` is ``fail``, along the step's retryable route for ``restart``).
    """

    trigger: str
    source: str
    dest: str
    kind: str


class Run:
    """The per-request model moved through a compiled machine."""

    __slots__ = ("deadline", "retries_used", "state")

    def __init__(self, state: str, deadline: float) -> None:
        self.state = state
        self.deadline = deadline
        self.retries_used = 0


class _ChainTransition(Transition):
    """A transition of a machine without callbacks: its conditions, then the state change."""

    dest: str

    def execute(self, event_data: EventData) -> bool:
        for condition in self.conditions:
            if not condition.check(event_data):
                return False
        event_data.machine.set_state(self.dest, event_data.model)  # every edge has a dest
        return True


class _ChainEvent(Event):
    """A trigger of a machine that is never queued and has no callbacks: the transitions
    from the model's state are tried in order until one executes (an unconditional one
    executes at once: without callbacks, executing it is setting the state)."""

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        state = self.machine.get_model_state(model)
        if not self._is_valid_source(state):
            return False
        event_data: EventData | None = None  # made only for a transition with conditions
        for transition in self.transitions[state.name]:
            if not transition.conditions:  # the route every trigger ends on: it executes
                self.machine.set_state(cast(str, transition.dest), model)
                return True
            if event_data is None:
                event_data = EventData(state, self, self.machine, model, args=args, kwargs=kwargs)
            event_data.transition = transition
            if transition.execute(event_data):
                return True
        return False


class _ChainMachine(Machine):
    event_cls = _ChainEvent
    transition_cls = _ChainTransition


def _without_callbacks(machine: Machine) -> None:
    """The lean classes above leave callbacks out: a chain's machine must have none."""
    hooks = [machine.before_state_change, machine.after_state_change, machine.prepare_event,
             machine.finalize_event, machine.on_exception, machine.on_final]  # fmt: skip
    hooks += [h for state in machine.states.values() for h in (state.on_enter, state.on_exit)]
    for event in machine.events.values():
        for found in event.transitions.values():
            hooks += [h for t in found for h in (t.prepare, t.before, t.after)]
    if any(hooks) or machine.has_queue:
        raise RuntimeError("a chain's machine runs without callbacks and without a queue")


def edges(chain: Chain) -> list[Edge]:
    """The transitions of ``chain``'s machine, in the order they are tried."""
    out: list[Edge] = []
    for step in chain.steps:
        out.append(Edge("success", step.id, SUCCEEDED, "success"))
        for trigger in ("retryable", "timeout", "non_retryable"):
            if _may_retry(step, trigger):
                out.append(Edge(trigger, step.id, step.id, "retry"))
            out.append(Edge(trigger, step.id, step.routes[trigger], "route"))
        out.append(Edge("deadline_exceeded", step.id, EXHAUSTED, "deadline"))
        cut_to = step.routes["retryable"] if chain.on_midstream == "restart" else EXHAUSTED
        out.append(Edge("cut", step.id, cut_to, "cut"))
    return out


def _may_retry(step: Step, trigger: str) -> bool:
    if step.retries <= 0 or trigger not in _RETRIABLE_TRIGGERS:
        return False
    return trigger != "timeout" or step.retry_timeouts


def _retry_guard(step: Step) -> Callable[[Any], bool]:
    def can_retry(event: Any) -> bool:
        run: Run = event.model
        data = event.kwargs
        return bool(
            data["transient"]
            and data.get("budget", True)
            and run.retries_used < step.retries
            and data["bound"] <= step.backoff_max
            and data["now"] + data["bound"] < run.deadline
        )

    return can_retry


class CompiledChain:
    """A chain with its machine, built once and shared by every request."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.initial = chain.steps[0].id
        self.edges: Sequence[Edge] = tuple(edges(chain))
        guards = {step.id: _retry_guard(step) for step in chain.steps}
        transitions = [
            {
                "trigger": e.trigger,
                "source": e.source,
                "dest": e.dest,
                **({"conditions": [guards[e.source]]} if e.kind == "retry" else {}),
            }
            for e in self.edges
        ]
        states = [step.id for step in chain.steps] + [
            {"name": name, "final": True} for name in FINAL_STATES
        ]
        self.machine = _ChainMachine(
            model=None,
            states=states,
            transitions=transitions,
            initial=self.initial,
            auto_transitions=False,
            send_event=True,
        )
        _without_callbacks(self.machine)
        self._events = {name: self.machine.events[name] for name in TRIGGERS}
        #: Every validator the chain's ``accept`` rules name (registered in code).
        self.validator_names: frozenset[str] = frozenset(
            name for step in chain.steps for name in step.accept.validators
        )

    def start(self, deadline: float) -> Run:
        """A fresh run at the chain's first step."""
        return Run(self.initial, deadline)

    def fire(
        self,
        run: Run,
        trigger: str,
        *,
        transient: bool,
        bound: float,
        now: float,
        budget: bool = True,
    ) -> str:
        """Move ``run`` by ``trigger``; return the state it is in afterwards. ``bound`` is the
        longest a retry's wait could be (see `backoff_bound`);
        ``budget`` whether the provider's retry budget allows one more retry."""
        moved = self._events[trigger].trigger(
            run, transient=transient, bound=bound, now=now, budget=budget
        )
        if not moved:  # every trigger has an unguarded route, so this is a bug, not input
            raise RuntimeError(f"no transition for {trigger!r} from {run.state!r}")
        return run.state


def compile_chain(chain: Chain) -> CompiledChain:
    """Compile ``chain`` into its state machine."""
    return CompiledChain(chain)
