"""The chains, providers and simulator script the gateway tests share: each test picks its
providers' behaviour by a word in its prompt (``RATE``, ``TOOL``, ``DOWN``, ``WAIT``, ...), so tests
sharing one gateway never depend on each other's order. Breakers are off here (a failure
one test asks for must not skip a provider in the next); the tests of breakers shared
through Redis start gateways of their own."""

from __future__ import annotations

from pathlib import Path

from helpers import write_chain

from engine.simulator import Behaviour, Script

CHAINS = {
    "direct": "aliases: [gpt-4o, claude-sonnet-4-5]\nsteps: [deepseek, openai]\n",
    "solo": "steps: [claude]\n",
    "default": "steps: [deepseek, claude]\n",
}
PROVIDERS = """providers:
  deepseek: {breaker: {enabled: false}}
  openai: {breaker: {enabled: false}}
  claude: {breaker: {enabled: false}}
"""
STORY = "Once upon a time there was a gateway that told the truth about every attempt."


def chains_folder(
    tmp: Path, chains: dict[str, str] | None = None, providers: str = PROVIDERS
) -> Path:
    folder = tmp / "chains"
    for name, text in (chains or CHAINS).items():
        write_chain(folder, name, text)
    (folder / "providers.yaml").write_text(providers)
    return folder


def script(extra: dict | None = None) -> Script:
    """The shared script, with ``extra`` prompt words of a test's own."""
    weather = {"city": "Paris"}
    prompts = {
        "RATE": {"deepseek": [Behaviour("rate_limit", retry_after=1)]},
        "TOOL": {
            "deepseek": [Behaviour("tool_call", tool="get_weather", arguments=weather)],
            "claude": [Behaviour("tool_call", tool="get_weather", arguments=weather)],
        },
        # a tool call, then (asked again with the tool's result) an answer
        "ROUNDTRIP": {
            "deepseek": [
                Behaviour("tool_call", tool="get_weather", arguments=weather),
                Behaviour("answer", text="It is sunny in Paris."),
            ]
        },
        "DOWN": {"deepseek": [Behaviour("unavailable")], "openai": [Behaviour("unavailable")]},
        "FILTER": {"deepseek": [Behaviour("content_filter")]},
        "CUT": {"deepseek": [Behaviour("answer", text=STORY, chunks=8, cut_after=3)]},
        "SLOW": {"deepseek": [Behaviour("answer", text=STORY, chunks=40, chunk_interval=0.05)]},
        "LONG": {"deepseek": [Behaviour("answer", text=STORY, chunks=20, chunk_interval=0.1)]},
        "WAIT": {"deepseek": [Behaviour("answer", text=STORY, delay=3)]},
    }
    providers = {name: [Behaviour("answer", text="4")] for name in ("deepseek", "openai", "claude")}
    return Script(providers, cycle=True, prompts={**prompts, **(extra or {})})
