"""The host's provider objects: async, ``generate_response(prompt, **kwargs)``, a ``model``
attribute; this one plays a script (an exception to raise, or the text to answer, per call)."""

from __future__ import annotations

import asyncio
from typing import Any


class ScriptedProvider:
    def __init__(self, model: str, *script: Any) -> None:
        self.model = model
        self.script = list(script)
        self.prompts: list[str] = []

    async def generate_response(self, prompt: str, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        await asyncio.sleep(0)  # a real await, as a network call would
        item = self.script.pop(0) if self.script else "an answer"
        if isinstance(item, BaseException):
            raise item
        return str(item)

    @property
    def called(self) -> bool:
        return bool(self.prompts)
