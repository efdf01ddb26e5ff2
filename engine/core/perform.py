"""The shells: how the decision core's actions are performed, with blocking I/O
(`Performer.drive`) or awaited (`Performer.adrive`): a provider call, a hedged
race, a sleep on the runtime's clock, an operation on the health store within the
attempt's time left. The same decisions take the same path in both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from engine.core.actions import Call, Decisions, HealthOp, Sleep
from engine.core.racing import RACE_OPS, SyncRace, TaskRace
from engine.core.runtime import Runtime
from engine.health import HealthConfig
from engine.health.deadline import HEALTH_BUDGET
from engine.providers.base import acall, call
from engine.types.completion import Completion

__all__ = ["Performer"]


class Performer:
    """The part of an executor every shell shares: performing sleeps and health operations."""

    runtime: Runtime
    health: HealthConfig | None
    lookup: Callable[[str], Any]
    #: Makes a sync shell's race, given how one streamed copy is performed (None: plain).
    thread_race: Callable[[Any], SyncRace]

    def drive(self, decisions: Decisions) -> Completion:
        """The sync shell: perform ``decisions``' actions with blocking I/O until it
        returns the answer (or raises the chain's failure)."""
        result: Any = None
        racing: SyncRace | None = None
        # An in-process health store does no I/O: its operations are done at once.
        store = self.health.store if self.health is not None else None
        local = store if getattr(store, "in_process", False) else None
        try:
            while True:
                action = decisions.send(result)
                if type(action) is Call:  # the actions are final classes: no isinstance
                    result = call(action.provider, action.request, action.timeout, action.model)
                elif local is not None and isinstance(action, HealthOp):
                    result = action.run(local)
                elif isinstance(action, RACE_OPS):
                    if racing is None:
                        racing = self.thread_race(None)
                    result = racing.do(action)  # type: ignore[arg-type]
                else:
                    result = self.perform(cast("Sleep | HealthOp", action))
        except StopIteration as done:
            answer: Completion = done.value
            return answer
        finally:
            if racing is not None:
                racing.close()
            decisions.close()  # a call abandoned mid-way (an exception) ends its bookkeeping

    async def adrive(self, decisions: Decisions) -> Completion:
        """The async shell: the same decisions, awaited I/O."""
        result: Any = None
        racing: TaskRace | None = None
        # An in-process health store does no I/O: its operations are done at once.
        store = self.health.store if self.health is not None else None
        local = store if getattr(store, "in_process", False) else None
        try:
            while True:
                action = decisions.send(result)
                if type(action) is Call:  # the actions are final classes: no isinstance
                    result = await acall(
                        action.provider, action.request, action.timeout, action.model
                    )
                elif local is not None and isinstance(action, HealthOp):
                    result = action.run(local)
                elif isinstance(action, RACE_OPS):
                    if racing is None:
                        racing = TaskRace(self.runtime.monotonic)
                    result = await racing.do(action)  # type: ignore[arg-type]
                else:
                    result = await self.aperform(cast("Sleep | HealthOp", action))
        except StopIteration as done:
            answer: Completion = done.value
            return answer
        finally:
            if racing is not None:
                await racing.aclose()
            decisions.close()  # cancelled mid-call: the core's bookkeeping ends now

    def perform(self, action: Sleep | HealthOp) -> Any:
        """Perform an action other than a provider call (every shell shares this)."""
        if isinstance(action, Sleep):
            self.runtime.sleep(action.seconds)
            return None
        assert self.health is not None
        if getattr(self.health.store, "in_process", False):  # no I/O: no time budget to set
            return action.run(self.health.store)
        token = HEALTH_BUDGET.set(action.left)
        try:
            return action.run(self.health.store)
        finally:
            HEALTH_BUDGET.reset(token)

    async def aperform(self, action: Sleep | HealthOp) -> Any:
        """The async twin of `perform` (the store's async operations)."""
        if isinstance(action, Sleep):
            await self.runtime.asleep(action.seconds)
            return None
        assert self.health is not None
        if getattr(self.health.store, "in_process", False):  # no I/O, no wait: at once
            return action.run(self.health.store)
        token = HEALTH_BUDGET.set(action.left)
        try:
            return await action.arun(self.health.store)
        finally:
            HEALTH_BUDGET.reset(token)

    def quiet_lookup(self, name: str) -> Any:
        """The provider registered under ``name``, or None when its lookup fails (the
        attempt's own lookup reports that failure)."""
        try:
            return self.lookup(name)
        except Exception:  # only a price is asked of it here; the attempt's lookup reports
            return None
