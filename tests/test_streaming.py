"""Streaming through the chains, over loopback HTTP against the simulator: every wire
format x {streamed text, streamed tool call}, sync and async; every stream fault under
both mid-stream policies; early close; plain providers; and a property: until the first
chunk, a streamed call takes the same path as a non-streamed one."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from helpers import Scripted, assert_invariants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    ChainExhaustedError,
    LLMManager,
    Reset,
    StreamInterruptedError,
    TextDelta,
    ToolCallDelta,
)
from engine.tools.simulator import Behaviour, Script, Simulator

PROVIDERS = ("deepseek", "claude", "ollama")  # one of each wire format
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


@pytest.fixture
def make(sim, monkeypatch, tmp_path):
    """A manager over the simulator with a chain of the given steps and policy."""
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    made: list[LLMManager] = []

    def build(
        steps: str = "[deepseek, claude, ollama]",
        policy: str = "fail",
        extra: str = "",
        providers_extra: str = "",
    ):
        folder = tmp_path / f"chains{len(made)}"
        folder.mkdir()
        (folder / "default.yaml").write_text(
            f"on_midstream: {policy}\ndefaults: {{timeout: 5}}\n{extra}steps: {steps}\n"
        )
        if providers_extra:  # the same setting for every provider the tests use
            (folder / "providers.yaml").write_text(
                "providers:\n"
                + "".join(f"  {p}: {{{providers_extra}}}\n" for p in (*PROVIDERS, "openai"))
            )
        # "legacy" is registered by the tests after the manager is built.
        manager = LLMManager(config={"chains_dir": str(folder), "registered_providers": ["legacy"]})
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()


def consume(manager: LLMManager, call: str, messages=HI, **kwargs):
    """All events, the stream object and the error raised (if any)."""
    events: list = []
    if call == "sync":
        stream = manager.stream(messages, **kwargs)
        try:
            for event in stream:
                events.append(event)
        except Exception as exc:
            return events, stream, exc
        return events, stream, None

    async def go():
        stream = manager.astream(messages, **kwargs)
        try:
            async for event in stream:
                events.append(event)
        except Exception as exc:
            return stream, exc
        finally:
            await manager.aclose()
        return stream, None

    stream, error = asyncio.run(go())
    return events, stream, error


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_text(sim, make, provider, call):
    sim.script = Script(
        {provider: [Behaviour("answer", text="Streaming, one piece at a time.", chunks=4)]}
    )
    events, stream, error = consume(make(f"[{provider}]"), call, system="Be brief.")
    assert error is None
    assert all(isinstance(e, TextDelta) for e in events) and len(events) == 4
    assert "".join(e.text for e in events) == "Streaming, one piece at a time." == stream.text
    completion, meta = stream.completion, stream.meta
    assert completion.usage == {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}
    assert completion.finish_reason == "stop"
    (attempt,) = meta.provider_attempts
    assert attempt["chunks"] == 4 and attempt["ttft_ms"] is not None and not attempt["truncated"]
    assert meta.provider == provider and meta.truncated is False
    assert_invariants(meta)
    assert sim.requests[-1].body["stream"] is True


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_streamed_tool_call(sim, make, provider, call):
    sim.script = Script(
        {
            provider: [
                Behaviour("tool_call", tool="get_weather", arguments={"city": "Oslo"}, chunks=3)
            ]
        }
    )
    events, stream, error = consume(
        make(f"[{provider}]"), call, tools=[{"function": {"name": "get_weather"}}]
    )
    assert error is None
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas and deltas[0].name == "get_weather"
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "Oslo"}
    (tool_call,) = stream.completion.tool_calls
    assert (tool_call.name, json.loads(tool_call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert stream.completion.finish_reason == "tool_calls"
    assert stream.meta.tools_used == ["get_weather"]


FAULTS_BEFORE_FIRST_CHUNK = [
    ("connect refused", None, "connect_error"),
    ("429", Behaviour("rate_limit"), "429"),
    ("error event", Behaviour("answer", error_after=0), None),
    ("garbled", Behaviour("answer", garble_after=0), "malformed_response"),
    ("cut", Behaviour("answer", cut_after=0), "truncated_response"),
    ("slow first token", Behaviour("answer", first_token_delay=2), "first_token_timeout"),
]


@pytest.mark.parametrize("policy", ["fail", "restart"])
@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize(
    ("name", "fault", "code"),
    FAULTS_BEFORE_FIRST_CHUNK,
    ids=[f[0] for f in FAULTS_BEFORE_FIRST_CHUNK],
)
def test_failures_before_the_first_chunk_fall_back_unseen(
    sim, make, monkeypatch, name, fault, code, call, policy
):
    if fault is None:
        monkeypatch.setenv("DEEPSEEK_BASE_URL", "http://127.0.0.1:9")
    sim.script = Script({"deepseek": [fault] if fault else [],
                         "claude": [Behaviour("answer", text="clean answer", chunks=3)]})  # fmt: skip
    manager = make("[{provider: deepseek, first_token_timeout: 0.5}, claude]", policy)
    events, stream, error = consume(manager, call)
    assert error is None
    assert not any(isinstance(e, Reset) for e in events)  # nothing to take back
    assert "".join(e.text for e in events) == "clean answer"
    first, second = stream.meta.provider_attempts
    if code is not None:
        assert first["error_code"] == code
    assert (first["chunks"], first["truncated"], second["status"]) == (0, False, "success")
    assert stream.meta.fallback_used and not stream.meta.truncated


FAULTS_MIDWAY = [
    ("cut", Behaviour("answer", text="abcdefgh", chunks=4, cut_after=2), "truncated_response"),
    ("stall", Behaviour("answer", text="abcdefgh", chunks=4, stall_after=2), "idle_timeout"),
    ("error event", Behaviour("answer", text="abcdefgh", chunks=4, error_after=2), None),
    (
        "garbled",
        Behaviour("answer", text="abcdefgh", chunks=4, garble_after=2),
        "malformed_response",
    ),
]


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("name", "fault", "code"), FAULTS_MIDWAY, ids=[f[0] for f in FAULTS_MIDWAY]
)
def test_a_cut_under_the_fail_policy_raises_with_the_partial_text(
    sim, make, provider, name, fault, code, call
):
    sim.script = Script({provider: [fault], "openai": [Behaviour("answer", text="never used")]})
    manager = make(f"[{{provider: {provider}, idle_timeout: 0.5}}, openai]", "fail")
    events, stream, error = consume(manager, call)
    assert isinstance(error, StreamInterruptedError)
    assert isinstance(error, ChainExhaustedError)  # callers catching exhaustion see it too
    assert error.partial_text == "abcd" == "".join(e.text for e in events)
    (attempt,) = stream.meta.provider_attempts  # openai was never tried
    assert (attempt["category"], attempt["chunks"], attempt["truncated"]) == ("cut", 2, True)
    if code is not None:
        assert attempt["error_code"] == code
    assert stream.meta.truncated is True and stream.meta.error
    assert stream.completion is None  # a cut stream never ends as if complete


@pytest.mark.parametrize("call", ["sync", "async"])
@pytest.mark.parametrize(
    ("name", "fault", "code"), FAULTS_MIDWAY, ids=[f[0] for f in FAULTS_MIDWAY]
)
def test_a_cut_under_the_restart_policy_resets_then_answers_anew(
    sim, make, name, fault, code, call
):
    sim.script = Script(
        {"deepseek": [fault], "claude": [Behaviour("answer", text="new whole answer", chunks=2)]}
    )
    manager = make("[{provider: deepseek, idle_timeout: 0.5}, claude]", "restart")
    events, stream, error = consume(manager, call)
    assert error is None
    reset_at = next(i for i, e in enumerate(events) if isinstance(e, Reset))
    assert "".join(e.text for e in events[:reset_at]) == "abcd"
    assert events[reset_at].provider == "claude"
    assert "".join(e.text for e in events[reset_at + 1 :]) == "new whole answer" == stream.text
    first, second = stream.meta.provider_attempts
    assert (first["category"], first["next"], first["truncated"]) == ("cut", "claude", True)
    assert second["status"] == "success" and stream.meta.truncated is False


@pytest.mark.parametrize("call", ["sync", "async"])
def test_stopping_early_closes_the_connection(sim, make, call):
    sim.script = Script(
        {"claude": [Behaviour("answer", text="x" * 50, chunks=50, chunk_interval=0.02)]}
    )
    manager = make("[claude]")
    if call == "sync":
        stream = manager.stream(HI)
        for _ in stream:
            break
        stream.close()
    else:

        async def go():
            stream = manager.astream(HI)
            async for _ in stream:
                break
            await stream.aclose()
            return stream

        stream = asyncio.run(go())
    # the attempt the caller left is on the record, as cancelled, not as a provider failure
    (left,) = stream.meta.provider_attempts
    assert (left["status"], left["error_code"], left["next"]) == (
        "cancelled",
        "caller_left",
        "cancelled",
    )
    assert left["provider"] == "claude" and left["latency_ms"] >= 0
    for _ in range(200):  # the server notices the closed socket asynchronously
        if sim.open_connections == 0:
            break
        time.sleep(0.01)
    assert sim.open_connections == 0


def test_a_plain_provider_streams_its_whole_answer_as_one_chunk(sim, make):
    sim.script = Script({"claude": [Behaviour("answer", text="from claude", chunks=2)]})
    manager = make("[legacy, claude]")
    legacy = Scripted("plain answer")
    manager.register_provider("legacy", legacy)
    events, stream, error = consume(manager, "sync")
    assert [e.text for e in events] == ["plain answer"] and error is None
    events, stream, error = consume(manager, "sync", tools=[{"function": {"name": "f"}}])
    assert stream.meta.provider_attempts[0]["error_code"] == "unsupported_request"
    assert "".join(e.text for e in events) == "from claude"


def test_stream_timeouts_are_validated_and_shown(tmp_path: Path):
    from helpers import run_cli

    from engine import check_file

    bad = tmp_path / "bad.yaml"
    bad.write_text("on_midstream: retry\nsteps:\n  - {provider: openai, idle_timeout: 0}\n")
    _, problems = check_file(bad)
    assert sorted(p.field for p in problems) == ["on_midstream", "steps[0].idle_timeout"]
    good = tmp_path / "chains"
    good.mkdir()
    (good / "default.yaml").write_text(
        "on_midstream: restart\nsteps:\n  - {provider: openai, first_token_timeout: 2, idle_timeout: 1}\n  - claude\n"
    )
    result = run_cli(
        "render", "--chains", str(good), "--format", "dot", "--out", str(tmp_path / "d")
    )
    dot = (tmp_path / "d" / "default.dot").read_text()
    assert "first token ≤2 s, gaps ≤1 s" in dot and "the next step answers from the start" in dot
    result = run_cli(
        "explain", "direct", "--code", "idle_timeout", env={"TORQ_CHAINS_DIR": str(good)}
    )
    assert "idle_timeout: timeout" in result.stdout
    assert "first token ≤2 s, gaps ≤1 s" in result.stdout and "restart" in result.stdout


NON_STREAM_FAULTS = [
    "answer",
    "rate_limit",
    "server_error",
    "bad_request",
    "malformed",
    "close",
    "auth",
]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    script=st.fixed_dictionaries(
        {p: st.sampled_from(NON_STREAM_FAULTS) for p in ("deepseek", "openai", "claude", "ollama")}
    )
)
def test_streamed_and_plain_calls_take_the_same_path_until_the_first_chunk(sim, make, script):
    manager = make("[deepseek, openai, claude, ollama]")
    paths = []
    for mode in ("chat", "stream"):
        sim.script = Script({p: [Behaviour(kind)] for p, kind in script.items()})
        if mode == "chat":
            _, meta = manager.chat(HI)
        else:
            stream = manager.stream(HI)
            try:
                list(stream)
            except ChainExhaustedError:
                pass
            except Exception:
                pass
            meta = stream.meta
        paths.append([(a["provider"], a["error_code"], a["next"]) for a in meta.provider_attempts])
    assert paths[0] == paths[1]


def test_cli_run_streams_with_a_system_prompt_and_a_conversation_file(tmp_path: Path):
    from helpers import run_cli

    history = tmp_path / "history.json"
    history.write_text(json.dumps([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "18 C and sunny."},
    ]))  # fmt: skip
    script = {"deepseek": [Behaviour("answer", text="No coat needed today.", chunks=3)]}
    with Simulator(script) as sim:
        result = run_cli(
            "run", "A coat?", "--messages", str(history), "--system", "Be brief.", "--stream",
            env=sim.env(),
        )  # fmt: skip
        body = sim.requests[-1].body
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "No coat needed today."
    assert "answer (deepseek" in result.stdout
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["stream"] is True


def test_cli_run_reports_a_cut_stream_as_a_failure():
    from helpers import run_cli

    script = {"deepseek": [Behaviour("answer", text="abcdefgh", chunks=4, cut_after=2)]}
    with Simulator(script) as sim:
        result = run_cli("run", "hi", "--stream", "--provider", "deepseek", env=sim.env())
    assert result.returncode == 1
    assert result.stdout.startswith("abcd\n")
    assert "the answer is incomplete" in result.stdout and " cut " in result.stdout


def test_simulate_accepts_stream_cuts():
    from helpers import run_cli

    result = run_cli(
        "simulate", "direct", "--outcomes", "deepseek=retryable:429,openai=cut:3", "--json"
    )
    assert result.returncode == 1
    first, second = json.loads(result.stdout)["meta"]["provider_attempts"]
    assert (first["error_code"], first["next"]) == ("429", "openai")
    assert (second["category"], second["chunks"], second["truncated"]) == ("cut", 3, True)


TRANSPORT_CASES = [
    ("text", "[claude]", {"claude": [Behaviour("answer", text="one two three", chunks=3)]}),
    (
        "tool call",
        "[deepseek]",
        {"deepseek": [Behaviour("tool_call", tool="get_weather", arguments={"c": 1}, chunks=3)]},
    ),
    (
        "429 then answer",
        "[deepseek, ollama]",
        {"deepseek": [Behaviour("rate_limit")], "ollama": [Behaviour("answer", text="ok")]},
    ),
    (
        "slow first token",
        "[{provider: deepseek, first_token_timeout: 0.3}, claude]",
        {
            "deepseek": [Behaviour("answer", first_token_delay=2)],
            "claude": [Behaviour("answer", text="fallback", chunks=2)],
        },
    ),
    (
        "cut midway",
        "[{provider: ollama, idle_timeout: 0.5}]",
        {"ollama": [Behaviour("answer", text="abcdefgh", chunks=4, cut_after=2)]},
    ),
    (
        "stall midway",
        "[{provider: claude, idle_timeout: 0.3}]",
        {"claude": [Behaviour("answer", text="abcdefgh", chunks=4, stall_after=2)]},
    ),
    (
        "not a stream, then an error body",
        "[deepseek, claude, ollama]",
        {
            "deepseek": [Behaviour("malformed")],
            "claude": [Behaviour("server_error")],
            "ollama": [Behaviour("answer", text="ok", chunks=2)],
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "steps", "plan"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES]
)
def test_every_async_transport_streams_alike(sim, make, name, steps, plan):
    # asyncio (the default) and aiohttp stream without httpx objects; httpx's pool is the
    # option. All must hand over the same events and record the same attempts.
    seen = {}
    for transport in ("asyncio", "aiohttp", "httpx"):
        extra = f"async_transport: {transport}"
        sim.script = Script(plan)
        manager = make(steps, providers_extra=extra)
        tools = [{"function": {"name": "get_weather"}}]
        events, stream, error = consume(manager, "async", tools=tools)
        attempts = [
            (a["provider"], a["status"], a["category"], a["error_code"], a.get("chunks"),
             a.get("truncated"))
            for a in stream.meta.provider_attempts
        ]  # fmt: skip
        seen[transport] = (
            [type(e).__name__ + ":" + str(getattr(e, "text", getattr(e, "arguments", "")))
             for e in events],
            type(error).__name__ if error else None,
            attempts,
        )  # fmt: skip
    assert seen["asyncio"] == seen["aiohttp"] == seen["httpx"]
    assert seen["asyncio"][2], "no attempt recorded"
