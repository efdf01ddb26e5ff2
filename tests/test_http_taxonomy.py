"""Every row of the outcome taxonomy, over real loopback HTTP against the simulator, for
each wire protocol it applies to, sync and async.

Each case runs the chain ``[provider under test, backup]``, where ``backup`` is an
OpenAI-compatible provider declared in a providers file (so that file is exercised too),
and asserts category, error_category, error_code, the number of attempts and the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import closed_port

from engine import LLMManager, Runtime
from engine.tools.simulator import Behaviour, Script, Simulator

WIRES = ("deepseek", "openai", "claude", "ollama")
TIMEOUT = 0.3  # per attempt, for the timeout rows (the only real waits in this file)


@dataclass(frozen=True)
class Row:
    name: str
    behaviour: Behaviour | None
    category: str
    error_category: str | None
    code: str | None
    wires: tuple[str, ...] = WIRES

    @property
    def path(self) -> list[str]:
        if self.category == "success":
            return ["X", "succeeded"]
        if self.category == "non_retryable":
            return ["X", "aborted"]
        return ["X", "backup", "succeeded"]


def B(kind: str, **kw) -> Behaviour:
    return Behaviour(kind, **kw)


ROWS = [
    Row("answer", B("answer"), "success", None, None),
    Row("429 rate limit", B("rate_limit", retry_after=1), "retryable", "provider_error", "429"),
    Row("429 insufficient_quota", B("quota"), "retryable", "provider_error", "insufficient_quota",
        ("openai", "deepseek", "claude")),
    Row("402 balance", B("balance"), "retryable", "provider_error", "insufficient_quota"),
    Row("401", B("auth"), "retryable", "provider_error", "401"),
    Row("403", B("forbidden"), "retryable", "provider_error", "403"),
    Row("404 model not found", B("model_not_found"), "retryable", "provider_error", "404"),
    Row("408", B("request_timeout"), "retryable", "provider_error", "408"),
    Row("409", B("conflict"), "retryable", "provider_error", "409"),
    Row("500", B("server_error"), "retryable", "provider_error", "500"),
    Row("502", B("bad_gateway"), "retryable", "provider_error", "502"),
    Row("503", B("unavailable"), "retryable", "provider_error", "503"),
    Row("504", B("gateway_timeout"), "retryable", "provider_error", "504"),
    Row("529 overloaded", B("overloaded"), "retryable", "provider_error", "529", ("claude",)),
    Row("unknown status", B("error", status=418), "retryable", "provider_error", "418"),
    Row("connection refused", None, "retryable", "provider_error", "connect_error"),
    Row("api key missing", None, "retryable", "provider_error", "not_configured",
        ("deepseek", "openai", "claude")),
    Row("malformed body", B("malformed"), "retryable", "provider_error", "malformed_response"),
    Row("incomplete body", B("incomplete"), "retryable", "provider_error", "malformed_response"),
    Row("body cut short", B("cut"), "retryable", "provider_error", "truncated_response"),
    Row("reset before reply", B("close"), "retryable", "provider_error", "truncated_response"),
    Row("context length", B("context_length"), "retryable", "provider_error",
        "context_length_exceeded"),
    Row("error as text", B("answer", text="Error: upstream model crashed"), "retryable",
        "provider_error", "contract_violation"),
    Row("connect timeout", None, "timeout", "timeout", "connect_timeout"),
    Row("read timeout", B("answer", delay=5), "timeout", "timeout", "read_timeout"),
    Row("trickled body", B("trickle", interval=0.05), "timeout", "timeout", "attempt_timeout"),
    Row("stalled body", B("stall"), "timeout", "timeout", "attempt_timeout"),
    Row("400 invalid request", B("bad_request"), "non_retryable", "ai_error", "400"),
    Row("422", B("unprocessable"), "non_retryable", "ai_error", "422"),
    Row("content filter", B("content_filter"), "non_retryable", "ai_error", "content_filter",
        ("openai", "deepseek")),
    Row("refusal", B("refusal"), "non_retryable", "ai_error", "refusal",
        ("openai", "deepseek", "claude")),
]  # fmt: skip

CASES = [(row, wire) for row in ROWS for wire in row.wires]


@pytest.fixture(scope="module")
def sim():
    with Simulator() as server:
        yield server


def setup(
    tmp_path: Path, sim: Simulator, monkeypatch, row: Row, wire: str, black_hole=None,
    transport: str = "asyncio",
):  # fmt: skip
    env = sim.env()
    if row.code == "connect_error":
        env[_url_env(wire)] = f"http://127.0.0.1:{closed_port()}"
    if row.code == "connect_timeout":
        env[_url_env(wire)] = f"http://127.0.0.1:{black_hole}"
    if row.code == "not_configured":
        del env[f"{'ANTHROPIC' if wire == 'claude' else wire.upper()}_API_KEY"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BACKUP_KEY", "sim-backup-key")
    folder = tmp_path / "chains"
    folder.mkdir()
    timeout = TIMEOUT if row.category == "timeout" else 10
    (folder / "default.yaml").write_text(
        f"defaults: {{timeout: {timeout}}}\nsteps: [{wire}, backup]\n"
    )
    override = ""
    if wire in WIRES:
        override = f"  {wire}:\n    model: model-under-test\n    async_transport: {transport}\n"
        if row.code == "connect_timeout":
            override += "    connect_timeout: 0.2\n"
    (folder / "providers.yaml").write_text(
        "providers:\n"
        "  backup:\n"
        "    kind: openai\n"
        f"    base_url: {sim.base_url('backup')}\n"
        "    api_key_env: BACKUP_KEY\n"
        "    model: backup-model\n" + override
    )
    sim.script = Script(
        {wire: [row.behaviour] if row.behaviour else [], "backup": [B("answer", text="backup")]}
    )
    sleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    runtime = Runtime(sleep=sleeps.append, asleep=asleep, random=lambda: 0.5)
    # An unknown name is declared registered (then never registered): provider_not_found.
    declared = [wire] if row.code == "provider_not_found" else []
    return LLMManager(
        config={"chains_dir": str(folder), "registered_providers": declared}, runtime=runtime
    )


def _url_env(wire: str) -> str:
    return {"claude": "ANTHROPIC_BASE_URL", "ollama": "OLLAMA_HOST"}.get(
        wire, f"{wire.upper()}_BASE_URL"
    )


def check(row: Row, wire: str, text: str, meta) -> None:
    attempts = meta.provider_attempts
    first = attempts[0]
    assert (first["category"], first["error_category"], first["error_code"]) == (
        row.category,
        row.error_category,
        row.code,
    ), first["message"]
    assert first["provider"] == wire
    path = ["X", *[a["next"] for a in attempts]]
    assert path == row.path
    assert len(attempts) == len(row.path) - 1
    if row.category == "success":
        assert text == "Hello from the simulator."
        assert meta.model == "model-under-test"
        assert (meta.tokens_in, meta.tokens_out, meta.tokens_total) == (12, 7, 19)
    elif row.category == "non_retryable":
        assert meta.error_category == "ai_error"
    else:
        assert text == "backup" and meta.provider == "backup" and meta.model == "backup-model"
        assert meta.fallback_reason == f"{row.error_category}:{row.code}"


@pytest.mark.parametrize(("row", "wire"), CASES, ids=[f"{w}-{r.name}" for r, w in CASES])
def test_sync(tmp_path, sim, monkeypatch, request, row, wire):
    hole = request.getfixturevalue("black_hole") if row.code == "connect_timeout" else None
    with setup(tmp_path, sim, monkeypatch, row, wire, hole) as manager:
        text, meta = manager.generate_response("What is 2+2?", mode="composition")
    check(row, wire, text, meta)


@pytest.mark.parametrize("transport", ["asyncio", "aiohttp", "httpx"])
@pytest.mark.parametrize(("row", "wire"), CASES, ids=[f"{w}-{r.name}" for r, w in CASES])
async def test_async(tmp_path, sim, monkeypatch, request, row, wire, transport):
    """Every row on every async transport (asyncio is the default)."""
    hole = request.getfixturevalue("black_hole") if row.code == "connect_timeout" else None
    async with setup(tmp_path, sim, monkeypatch, row, wire, hole, transport) as manager:
        text, meta = await manager.agenerate_response("What is 2+2?", mode="composition")
    check(row, wire, text, meta)


def test_unknown_provider_is_provider_not_found(tmp_path, sim, monkeypatch):
    row = Row("unknown provider", None, "retryable", "provider_error", "provider_not_found")
    manager = setup(tmp_path, sim, monkeypatch, row, "nosuch")
    with manager:
        text, meta = manager.generate_response("hi", mode="composition")
    check(row, "nosuch", text, meta)
