"""The model catalogue beside the prices: each model's context window and longest output, with
list defaults for the built-ins' usual models, overridable per provider in providers.yaml
(``models: {gpt-4o: {context: 128000, max_output: 16384}}``). A step or pool member whose
window cannot hold a request is skipped before any call (``context_too_small``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PRICES", "WINDOWS", "ModelInfo", "ModelPrice", "ModelWindow", "window_of"]

#: (context window, longest output) in tokens; None: not known.
ModelWindow = tuple[int, int | None]


class ModelInfo(BaseModel):
    """What a model can hold, as providers.yaml writes it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    context: int = Field(ge=1, description="Context window, in tokens (input and output).")
    max_output: int | None = Field(default=None, ge=1, description="Longest output, in tokens.")


#: (input, output, cache read, cache write) USD per million tokens; None: the input price.
ModelPrice = tuple[float, float, float | None, float | None]

#: Engine defaults: list prices (USD per million tokens: input, output, prompt-cache read,
#: prompt-cache write) of the built-ins' usual models when this version was written.
#: Prices change: set yours in providers.yaml.
PRICES: Final[Mapping[str, Mapping[str, ModelPrice]]] = {
    "deepseek": {
        "deepseek-chat": (0.27, 1.10, 0.07, None),
        "deepseek-reasoner": (0.55, 2.19, 0.14, None),
    },
    "openai": {
        "gpt-4.1-mini": (0.40, 1.60, 0.10, None), "gpt-4.1-nano": (0.10, 0.40, 0.025, None),
        "gpt-4.1": (2.00, 8.00, 0.50, None), "gpt-4o-mini": (0.15, 0.60, 0.075, None),
        "gpt-4o": (2.50, 10.00, 1.25, None),
    },
    "claude": {
        "claude-sonnet-4-5": (3.00, 15.00, 0.30, 3.75),
        "claude-haiku-4-5": (1.00, 5.00, 0.10, 1.25),
        "claude-opus-4-1": (15.00, 75.00, 1.50, 18.75),
    },
    "ollama": {"": (0.0, 0.0, None, None)},  # local: every model is free to run
}  # fmt: skip


#: Engine defaults: the built-ins' usual models when this version was written. Set yours
#: in providers.yaml; a model named here matches every model whose name starts with it.
WINDOWS: Final[Mapping[str, Mapping[str, ModelWindow]]] = {
    "deepseek": {"deepseek-chat": (128_000, 8_192), "deepseek-reasoner": (128_000, 65_536)},
    "openai": {
        "gpt-4.1": (1_047_576, 32_768), "gpt-4o": (128_000, 16_384),
        "gpt-4o-mini": (128_000, 16_384),
    },
    "claude": {
        "claude-sonnet-4-5": (200_000, 64_000), "claude-haiku-4-5": (200_000, 64_000),
        "claude-opus-4-1": (200_000, 32_000),
    },
    # Ollama's window is whatever the server was started with (num_ctx): not assumed.
    "ollama": {},
}  # fmt: skip


def window_of(models: Mapping[str, ModelWindow], model: str | None) -> ModelWindow | None:
    """A model's window: its own entry, else the longest entry its name starts with
    ("gpt-4o-2024-08-06" is "gpt-4o"), else None (unknown: never skipped for it)."""
    if not model:
        return None
    found = models.get(model)
    if found is not None:
        return found
    known = [name for name in models if model.startswith(name)]
    return models[max(known, key=len)] if known else None
