"""How the shells perform the decision core's actions other than provider calls: a sleep on
the runtime's clock, or an operation on the health store within the attempt's time left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.actions import HealthOp, Sleep
from engine.core.runtime import Runtime
from engine.health import HealthConfig
from engine.health.deadline import HEALTH_BUDGET

__all__ = ["Performer"]


class Performer:
    """The part of an executor every shell shares: performing sleeps and health operations."""

    runtime: Runtime
    health: HealthConfig | None
    lookup: Callable[[str], Any]

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
        """The async twin of :meth:`perform` (the store's async operations)."""
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
