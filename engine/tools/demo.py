"""``torq-fallback demo``: every default mode's chain, over real HTTP, against the
simulator, with scripted faults; no API keys and no network needed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TextIO

from engine.core.streaming import Reset, TextDelta
from engine.errors import TorqError
from engine.manager.llm import LLMManager
from engine.tools.report import timeline
from engine.tools.simdemo import demo_script
from engine.tools.simulator import Behaviour, Script, Simulator, environment
from engine.types.meta import ExecutionMode

__all__ = ["run_demo"]

_PROMPTS = {
    ExecutionMode.DIRECT: "What is 2 + 2?",
    ExecutionMode.RESEARCH: "What do the sources say 2 + 2 is?",
    ExecutionMode.CODE_GENERATION: "Write a Python function that adds two integers.",
    ExecutionMode.COMPOSITION: "Plan an essay about arithmetic.",
    ExecutionMode.HIERARCHICAL: "Split this task into sub-tasks.",
}


def run_demo(out: TextIO, attempt_timeout: float = 1.0) -> int:
    """Run the demo scenario, printing a timeline per mode; return the number of modes
    that got an answer."""
    started = time.monotonic()
    answered = attempts = fallbacks = 0
    outcomes: dict[str, int] = {}
    with Simulator(demo_script()) as sim, environment(sim):
        print(
            f"provider simulator on http://{sim.host}:{sim.port} (fake keys, loopback only)",
            file=out,
        )
        print(f"every attempt times out after {attempt_timeout:g} s\n", file=out)
        with LLMManager(config={"provider_timeout": attempt_timeout}) as manager:
            for mode, prompt in _PROMPTS.items():
                chain = manager.chain_for(mode).chain
                order = " -> ".join(step.id for step in chain.steps)
                print(f"== {mode.value} (chain '{chain.name}': {order})", file=out)
                print(f"   prompt: {prompt}", file=out)
                text, meta = manager.generate_response(prompt, mode=mode)
                print(timeline(meta, indent="   "), file=out)
                last = meta.provider_attempts[-1]["next"]
                outcomes[last] = outcomes.get(last, 0) + 1
                if meta.error is None:
                    answered += 1
                    print(f"   answer ({meta.provider}, {meta.model}): {text}", file=out)
                else:
                    print(f"   failed ({meta.error_category}): {text}", file=out)
                if meta.fallback_used:
                    fallbacks += 1
                    print(f"   fallback_reason: {meta.fallback_reason}", file=out)
                attempts += len(meta.provider_attempts)
                print(file=out)
    _stream_demo(out)
    seconds = time.monotonic() - started
    failed = len(_PROMPTS) - answered
    print(
        f"summary: {len(_PROMPTS)} modes, {answered} answered, {failed} failed "
        f"({', '.join(f'{n} {state}' for state, n in sorted(outcomes.items()))}); "
        f"{attempts} attempts, {fallbacks} with fallback; {seconds:.1f} s",
        file=out,
    )
    return answered


_ANSWER = "Two plus two is four, and it always will be."

# (title, chain, what each provider does): streams that fall back before their first
# token, and a stream cut mid-way under each on_midstream policy.
_STREAMS = (
    (
        "a stream that falls back before its first token",
        "steps:\n  - {provider: deepseek, first_token_timeout: 0.3}\n  - claude\n",
        {"deepseek": [Behaviour("answer", first_token_delay=1)],
         "claude": [Behaviour("answer", text=_ANSWER, chunks=6)]},
    ),
    (
        "a stream cut mid-way, on_midstream: fail",
        "on_midstream: fail\nsteps: [claude, ollama]\n",
        {"claude": [Behaviour("answer", text=_ANSWER, chunks=6, cut_after=3)],
         "ollama": [Behaviour("answer", text=_ANSWER, chunks=4)]},
    ),
    (
        "a stream cut mid-way, on_midstream: restart",
        "on_midstream: restart\nsteps: [claude, ollama]\n",
        {"claude": [Behaviour("answer", text=_ANSWER, chunks=6, cut_after=3)],
         "ollama": [Behaviour("answer", text=_ANSWER, chunks=4)]},
    ),
)  # fmt: skip


def _stream_demo(out: TextIO) -> None:
    """Streamed answers: what the caller sees, chunk by chunk, and the attempts."""
    for title, chain, script in _STREAMS:
        with tempfile.TemporaryDirectory() as folder, Simulator(Script(script)) as sim:
            (Path(folder) / "default.yaml").write_text(chain)
            with environment(sim), LLMManager(config={"chains_dir": folder}) as manager:
                print(f"== streaming: {title}", file=out)
                stream = manager.stream(
                    [{"role": "user", "content": "What is 2 + 2?"}], mode="composition"
                )
                shown: list[str] = []
                try:
                    for event in stream:
                        if isinstance(event, Reset):
                            shown.append(f" [reset: discard the above; {event.provider} answers]")
                        elif isinstance(event, TextDelta):
                            shown.append(event.text + "|")
                    ending = "(complete)"
                except TorqError as error:
                    ending = f"(interrupted: {type(error).__name__}, truncated)"
                print(f"   chunks seen: {''.join(shown)} {ending}", file=out)
                print(timeline(stream.meta, indent="   "), file=out)
                print(file=out)
