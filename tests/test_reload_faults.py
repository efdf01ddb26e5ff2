"""Reloading never runs a chain the operator did not write: a chain file replaced by a
FIFO, a removed chains directory, a file rewritten non-atomically every millisecond while
requests run, thousands of files; and a change is applied only once it has settled."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import pytest
from helpers import Scripted, chains_dir

from engine import ChainConfigError, LLMManager
from engine.chain.reload import ChainReloader


def providers(n: int = 100_000):
    names = ("deepseek", "openai", "claude", "ollama")
    return {name: Scripted(*[f"from {name}"] * n) for name in names}


def order(manager: LLMManager, mode: str = "direct") -> list[str]:
    return [step.provider for step in manager.chain_for(mode).chain.steps]


def _manager(tmp_path, chains: dict[str, str]) -> LLMManager:
    folder = chains_dir(tmp_path, chains)
    return LLMManager(config={"chains_dir": str(folder), "providers": providers()})


def test_a_chain_file_replaced_by_a_fifo_keeps_its_chain(tmp_path, caplog):
    manager = _manager(tmp_path, {"direct": "steps: [openai, claude]\n"})
    path = manager.chains_dir / "direct.yaml"
    path.unlink()
    os.mkfifo(path)
    caplog.set_level(logging.WARNING, logger="engine.reload")
    manager.reload()
    manager.reload()
    assert order(manager) == ["openai", "claude"]  # not the default chain
    status = manager.chain_status()["direct"]
    assert "is not a regular file" in status["last_error"] and "keeping" in status["last_error"]
    assert len([r for r in caplog.records if "not a regular file" in r.getMessage()]) == 1
    assert manager.generate_response("hi")[0] == "from openai"


def test_a_removed_chains_directory_keeps_every_chain(tmp_path):
    manager = _manager(tmp_path, {"direct": "steps: [openai]\n", "research": "steps: [ollama]\n"})
    shutil.rmtree(manager.chains_dir)
    manager.reload()
    assert order(manager) == ["openai"] and order(manager, "research") == ["ollama"]
    assert "cannot be read" in manager.chain_status()["*"]["last_error"]


def test_a_change_is_applied_only_once_it_has_settled(tmp_path):
    manager = _manager(tmp_path, {"direct": "steps: [deepseek]\n"})
    reloader = ChainReloader(manager.chainset, interval=1.0, settle=0.25)
    path = manager.chains_dir / "direct.yaml"
    path.write_text("steps: [ollama]\n")
    assert reloader.poll(now=100.0) is False  # changed: wait for it to settle
    assert reloader.poll(now=100.1) is False and order(manager) == ["deepseek"]
    path.write_text("steps: [claude]\n")  # still changing
    assert reloader.poll(now=100.3) is False
    assert reloader.poll(now=100.5) is False
    assert reloader.poll(now=100.6) is True  # unchanged for 0.3 s
    assert order(manager) == ["claude"]
    assert reloader.poll(now=101.0) is False  # nothing new


VERSIONS = {
    ("deepseek", "claude"): "description: version A\nsteps:\n  - deepseek\n  - claude\n",
    ("openai", "ollama"): "description: version B\nsteps:\n  - openai\n  - ollama\n",
}


def test_non_atomic_churn_never_applies_a_half_written_chain(tmp_path):
    """A file rewritten in two writes every millisecond while requests run: every chain the
    mode ever runs is one of the complete versions, and the last one is applied once the
    writing stops."""
    folder = chains_dir(tmp_path, {"direct": VERSIONS["deepseek", "claude"]})
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers(),
                                 "reload": True, "reload_interval": 0.02})  # fmt: skip
    path = folder / "direct.yaml"
    stop = threading.Event()
    seen: set[tuple[str, ...]] = set()
    failures: list[str] = []

    def churn() -> None:
        texts = list(VERSIONS.values())
        n = 0
        while not stop.is_set():
            text = texts[n % 2]
            # Cut before the second step: the first piece alone is a valid chain of one step
            # (and the moment after the truncation, an empty file).
            cut = text.index("  - ", text.index("  - ") + 1)
            with open(path, "w") as handle:
                handle.write(text[:cut])
                handle.flush()
                time.sleep(0.0005)
                handle.write(text[cut:])
            n += 1
            time.sleep(0.0005)

    def requests() -> None:
        while not stop.is_set():
            seen.add(tuple(order(manager)))
            _, meta = manager.generate_response("hi")
            if meta.error:
                failures.append(meta.error)

    threads = [threading.Thread(target=churn), threading.Thread(target=requests)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        stop.set()
        for thread in threads:
            thread.join(10)
        final = tuple(VERSIONS)[1]
        path.write_text(VERSIONS[final])
        for _ in range(200):  # the watcher applies it once it has settled
            if tuple(order(manager)) == final:
                break
            time.sleep(0.02)
        seen.add(tuple(order(manager)))
    finally:
        manager.close()
    assert not failures
    assert seen <= set(VERSIONS)
    assert tuple(order(manager)) == final


def test_the_number_of_chain_files_is_capped(tmp_path):
    folder = chains_dir(tmp_path, {"default": "steps: [deepseek]\n"})
    for number in range(300):
        (folder / f"mode{number}.yaml").write_text("steps: [openai]\n")
    with pytest.raises(ChainConfigError, match="holds 301 chain files; at most 256"):
        LLMManager(config={"chains_dir": str(folder), "providers": providers()})
    for number in range(100, 300):
        (folder / f"mode{number}.yaml").unlink()
    manager = LLMManager(config={"chains_dir": str(folder), "providers": providers()})
    for number in range(300, 500):
        (folder / f"mode{number}.yaml").write_text("steps: [openai]\n")
    manager.reload()  # refused whole: every chain kept
    assert "more than 256 chain files" in manager.chain_status()["*"]["last_error"]
    assert order(manager) == ["deepseek"]
