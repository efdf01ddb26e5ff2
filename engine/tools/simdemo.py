"""The demo's script for the simulator: each mode's prompt meets real faults (a rate limit that
opens a breaker, a timeout, an overload, a prompt too long, a reply that is not JSON, a
refusal) and the streams that fall back or are cut."""

from __future__ import annotations

from engine.tools.simscript import (
    Behaviour,
    Script,
)

__all__ = ["demo_script"]


def demo_script() -> Script:
    """The scenario ``torq-fallback demo`` plays, mode by mode (direct, research,
    code_generation, composition, hierarchical): real fallbacks, a breaker that opens and
    is skipped, and one abort. Replies are chosen by prompt, so a different attempt timeout
    changes which attempts time out, never which answer a prompt gets."""
    return Script(
        prompts={
            "What is 2 + 2?": {  # direct
                # rate-limited for 30 s: deepseek's breaker opens, and every later chain
                # skips it (circuit_open, no call) instead of asking again
                "deepseek": [Behaviour("rate_limit", retry_after=30)],
                "openai": [Behaviour("answer", text="4.", delay=1.5)],  # slower than 1 s
                "claude": [Behaviour("answer", text="2 + 2 = 4.")],
            },
            "What do the sources say": {  # research
                "claude": [Behaviour("overloaded")],  # 529
                "openai": [Behaviour("malformed")],  # a reply that is not JSON
                "ollama": [Behaviour("answer", text="Three sources agree: the answer is 4.")],
            },
            "Write a Python function": {  # code_generation
                "claude": [Behaviour("context_length")],  # prompt too long
                "openai": [
                    Behaviour("answer", text="def add(a: int, b: int) -> int:\n    return a + b")
                ],
            },
            "Plan an essay": {  # composition
                "claude": [Behaviour("answer", text="Plan: outline, draft, review.")],
            },
            "Split this task": {  # hierarchical
                "claude": [Behaviour("refusal")],  # the model refuses: the chain aborts
            },
        },
        cycle=True,
    )
