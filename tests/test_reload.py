"""Chains that change while the application runs: on demand and watched, with real file
writes, atomic-save renames, half-written files and deletions; overrides still apply;
running requests keep the chain they started with."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest
from helpers import Scripted, chains_dir

from engine import LLMManager


def providers(n: int = 50):
    return {
        name: Scripted(*[f"from {name}"] * n) for name in ("deepseek", "openai", "claude", "ollama")
    }


def order(manager: LLMManager, mode: str = "direct") -> list[str]:
    return [step.provider for step in manager.chain_for(mode).chain.steps]


def test_reload_on_demand_applies_a_valid_edit(tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers()})
    (folder / "direct.yaml").write_text("steps: [claude, ollama]\n")
    status = manager.reload()
    assert order(manager) == ["claude", "ollama"]
    assert status["direct"]["last_error"] is None and status["direct"]["source"].endswith(
        "direct.yaml"
    )
    text, _ = manager.generate_response("hi")
    assert text == "from claude"


def test_an_invalid_or_half_written_edit_keeps_the_previous_chain(tmp_path, caplog):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, openai]\n"})
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers()})
    path = folder / "direct.yaml"
    path.write_text("steps:\n  - {provider: claude, timout: 3}\n")  # a typo
    caplog.set_level(logging.WARNING, logger="engine.reload")
    manager.reload()
    manager.reload()  # the same problem is logged once, not per reload
    status = manager.chain_status()["direct"]
    assert order(manager) == ["deepseek", "openai"]
    assert f"{path}:2:" in status["last_error"] and "did you mean 'timeout'" in status["last_error"]
    assert len([r for r in caplog.records if "timout" in r.getMessage()]) == 1
    path.write_text("steps:\n  - {provider: claude, time")  # saved halfway
    manager.reload()
    assert order(manager) == ["deepseek", "openai"]
    path.write_text("steps:\n  - {provider: claude, timeout: 3}\n")  # the next complete write
    manager.reload()
    assert order(manager) == ["claude"] and manager.chain_status()["direct"]["last_error"] is None


def test_atomic_saves_deletions_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("TORQ_RESEARCH_CHAIN", "ollama,claude")
    folder = chains_dir(
        tmp_path, {"direct": "steps: [deepseek]\n", "research": "steps: [openai]\n"}
    )
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers()})
    temp = folder / ".direct.yaml.swp"
    temp.write_text("steps: [openai, claude]\n")
    os.replace(temp, folder / "direct.yaml")  # how editors save atomically
    (folder / "research.yaml").write_text("defaults: {timeout: 7}\nsteps: [openai]\n")
    manager.reload()
    assert order(manager) == ["openai", "claude"]
    research = manager.chain_for("research").chain
    assert [s.provider for s in research.steps] == ["ollama", "claude"]  # the env still wins
    (folder / "direct.yaml").unlink()
    manager.reload()
    assert order(manager) == ["deepseek", "claude"]  # direct now runs the default chain


@pytest.mark.parametrize("call", ["sync", "async"])
def test_watching_applies_changes_without_a_call(tmp_path, call):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek]\n"})
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers(),
                                 "reload": True, "reload_interval": 0.05})  # fmt: skip
    try:
        time.sleep(0.05)
        (folder / "direct.yaml").write_text("steps: [ollama]\n")
        for _ in range(100):
            if order(manager) == ["ollama"]:
                break
            time.sleep(0.05)
        if call == "sync":
            text, _ = manager.generate_response("hi")
        else:
            text, _ = asyncio.run(manager.agenerate_response("hi"))
        assert text == "from ollama"
    finally:
        manager.close()


def test_a_running_request_finishes_on_the_chain_it_started_with(tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [slow, openai]\n"})

    class Slow:
        async def generate_response(self, *, prompt, timeout):
            await asyncio.sleep(0.2)
            raise RuntimeError("slow and broken")

    manager = LLMManager(config={"chains_dir": str(folder),
                                 "providers": {**providers(), "slow": Slow()}})  # fmt: skip

    async def go():
        running = asyncio.create_task(manager.agenerate_response("hi"))
        await asyncio.sleep(0.05)
        (folder / "direct.yaml").write_text("steps: [claude]\n")
        manager.reload()
        return await running

    text, meta = asyncio.run(go())
    assert [a["provider"] for a in meta.provider_attempts] == ["slow", "openai"]
    assert text == "from openai" and order(manager) == ["claude"]
