"""Configuration and call arguments that are wrong fail clearly; caches stay bounded; the
path through a chain does not depend on the jitter; async clients follow one lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, FakeClock, Scripted, Takes, chains_dir

from engine import LLMManager, ProviderError

# -- 7. config and call arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "kind", "fragment"),
    [
        ("string", TypeError, "config must be a dict, got str"),
        ({"fallback_enabled": "maybe"}, ValueError, "config['fallback_enabled']: must be true or false"),
        ({"fallback_enabled": 2}, ValueError, "config['fallback_enabled']"),
        ({"chains": {"drect": ["claude"]}}, ValueError, "mode 'drect' names no chain (did you mean 'direct'?)"),
        ({"chains": {"direct": 5}}, ValueError, "config['chains']: ['direct'] must be a list"),
        ({"chains_dir": 5}, ValueError, "config['chains_dir']: must be a path"),
        ({"provider_timout": 5}, ValueError, "config['provider_timout']: unknown key (did you mean 'provider_timeout'?)"),
        ({"provider_timeout": True}, ValueError, "config['provider_timeout']: must be a number"),
        ({"provider_timeout": -1}, ValueError, "config['provider_timeout']"),
        ({"default_provider": ""}, ValueError, "config['default_provider']"),
    ],
)  # fmt: skip
def test_bad_config_is_refused_naming_the_key(config, kind, fragment):
    with pytest.raises(kind) as caught:
        LLMManager(config)
    assert fragment in str(caught.value)


def test_fallback_enabled_reads_words_like_the_environment():
    assert LLMManager(config={"fallback_enabled": "false"}).fallback_enabled is False
    assert LLMManager(config={"fallback_enabled": "true"}).fallback_enabled is True
    assert LLMManager(config={"fallback_enabled": False}).fallback_enabled is False


@pytest.mark.parametrize(
    ("kwargs", "kind", "fragment"),
    [
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got str"),
        ({"timeout": True}, TypeError, "timeout must be a number of seconds, got bool"),
        ({"timeout": float("nan")}, ValueError, "timeout must be a positive number"),
        ({"provider": ""}, ValueError, "provider must be a provider name"),
        ({"provider": 123}, TypeError, "provider must be a str or None, got int"),
        ({"mode": "drect"}, ValueError, "(did you mean 'direct'?)"),
        ({"use_fallback": "no"}, TypeError, "use_fallback must be a bool"),
        ({"tools": "search"}, TypeError, "tools must be a list of tool names"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("call", ["sync", "async"])
async def test_bad_call_arguments_name_the_argument(kwargs, kind, fragment, call):
    manager = LLMManager()
    with pytest.raises(kind) as caught:
        if call == "sync":
            manager.generate_response("hi", **kwargs)
        else:
            await manager.agenerate_response("hi", **kwargs)
    assert fragment in str(caught.value)


def test_no_attempt_starts_without_time_left():
    provider = Scripted()  # any call would fail the test: nothing is scripted
    manager = LLMManager(config={"providers": {"p": provider}})
    text, meta = manager.generate_response("hi", provider="p", timeout=1e-6)
    assert provider.calls == []
    (attempt,) = meta.provider_attempts
    assert (attempt["category"], attempt["error_code"]) == ("timeout", "deadline_exceeded")
    assert meta.error_category == "timeout"
    assert "ran out of time" in text and "no time left to start an attempt" in text


# -- 8. bounded caches ---------------------------------------------------------------------------


def test_unknown_provider_names_are_not_cached():
    manager = LLMManager(config={"providers": {"p": Scripted("ok", "ok")}})
    for index in range(300):
        _, meta = manager.generate_response("hi", provider=f"nobody{index}")
        assert meta.provider_attempts[0]["error_code"] == "provider_not_found"
    manager.generate_response("hi", provider="p")
    manager.generate_response("hi", provider="p")
    assert [name for _, name in manager.chainset.cached_single] == ["p"]


# -- 10. the path does not depend on the jitter --------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 0.999])
@pytest.mark.parametrize(("first_takes", "path"), [(1.2, ["a", "b"]), (0.5, ["a", "a"])])
def test_retry_or_fallback_near_the_deadline_is_the_same_for_every_jitter(
    tmp_path, jitter, first_takes, path
):
    folder = chains_dir(tmp_path, {"direct": (
        "deadline: 2\n"
        "defaults: {retries: 1, backoff_base: 1, backoff_max: 4}\n"
        "steps: [{id: a, provider: a}, {id: b, provider: b}]\n"
    )})  # fmt: skip
    clock = FakeClock(jitter=jitter)
    failing = ProviderError("busy", code="503")
    a = Scripted(Takes(first_takes, failing), "from a", clock=clock)
    b = Scripted("from b", clock=clock)
    manager = LLMManager(
        config={"chains_dir": str(folder), "providers": {"a": a, "b": b}},
        runtime=clock.runtime(),
    )
    _, meta = manager.generate_response("hi")
    assert [attempt["state"] for attempt in meta.provider_attempts] == path


# -- 9. one lifecycle for async clients ----------------------------------------------------------

_LIFECYCLE = textwrap.dedent(
    """
    import asyncio, gc, sys, threading, time, warnings
    sys.path.insert(0, {root!r})
    warnings.simplefilter("error")
    from engine import LLMManager
    from engine.simulator import Behaviour, Script, Simulator, environment

    def settle(sim):
        for _ in range(200):
            if sim.open_connections == 0:
                return
            time.sleep(0.01)

    with Simulator(Script({{"claude": [Behaviour("answer")]}}, cycle=True)) as sim:
        with environment(sim):
            pattern = sys.argv[1]
            m = LLMManager()
            if pattern == "run-then-aclose":
                for _ in range(30):
                    text, meta = asyncio.run(m.agenerate_response("hi", provider="claude"))
                    assert meta.error is None, meta.error
                asyncio.run(m.aclose())
            elif pattern == "run-then-close":
                asyncio.run(m.agenerate_response("hi", provider="claude"))
                m.close()
            elif pattern == "threads":
                async def many():
                    for _ in range(25):
                        await m.agenerate_response("hi", provider="claude")
                def worker():
                    asyncio.run(many())  # one loop per thread, one client per loop
                threads = [threading.Thread(target=worker) for _ in range(4)]
                for t in threads: t.start()
                for t in threads: t.join()
                m.close()
            elif pattern == "close-from-another-thread":
                loop = asyncio.new_event_loop()
                runner = threading.Thread(target=loop.run_forever)
                runner.start()
                future = asyncio.run_coroutine_threadsafe(
                    m.agenerate_response("hi", provider="claude"), loop)
                future.result(10)
                assert sim.open_connections == 1
                m.close()
                loop.call_soon_threadsafe(loop.stop)
                runner.join()
                loop.close()
            elif pattern == "close-inside-a-loop":
                async def go():
                    await m.agenerate_response("hi", provider="claude")
                    m.close()
                    await asyncio.sleep(0.05)
                asyncio.run(go())
            settle(sim)
            print("open", sim.open_connections, "total", sim.total_connections)
    gc.collect()
    """
)


@pytest.mark.parametrize(
    ("pattern", "connections"),
    [
        ("run-then-aclose", 30),
        ("run-then-close", 1),
        ("threads", 4),
        ("close-from-another-thread", 1),
        ("close-inside-a-loop", 1),
    ],
)
def test_async_clients_are_closed_with_their_loop_or_the_manager(pattern, connections):
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", _LIFECYCLE.format(root=str(ROOT)), pattern],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for bad in (
        "ResourceWarning",
        "unclosed",
        "Exception ignored",
        "Event loop is closed",
        "destroyed",
    ):
        assert bad not in proc.stderr, proc.stderr
    assert proc.stdout.split() == ["open", "0", "total", str(connections)]
