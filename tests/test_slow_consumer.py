"""A slow consumer is not an idle server: idle time counts only time spent waiting on the
network, not the time the caller holds a chunk it was given."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import LLMManager, TextDelta
from engine.tools.simulator import Behaviour, Script, Simulator, environment

CHAIN = "on_midstream: fail\nsteps:\n  - {provider: deepseek, idle_timeout: 0.3, timeout: 10}\n"


@pytest.mark.parametrize("call", ["sync", "async"])
def test_a_consumer_slower_than_the_idle_timeout_still_gets_the_whole_answer(tmp_path, call):
    (tmp_path / "default.yaml").write_text(CHAIN)
    script = Script(
        {"deepseek": [Behaviour("answer", text="abcdef", chunks=3, chunk_interval=0.05)]}
    )
    with Simulator(script) as sim, environment(sim):
        manager = LLMManager(config={"chains_dir": str(tmp_path)})
        texts: list[str] = []
        try:
            if call == "sync":
                stream = manager.stream([{"role": "user", "content": "hi"}])
                for event in stream:
                    if isinstance(event, TextDelta):
                        texts.append(event.text)
                    time.sleep(0.6)  # holds each chunk twice the idle timeout
                meta = stream.meta
            else:

                async def go():
                    stream = manager.astream([{"role": "user", "content": "hi"}])
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            texts.append(event.text)
                        await asyncio.sleep(0.6)
                    await manager.aclose()
                    return stream.meta

                meta = asyncio.run(go())
        finally:
            manager.close()
    assert "".join(texts) == "abcdef"
    assert meta.error is None and not meta.truncated
    assert [a["error_code"] for a in meta.provider_attempts] == [None]
