"""Answers checked before they count (``accept:``): per rule, sync, async and streamed, over
loopback HTTP against the simulator answering prose, bad tool arguments and valid answers;
rules the request implies (a json_schema response format, the tools sent); validators
registered in code; schema problems located at file:line; and what a rejection records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import assert_invariants, run_cli

from engine import (
    ChainConfigError,
    ChainExhaustedError,
    LLMManager,
    Reset,
    StreamInterruptedError,
    load_chain,
)
from engine.tools.simulator import Behaviour, Script, Simulator

HI = [{"role": "user", "content": "Give me a record"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PROSE = Behaviour("answer", text="Sure! Here is your record: title Dune, year 1965.")
RECORD = Behaviour("answer", text='{"title": "Dune", "year": 1965}')
SCHEMA = (
    "{type: object, required: [title, year], properties: "
    "{title: {type: string}, year: {type: integer}}}"
)
CALLS = ("sync", "async", "stream", "astream")


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


@pytest.fixture
def make(sim, monkeypatch, tmp_path):
    """A manager over the simulator whose default chain is the given YAML text."""
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    made: list[LLMManager] = []

    def build(chain: str, files: dict[str, str] | None = None) -> LLMManager:
        folder = tmp_path / f"chains{len(made)}"
        folder.mkdir()
        (folder / "default.yaml").write_text(chain)
        for name, text in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        manager = LLMManager(config={"chains_dir": str(folder)})
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()


def ask(manager: LLMManager, call: str, messages=HI, **options):
    """(text, meta, error, events) for one request made the way ``call`` says."""
    if call == "sync":
        try:
            completion, meta = manager.chat(messages, **options)
        except ChainExhaustedError as exc:
            return None, None, exc, []
        return completion.text, meta, None, []
    if call == "async":

        async def go():
            async with manager:
                return await manager.achat(messages, **options)

        try:
            completion, meta = asyncio.run(go())
        except ChainExhaustedError as exc:
            return None, None, exc, []
        return completion.text, meta, None, []
    events: list = []
    if call == "stream":
        stream = manager.stream(messages, **options)
        try:
            events.extend(stream)
        except ChainExhaustedError as exc:
            return None, stream.meta, exc, events
        return stream.text, stream.meta, None, events

    holder: list = []

    async def go_stream():
        stream = manager.astream(messages, **options)
        holder.append(stream)
        try:
            async for event in stream:
                events.append(event)
        finally:
            await manager.aclose()

    try:
        asyncio.run(go_stream())
    except ChainExhaustedError as exc:
        return None, holder[0].meta, exc, events
    return holder[0].text, holder[0].meta, None, events


def chain(accept: str, policy: str = "restart", steps: str = "[deepseek, claude]") -> str:
    return f"on_midstream: {policy}\ndefaults:\n  timeout: 5\n  accept: {accept}\nsteps: {steps}\n"


def _rejected_then_answered(meta, reason_part: str) -> None:
    first, second = meta.provider_attempts
    assert (first["status"], first["error_code"], first["error_category"]) == (
        "failed",
        "answer_rejected",
        "ai_error",
    )
    assert reason_part in first["message"] and first["message"].startswith("answer rejected: ")
    # The rejected call was paid for: its tokens and cost stay on the record.
    assert (first["tokens_in"], first["tokens_out"]) == (12, 7)
    assert first["cost_usd_est"] and first["cost_usd_est"] > 0
    assert second["status"] == "success" and meta.provider == "claude"
    assert meta.fallback_reason == "ai_error:answer_rejected"
    assert_invariants(meta)


@pytest.mark.parametrize("call", CALLS)
def test_json_rejects_prose_and_the_next_provider_answers(sim, make, call):
    sim.script = Script({"deepseek": [PROSE], "claude": [RECORD]})
    text, meta, error, events = ask(make(chain("{json: true}")), call)
    assert error is None and json.loads(text) == {"title": "Dune", "year": 1965}
    _rejected_then_answered(meta, "the answer is not JSON")
    if call.endswith("stream"):
        # The caller saw the prose: a reset takes it back before the answer that counts.
        reset = next(i for i, e in enumerate(events) if isinstance(e, Reset))
        assert "".join(e.text for e in events[reset + 1 :]) == text
        assert meta.provider_attempts[0]["truncated"] is False and not meta.truncated


@pytest.mark.parametrize("call", CALLS)
def test_a_schema_rejects_json_of_the_wrong_shape_naming_where(sim, make, call):
    wrong = Behaviour("answer", text='{"title": "Dune", "year": "1965"}')
    sim.script = Script({"deepseek": [wrong], "claude": [RECORD]})
    text, meta, error, _ = ask(make(chain(f"{{schema: {SCHEMA}}}")), call)
    assert error is None and json.loads(text)["year"] == 1965
    _rejected_then_answered(meta, "does not match the step's schema at /year")


@pytest.mark.parametrize("call", CALLS)
def test_a_schema_file_relative_to_the_chains_directory(sim, make, call):
    schema = {"type": "object", "required": ["title"], "properties": {"title": {"type": "string"}}}
    files = {"schemas/record.json": json.dumps(schema)}
    sim.script = Script({"deepseek": [Behaviour("answer", text="[1, 2]")], "claude": [RECORD]})
    _, meta, error, _ = ask(make(chain("{schema_file: schemas/record.json}"), files), call)
    assert error is None
    _rejected_then_answered(meta, "at the top level")


@pytest.mark.parametrize("call", CALLS)
def test_a_json_schema_response_format_is_checked_without_any_accept(sim, make, call):
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "record", "schema": {"type": "object", "required": ["year"]}},
    }
    sim.script = Script({"deepseek": [Behaviour("answer", text='{"title": "x"}')],
                         "claude": [RECORD]})  # fmt: skip
    manager = make("on_midstream: restart\nsteps: [deepseek, claude]\n")
    _, meta, error, _ = ask(manager, call, response_format=response_format)
    assert error is None
    _rejected_then_answered(meta, "does not match response_format's schema")


@pytest.mark.parametrize("call", CALLS)
def test_tool_arguments_are_checked_when_tools_are_sent(sim, make, call):
    bad = Behaviour("tool_call", tool="get_weather", arguments={"city": 75001})
    good = Behaviour("tool_call", tool="get_weather", arguments={"city": "Paris"})
    sim.script = Script({"deepseek": [bad], "claude": [good]})
    manager = make("on_midstream: restart\nsteps: [deepseek, claude]\n")
    _, meta, error, _ = ask(manager, call, tools=[WEATHER])
    assert error is None
    _rejected_then_answered(meta, "tool call 'get_weather' do not match its parameters at /city")


@pytest.mark.parametrize("call", ["sync", "stream"])
def test_a_tool_call_naming_no_tool_sent_is_rejected(sim, make, call):
    stray = Behaviour("tool_call", tool="delete_everything", arguments={})
    good = Behaviour("tool_call", tool="get_weather", arguments={"city": "Paris"})
    sim.script = Script({"deepseek": [stray], "claude": [good]})
    manager = make("on_midstream: restart\nsteps: [deepseek, claude]\n")
    _, meta, error, _ = ask(manager, call, tools=[WEATHER])
    assert error is None
    _rejected_then_answered(meta, "'delete_everything' names no tool sent (sent: get_weather)")


def test_tool_arguments_false_lets_bad_arguments_through(sim, make):
    bad = Behaviour("tool_call", tool="get_weather", arguments={"city": 75001})
    sim.script = Script({"deepseek": [bad]})
    manager = make(chain("{tool_arguments: false}"))
    completion, meta = manager.chat(HI, tools=[WEATHER])
    assert json.loads(completion.tool_calls[0].arguments) == {"city": 75001}
    assert len(meta.provider_attempts) == 1


@pytest.mark.parametrize("call", CALLS)
def test_max_chars(sim, make, call):
    sim.script = Script({"deepseek": [Behaviour("answer", text="x" * 41)],
                         "claude": [Behaviour("answer", text="short")]})  # fmt: skip
    text, meta, error, _ = ask(make(chain("{max_chars: 40}")), call)
    assert error is None and text == "short"
    _rejected_then_answered(meta, "the answer is 41 characters, over max_chars 40")


@pytest.mark.parametrize("call", CALLS)
def test_an_invisible_answer_is_blank_unless_not_empty_is_false(sim, make, call):
    blank = Behaviour("answer", text="\u200b\u200b", chunks=1)
    sim.script = Script({"deepseek": [blank], "claude": [Behaviour("answer", text="real")]})
    text, meta, error, _ = ask(make("on_midstream: restart\nsteps: [deepseek, claude]\n"), call)
    assert error is None and text == "real"
    _rejected_then_answered(meta, "the answer is blank")
    sim.script = Script({"deepseek": [blank]})
    text, meta, error, _ = ask(make(chain("{not_empty: false}")), call)
    assert error is None and text == "\u200b\u200b" and len(meta.provider_attempts) == 1


@pytest.mark.parametrize("call", CALLS)
def test_registered_validators(sim, make, call):
    sim.script = Script({"deepseek": [Behaviour("answer", text="As an AI, I cannot.")],
                         "claude": [Behaviour("answer", text="Here it is.")]})  # fmt: skip
    manager = make(chain("{validators: [no_disclaimer]}"))
    seen = []

    def no_disclaimer(completion):
        seen.append(completion.text)
        return "starts with a disclaimer" if completion.text.startswith("As an AI") else None

    manager.register_validator("no_disclaimer", no_disclaimer)
    text, meta, error, _ = ask(manager, call)
    assert error is None and text == "Here it is."
    assert seen == ["As an AI, I cannot.", "Here it is."]
    _rejected_then_answered(meta, "validator 'no_disclaimer': starts with a disclaimer")


def test_a_validator_nobody_registered_fails_before_any_call(sim, make):
    sim.script = Script({})
    before = len(sim.requests)
    manager = make(chain("{validators: [no_disclaimer]}"))
    manager.register_validator("other", lambda c: None)
    with pytest.raises(LookupError, match=r"'no_disclaimer'.*registered: other"):
        manager.chat(HI)
    assert len(sim.requests) == before


def test_a_validator_returning_something_else_than_a_reason_is_an_error(sim, make):
    sim.script = Script({})
    manager = make(chain("{validators: [sloppy]}"))
    manager.register_validator("sloppy", lambda c: True)
    with pytest.raises(TypeError, match="validator 'sloppy' returned bool"):
        manager.chat(HI)
    with pytest.raises(TypeError, match="non-empty str"):
        manager.register_validator("", lambda c: None)
    with pytest.raises(TypeError, match="must be callable"):
        manager.register_validator("x", "not a function")


@pytest.mark.parametrize("call", ["stream", "astream"])
def test_a_rejected_stream_under_fail_ends_with_the_rejection(sim, make, call):
    sim.script = Script({"deepseek": [PROSE], "claude": [RECORD]})
    _, meta, error, events = ask(make(chain("{json: true}", policy="fail")), call)
    assert isinstance(error, StreamInterruptedError)
    assert "was rejected: the answer is not JSON" in str(error)
    (attempt,) = error.attempts
    assert attempt["error_code"] == "answer_rejected" and attempt["truncated"] is False
    assert error.partial_text == PROSE.text
    assert not meta.truncated and "".join(e.text for e in events) == PROSE.text


def test_every_provider_rejected_exhausts_with_each_reason(sim, make):
    sim.script = Script({"deepseek": [PROSE], "claude": [PROSE]})
    _, meta = make(chain("{json: true}")).chat(HI)
    assert [a["error_code"] for a in meta.provider_attempts] == ["answer_rejected"] * 2
    assert "all providers failed" in meta.error and "the answer is not JSON" in meta.error


def test_error_codes_can_make_a_rejection_abort(sim, make):
    sim.script = Script({"deepseek": [PROSE], "claude": [RECORD]})
    text = chain("{json: true}") + "error_codes: {answer_rejected: non_retryable}\n"
    _, meta = make(text).chat(HI)
    assert len(meta.provider_attempts) == 1
    assert "stopped at deepseek by ai_error:answer_rejected" in meta.error


def test_a_step_overrides_the_defaults_key_by_key(sim, make):
    steps = "[{provider: deepseek, accept: {json: false, max_chars: 100}}, claude]"
    sim.script = Script({"deepseek": [PROSE]})
    completion, meta = make(chain("{json: true, max_chars: 10}", steps=steps)).chat(HI)
    assert completion.text == PROSE.text and len(meta.provider_attempts) == 1


def test_rejected_answers_keep_the_breaker_closed(sim, make):
    sim.script = Script({"deepseek": [PROSE] * 8, "claude": [RECORD] * 8})
    manager = make(chain("{json: true}"))
    for _ in range(8):
        _, meta = manager.chat(HI)
        assert [a["status"] for a in meta.provider_attempts] == ["failed", "success"]
    # A live answer turned down says nothing bad of the provider's health.
    assert manager.health.store.snapshot()["deepseek"].state == "closed"


BAD_CHAINS = [
    ("defaults: {accept: {jsn: true}}\nsteps: [deepseek]\n", 1, "defaults.accept.jsn",
     "unknown key 'jsn' (did you mean 'json'?)"),
    ("steps:\n  - provider: deepseek\n    accept: {schema: {type: nope}}\n", 3,
     "steps[0].accept.schema", "not a valid JSON Schema"),
    ("steps:\n  - provider: deepseek\n    accept: {schema: {type: object}, schema_file: x.json}\n",
     3, "steps[0].accept.schema", "write schema or schema_file, not both"),
    ("defaults:\n  accept:\n    schema_file: missing.json\nsteps: [deepseek]\n", 3,
     "defaults.accept.schema_file", "cannot read file"),
    ("defaults:\n  accept:\n    schema_file: ../outside.json\nsteps: [deepseek]\n", 3,
     "defaults.accept.schema_file", "must be a path inside the chains directory"),
    ("defaults:\n  accept: {schema: {$ref: 'https://example.com/s.json'}}\nsteps: [deepseek]\n", 2,
     "defaults.accept.schema", "is not fetched"),
    ("defaults:\n  accept: {max_chars: 0}\nsteps: [deepseek]\n", 2,
     "defaults.accept.max_chars", "must be 1 or more"),
    ("defaults:\n  accept:\n    schema_file: bad.json\nsteps: [deepseek]\n", 3,
     "defaults.accept.schema_file", "bad.json: invalid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD_CHAINS)
def test_bad_accept_rules_are_located(tmp_path: Path, text, line, field, message):
    (tmp_path / "bad.json").write_text("{not json")
    path = tmp_path / "default.yaml"
    path.write_text(text)
    with pytest.raises(ChainConfigError) as caught:
        load_chain(path)
    (problem,) = caught.value.problems
    assert (problem.source, problem.line, problem.field) == (str(path), line, field)
    assert message in problem.message
    result = run_cli("validate", str(path))
    assert result.returncode == 1 and f"{path}:{line}:" in result.stdout + result.stderr


def test_a_bad_schema_in_a_request_is_the_callers_error_before_any_call(sim, make):
    sim.script = Script({})
    before = len(sim.requests)
    manager = make("steps: [deepseek]\n")
    bad_tool = {"type": "function",
                "function": {"name": "f", "parameters": {"type": "object", "required": "x"}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"tools\[0\]\.function\.parameters: not a valid JSON"):
        manager.chat(HI, tools=[bad_tool])
    remote = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"$ref": "http://x/s"}}}
    with pytest.raises(ValueError, match=r"response_format\.json_schema\.schema: .* not fetched"):
        manager.chat(HI, response_format=remote)
    assert len(sim.requests) == before


# -- review and operations --------------------------------------------------------------

RULED = (
    "defaults:\n  accept: {json: true, max_chars: 4000}\n"
    "steps:\n  - deepseek\n  - provider: openai\n"
    "    accept: {schema_file: schemas/record.json, validators: [house_style]}\n  - claude\n"
)


def _ruled_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ruled"
    (folder / "schemas").mkdir(parents=True)
    (folder / "schemas" / "record.json").write_text('{"type": "object"}')
    (folder / "default.yaml").write_text(RULED)
    return folder


def test_simulate_plays_rejected_answers(tmp_path: Path):
    folder = _ruled_dir(tmp_path)
    result = run_cli(
        "simulate", "direct", "--chains", str(folder), "--json",
        "--outcomes", "deepseek=rejected,openai=rejected",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    attempts = report["meta"]["provider_attempts"]
    assert [(a["state"], a["error_code"]) for a in attempts] == [
        ("deepseek", "answer_rejected"), ("openai", "answer_rejected"), ("claude", None)]  # fmt: skip
    assert "JSON matching the schema schemas/record.json" in attempts[1]["message"]
    assert "validators: house_style" in attempts[1]["message"]
    bad = run_cli(
        "simulate", "direct", "--chains", str(folder), "--outcomes", "deepseek=rejected:x"
    )
    assert bad.returncode == 2 and "a rejected answer has no code" in bad.stderr


def test_simulate_a_rejected_stream_under_restart(tmp_path: Path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "default.yaml").write_text("on_midstream: restart\nsteps: [deepseek, openai]\n")
    result = run_cli(
        "simulate", "direct", "--chains", str(folder), "--json",
        "--outcomes", "deepseek=rejected|cut:2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (first, second) = json.loads(result.stdout)["meta"]["provider_attempts"]
    assert (first["category"], first["error_code"], first["truncated"]) == (
        "cut", "answer_rejected", False)  # fmt: skip
    assert second["status"] == "success"


def test_explain_lists_each_steps_rules(tmp_path: Path):
    result = run_cli("explain", "direct", "--chains", str(_ruled_dir(tmp_path)),
                     "--code", "answer_rejected")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "code answer_rejected: retryable (error_category ai_error, not transient" in out
    assert "deepseek  JSON, ≤4000 chars" in out
    assert "openai    JSON matching the schema schemas/record.json, ≤4000 chars, " \
        "validators: house_style" in out  # fmt: skip


def test_diagrams_draw_the_rules(tmp_path: Path):
    out = tmp_path / "out"
    result = run_cli("render", "--chains", str(_ruled_dir(tmp_path)), "--out", str(out),
                     "--format", "dot,mermaid")  # fmt: skip
    assert result.returncode == 0, result.stderr
    dot = (out / "default.dot").read_text()
    assert "accepts: JSON matching the schema schemas/record.json" in dot
    assert "(answer_rejected)" in dot  # the key says what else a retryable edge carries
    assert "accepts: JSON, ≤4000 chars" in (out / "default.mmd").read_text()


def test_stats_count_rejected_answers(tmp_path: Path, sim, monkeypatch):
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "log.jsonl"
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text(chain("{json: true}"))
    sim.script = Script({"deepseek": [PROSE, RECORD], "claude": [RECORD]})
    with LLMManager(config={"chains_dir": str(folder), "telemetry": {"path": str(log)}}) as manager:
        manager.chat(HI)
        manager.chat(HI)
    result = run_cli("stats", str(log), "--json")
    assert result.returncode == 0, result.stderr
    providers = json.loads(result.stdout)["providers"]
    assert providers["deepseek"]["answers_rejected"] == 1
    assert providers["deepseek"]["top_error_codes"] == [["ai_error:answer_rejected", 1]]
    text = run_cli("stats", str(log)).stdout
    assert "deepseek: 2 attempts (0 skipped, 1 answers rejected)" in text
