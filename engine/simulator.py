"""The provider simulator at its documented path (it lives in `engine.tools.simulator`)."""

from engine.tools.simulator import (
    PRESETS,
    Behaviour,
    Request,
    Script,
    Simulator,
    environment,
    fake_key,
    load_script,
)

__all__ = [
    "PRESETS",
    "Behaviour",
    "Request",
    "Script",
    "Simulator",
    "environment",
    "fake_key",
    "load_script",
]
