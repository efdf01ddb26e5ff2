"""The engine inside a host's own LLMManager (the seed guide's Step 1): a host shaped like
TORQ Console (``tests/torq_host``: an async manager with ``get_provider``, its own
``GenerationMeta`` and exception classes, async providers) embeds it with one import line.

The seed's eight acceptance criteria hold on it, sync and async; a policy block never
reaches a second provider; the host's ``except`` clauses catch every failure."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from helpers import FakeClock
from torq_host.errors import AIResponseError, AITimeoutError, ProviderError
from torq_host.generation_meta import ExecutionMode, GenerationMeta
from torq_host.manager import LLMManager, SyncLLMManager
from torq_host.providers import ScriptedProvider

import engine
from engine import ChainConfigError, ProviderChainConfig, ProviderFallbackExecutor


def _host(kind: str, clock: FakeClock, **providers: ScriptedProvider):
    cls = LLMManager if kind == "async" else SyncLLMManager
    return cls(providers=providers, runtime=clock.runtime())


def _ask(manager, *args, **kwargs):
    """The host's generate_response, awaited or called, as its manager is."""
    result = manager.generate_response(*args, **kwargs)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


KINDS = ["async", "sync"]


def test_the_seed_names_come_from_engine():
    names = ["ProviderFallbackExecutor", "ProviderChainConfig", "ProviderAttempt",
             "AttemptStatus", "ErrorCategory", "RATE_LIMIT_DELAY_MS"]  # fmt: skip
    assert all(name in engine.__all__ for name in names)
    assert engine.RATE_LIMIT_DELAY_MS == 250
    assert engine.AttemptStatus.SUCCESS == "success" and engine.ErrorCategory.AI_ERROR == "ai_error"
    config = ProviderChainConfig(direct_chain=["a", "b"], default_chain=["c"])
    assert config.get_chain_for_mode(ExecutionMode.DIRECT) == ["a", "b"]
    assert config.get_chain_for_mode(ExecutionMode.COMPOSITION) == ["c"]
    assert config.get_chain_for_mode("research") == ["claude", "deepseek", "ollama"]
    record = {"provider": "a", "model": "m", "status": "failed", "error_category": "timeout",
              "error_code": "read_timeout", "latency_ms": 5, "timestamp": "t", "tokens_in": 0,
              "tokens_out": 0, "tokens_total": 0, "cost_usd_est": None, "next": "b"}  # fmt: skip
    attempt = engine.ProviderAttempt.from_dict(record)
    assert attempt.error_category is engine.ErrorCategory.TIMEOUT
    assert attempt.to_dict() == {k: v for k, v in record.items() if k != "next"}


# -- the seed's eight acceptance criteria, on the host -------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_1_existing_calls_keep_working(kind, clock):
    manager = _host(kind, clock, claude=ScriptedProvider("claude-s", "4"),
                    deepseek=ScriptedProvider("ds", "four"))  # fmt: skip
    text, meta = _ask(manager, "What is 2+2?")
    assert (text, meta.provider) == ("four", "deepseek")
    text, meta = _ask(manager, "What is 2+2?", provider="claude")
    assert (text, meta.provider, meta.model) == ("4", "claude", "claude-s")


@pytest.mark.parametrize("kind", KINDS)
def test_2_new_code_gets_fallback(kind, clock):
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", ProviderError("slow down", code="429")),
                    claude=ScriptedProvider("claude-s", "4"))  # fmt: skip
    text, meta = _ask(manager, "What is 2+2?", mode=ExecutionMode.DIRECT)
    assert text == "4" and meta.provider == "claude" and meta.model == "claude-s"
    assert [a["provider"] for a in meta.provider_attempts] == ["deepseek", "claude"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("first", ["4", ProviderError("down", code="503"), AITimeoutError("slow")])
def test_3_attempts_always_populated(kind, first, clock):
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", first),
                    claude=ScriptedProvider("c", ProviderError("down", code="500")),
                    ollama=ScriptedProvider("o", ProviderError("down", code="500")))  # fmt: skip
    _, meta = _ask(manager, "hi")
    assert len(meta.provider_attempts) >= 1
    for attempt in meta.provider_attempts:
        assert set(engine.GenerationMeta.__dataclass_fields__) >= {"provider_attempts"}
        assert {"provider", "model", "status", "error_category", "error_code", "latency_ms",
                "timestamp", "tokens_in", "tokens_out", "tokens_total",
                "cost_usd_est"} <= set(attempt)  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_4_and_5_fallback_used_and_its_reason(kind, clock):
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", AITimeoutError("Request timed out")),
                    claude=ScriptedProvider("c", "4"))  # fmt: skip
    _, meta = _ask(manager, "hi")
    assert meta.fallback_used is True and meta.fallback_reason == "timeout"
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", "4"))
    _, meta = _ask(manager, "hi")
    assert meta.fallback_used is False and meta.fallback_reason is None


@pytest.mark.parametrize("kind", KINDS)
def test_6_single_provider_mode(kind, clock):
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", "never"),
                    claude=ScriptedProvider("c", "4"))  # fmt: skip
    text, meta = _ask(manager, "hi", use_fallback=False)
    assert (text, meta.provider) == ("4", "claude")
    assert not manager.providers["deepseek"].called


@pytest.mark.parametrize("kind", KINDS)
def test_7_disable_via_the_environment(kind, clock, monkeypatch):
    monkeypatch.setenv("TORQ_FALLBACK_ENABLED", "false")
    manager = _host(kind, clock, claude=ScriptedProvider("c", "4"))
    assert manager.fallback_executor is None
    text, meta = _ask(manager, "hi")
    assert (text, meta.provider, meta.fallback_used) == ("4", "claude", False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "script",
    [
        {"deepseek": ["4"]},
        {"deepseek": [ProviderError("x", code="429")], "claude": ["4"]},
        {"deepseek": [ProviderError("x", code="500")], "claude": [AITimeoutError("t")],
         "ollama": [ProviderError("x", code="502")]},
        {"deepseek": [AIResponseError("blocked", error_category="ai_error")]},
        {"deepseek": [RuntimeError("adapter crash")], "claude": ["4"]},
    ],
)  # fmt: skip
def test_8_invariants(kind, script, clock):
    providers = {name: ScriptedProvider(name, *items) for name, items in script.items()}
    manager = _host(kind, clock, **providers)
    _, meta = _ask(manager, "hi")
    attempts = meta.provider_attempts
    assert len(attempts) >= 1
    assert meta.fallback_used == (len(attempts) > 1)
    assert (meta.fallback_reason is not None) == meta.fallback_used
    succeeded = attempts[-1]["status"] == "success"
    assert (meta.error is None) == succeeded and (meta.error_category is None) == succeeded
    if succeeded:
        assert meta.provider == attempts[-1]["provider"]


# -- the gating rule: a policy block stops the chain ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_policy_block_never_reaches_a_second_provider(kind, clock):
    block = AIResponseError("Content policy violation: not allowed", error_category="ai_error")
    second = ScriptedProvider("c", "should never be returned")
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", block), claude=second)
    text, meta = _ask(manager, "Generate harmful content")
    assert not second.called
    assert len(meta.provider_attempts) == 1 and meta.fallback_used is False
    attempt = meta.provider_attempts[0]
    assert (attempt["status"], attempt["error_category"], attempt["provider"]) == (
        "failed", "ai_error", "deepseek",
    )  # fmt: skip
    assert meta.error_category == "ai_error" and "policy" in text.lower()


def _executor(clock, chain=("provider1", "provider2"), **providers):
    class Host:
        def get_provider(self, name):
            return providers.get(name)

    return ProviderFallbackExecutor(
        Host(), ProviderChainConfig(direct_chain=list(chain)), runtime=clock.runtime()
    )


def _blocked(clock):
    block = AIResponseError(
        "This request violates our safety guidelines", error_category="ai_error"
    )
    second = ScriptedProvider("m2", "should never be returned")
    return _executor(clock, provider1=ScriptedProvider("m1", block), provider2=second), second


def test_policy_block_from_plain_code(clock):
    executor, second = _blocked(clock)
    meta = GenerationMeta(mode=ExecutionMode.DIRECT)
    with pytest.raises(AIResponseError) as caught:
        executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
    assert caught.value.error_category == "ai_error"  # the provider's own exception
    assert caught.value.attempts == meta.provider_attempts and len(meta.provider_attempts) == 1
    assert not second.called and meta.fallback_used is False


def test_policy_block_awaited_in_a_running_loop(clock):
    executor, second = _blocked(clock)
    meta = GenerationMeta()

    async def host_code():
        with pytest.raises(AIResponseError):
            await executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)

    asyncio.run(host_code())
    assert not second.called and len(meta.provider_attempts) == 1


def test_a_plain_call_inside_a_running_loop_returns_the_text(clock):
    """A synchronous manager called from an async handler: the plain call still answers."""
    executor = _executor(clock, provider1=ScriptedProvider("m1", ProviderError("x", code="500")),
                         provider2=ScriptedProvider("m2", "4"))  # fmt: skip
    meta = GenerationMeta()

    def sync_manager_method():
        return executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)

    async def handler():
        return sync_manager_method()

    assert asyncio.run(handler()) == "4"
    assert meta.provider == "provider2" and meta.fallback_reason == "provider_error:500"


def test_a_call_from_a_worker_thread(clock):
    executor, second = _blocked(clock)
    found: list[BaseException] = []
    meta = GenerationMeta()

    def work():
        try:
            executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
        except BaseException as exc:
            found.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert isinstance(found[0], AIResponseError) and not second.called


def test_explicit_twins(clock):
    executor = _executor(clock, provider1=ScriptedProvider("m1", "4"))
    assert executor.generate_with_fallback_sync("x") == "4"
    executor = _executor(clock, provider1=ScriptedProvider("m1", "5"))
    assert asyncio.run(executor.agenerate_with_fallback("x")) == "5"


# -- what the host catches -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_exhausted_chain_is_the_hosts_apology_and_metadata(kind, clock):
    manager = _host(kind, clock, deepseek=ScriptedProvider("ds", ProviderError("boom", code="500")),
                    claude=ScriptedProvider("c", ProviderError("boom", code="502")),
                    ollama=ScriptedProvider("o", ProviderError("boom", code="503")))  # fmt: skip
    text, meta = _ask(manager, "hi")
    assert text.startswith("I apologize, but the AI service is currently unavailable")
    assert meta.error.startswith("All providers in chain failed. Last error: ")
    assert meta.error_category == "provider_error" and len(meta.provider_attempts) == 3


def test_the_exhausted_error_is_the_hosts_provider_error(clock):
    executor = _executor(clock, provider1=ScriptedProvider("a", ProviderError("Failed", code="500")),
                         provider2=ScriptedProvider("b", ProviderError("Failed again", code="500")))  # fmt: skip
    meta = GenerationMeta()
    with pytest.raises(ProviderError) as caught:
        executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
    assert str(caught.value) == "All providers in chain failed. Last error: Failed again"
    assert caught.value.attempts == meta.provider_attempts and caught.value.code == "500"
    assert meta.error_category == "provider_error"


def test_every_timeout_is_the_hosts_timeout_error(clock):
    executor = _executor(clock, provider1=ScriptedProvider("a", AITimeoutError("slow")),
                         provider2=ScriptedProvider("b", AITimeoutError("slower")))  # fmt: skip
    with pytest.raises(AITimeoutError, match="All providers in chain failed"):
        executor.generate_with_fallback("x")


def test_named_classes_are_raised(clock):
    class Mine(Exception):
        pass

    class Refused(Exception):
        def __init__(self, message, error_category="ai_error"):
            super().__init__(message)
            self.error_category = error_category

    class Host:
        def get_provider(self, name):
            return ScriptedProvider("m", RuntimeError("adapter crash"))

    executor = ProviderFallbackExecutor(
        Host(), ProviderChainConfig(direct_chain=["a", "b"]), runtime=clock.runtime(),
        error_classes={"provider_error": Mine, "ai_error": Refused},
    )  # fmt: skip
    with pytest.raises(Mine, match=r"All providers in chain failed\. Last error: adapter crash"):
        executor.generate_with_fallback("x")
    with pytest.raises(ValueError, match="did you mean 'ai_error'"):
        ProviderFallbackExecutor(Host(), error_classes={"ai_eror": Refused})
    with pytest.raises(TypeError, match="exception class"):
        ProviderFallbackExecutor(Host(), error_classes={"ai_error": "Refused"})


def test_the_engines_classes_take_the_hosts_constructors():
    refused = engine.AIResponseError("Content policy violation", error_category="ai_error")
    assert refused.error_category == "ai_error" and str(refused) == "Content policy violation"
    cause = ValueError("inner")
    failed = engine.ProviderError("Rate limited", code="429", cause=cause)
    assert (failed.code, failed.__cause__) == ("429", cause)
    assert engine.AITimeoutError("Request timed out").error_category == "timeout"


def test_a_host_that_adopted_the_engines_classes(clock):
    """``from engine import ProviderError, ...`` in the host: the same rules hold."""
    blocked = engine.AIResponseError("blocked", error_category="ai_error")
    first = ScriptedProvider("a", blocked)
    second = ScriptedProvider("b", "never")
    providers = {"provider1": first, "provider2": second}
    # A host module that names the engine's classes (this test module names the host's).
    host = type(
        "Host", (), {"__module__": "adopter", "get_provider": lambda _, n: providers.get(n)}
    )
    executor = ProviderFallbackExecutor(
        host(),
        ProviderChainConfig(direct_chain=["provider1", "provider2"]),
        runtime=clock.runtime(),
    )
    with pytest.raises(engine.AIResponseError) as caught:
        executor.generate_with_fallback("x")
    assert caught.value is blocked
    assert not second.called


# -- the 429 pause -------------------------------------------------------------------------


def test_a_rate_limit_pauses_before_the_next_provider(clock):
    executor = _executor(clock, provider1=ScriptedProvider("a", ProviderError("Rate limited", code="429")),
                         provider2=ScriptedProvider("b", "Success"))  # fmt: skip
    meta = GenerationMeta()
    assert executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60) == "Success"
    assert clock.sleeps == [engine.RATE_LIMIT_DELAY_MS / 1000]  # on the clock, never for real
    assert meta.provider_attempts[0]["pause_ms"] == 250
    assert meta.fallback_reason == "provider_error:429"


def test_no_pause_after_the_last_provider_or_another_failure(clock):
    executor = _executor(clock, provider1=ScriptedProvider("a", ProviderError("x", code="500")),
                         provider2=ScriptedProvider("b", ProviderError("y", code="429")))  # fmt: skip
    with pytest.raises(ProviderError):
        executor.generate_with_fallback("x")
    assert clock.sleeps == []


# -- the host's failures, read by their category and code ----------------------------------


HOST_CASES = [
    # (exception, category, error_category, error_code, transient)
    (AIResponseError("policy", error_category="ai_error"), "non_retryable", "ai_error", None, False),
    (AIResponseError("filtered", code="content_filter"), "non_retryable", "ai_error", "content_filter", False),
    (AIResponseError("slow down", code="429"), "non_retryable", "ai_error", "429", False),
    (AITimeoutError("Request timed out"), "timeout", "timeout", None, True),
    (AITimeoutError("no head", code="read_timeout"), "timeout", "timeout", "read_timeout", True),
    (AITimeoutError("queued", code="queue_timeout"), "timeout", "timeout", "queue_timeout", False),
    (ProviderError("Rate limited", code="429"), "retryable", "provider_error", "429", True),
    (ProviderError("Rate limited", code=429), "retryable", "provider_error", "429", True),
    (ProviderError("overloaded", code="529"), "retryable", "provider_error", "529", True),
    (ProviderError("no key", code="401"), "retryable", "provider_error", "401", False),
    (ProviderError("bad request", code="400"), "retryable", "provider_error", "400", False),
    (ProviderError("Failed"), "retryable", "provider_error", None, False),
    (ProviderError("odd", error_category="exception"), "retryable", "exception", "ProviderError", False),
    (ProviderError("said", error_category="ai_error", code="500"), "non_retryable", "ai_error", "500", False),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "category", "error_category", "code", "transient"), HOST_CASES)
def test_host_exceptions_are_classified_by_their_category_and_code(
    exc, category, error_category, code, transient
):
    from engine.core.classify import classify_exception

    outcome = classify_exception(exc, {}, "p")
    assert (outcome.category, outcome.error_category, outcome.error_code, outcome.transient) == (
        category, error_category, code, transient,
    )  # fmt: skip
    assert outcome.exception is exc


def test_a_hosts_retry_after_reaches_the_breaker(clock, tmp_path: Path, monkeypatch):
    (tmp_path / "direct.yaml").write_text(
        "steps:\n  - {provider: a, retries: 1, backoff_max: 30}\n  - b\n", encoding="utf-8"
    )
    monkeypatch.setenv("TORQ_CHAINS_DIR", str(tmp_path))
    limited = ProviderError("Rate limited", code="429", retry_after=7)
    executor = _executor(clock, a=ScriptedProvider("m", limited, "4"), b=ScriptedProvider("n", "x"))
    meta = GenerationMeta()
    assert executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60) == "4"
    first = meta.provider_attempts[0]
    assert (first["retry_after_ms"], first["next"], first["category"]) == (7000, "a", "retryable")
    assert clock.sleeps == [7.0]  # the same step retried after the provider's Retry-After


# -- chains: files over lists; the same configuration as LLMManager -----------------------


def test_a_bad_list_is_reported_like_a_file(clock):
    class Host:
        def get_provider(self, name):
            return None

    config = ProviderChainConfig(direct_chain=["a", {"provider": "b", "retires": 2}, "a"])
    with pytest.raises(ChainConfigError) as caught:
        ProviderFallbackExecutor(Host(), config)
    text = str(caught.value)
    assert (
        "ProviderChainConfig.direct_chain: steps[1].retires: unknown key 'retires' (did you mean 'retries'?)"
        in text
    )
    assert "ProviderChainConfig.direct_chain: steps[2]: duplicate step id 'a'" in text


def test_a_mode_file_wins_over_the_list(clock, tmp_path: Path, monkeypatch):
    (tmp_path / "research.yaml").write_text("steps: [r1, r2]\n", encoding="utf-8")
    monkeypatch.setenv("TORQ_CHAINS_DIR", str(tmp_path))
    executor = _executor(clock, provider1=ScriptedProvider("a", "from the list"),
                         r1=ScriptedProvider("b", "from the file"))  # fmt: skip
    assert executor.generate_with_fallback("x", ExecutionMode.RESEARCH) == "from the file"
    assert executor.generate_with_fallback("x", ExecutionMode.DIRECT) == "from the list"
    assert executor.chain_for("research").chain.source == str(tmp_path / "research.yaml")


def test_the_seed_variables_are_honoured(clock, monkeypatch):
    monkeypatch.setenv("TORQ_DIRECT_CHAIN", "provider2,provider1")
    monkeypatch.setenv("TORQ_PROVIDER_TIMEOUT", "7")
    executor = _executor(clock, provider1=ScriptedProvider("a", "one"),
                         provider2=ScriptedProvider("b", "two"))  # fmt: skip
    assert executor.generate_with_fallback("x") == "two"
    assert [s.timeout for s in executor.chain_for("direct").chain.steps] == [7.0, 7.0]
    monkeypatch.delenv("TORQ_DIRECT_CHAIN")
    monkeypatch.setenv("TORQ_FALLBACK_ENABLED", "false")
    executor = _executor(clock, provider1=ScriptedProvider("a", ProviderError("x", code="500")),
                         provider2=ScriptedProvider("b", "never"))  # fmt: skip
    meta = GenerationMeta()
    with pytest.raises(ProviderError):
        executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
    assert len(meta.provider_attempts) == 1 and executor.fallback_enabled is False


def test_each_attempt_gets_the_calls_timeout(clock):
    seen: list[float] = []

    class Timed:
        model = "m"

        def generate_response(self, *, prompt, timeout):
            seen.append(timeout)
            raise ProviderError("x", code="500")

    executor = _executor(clock, provider1=Timed(), provider2=Timed())
    with pytest.raises(ProviderError):
        executor.generate_with_fallback("x", timeout=12)
    assert seen == [12.0, 12.0]


def test_breakers_and_the_request_log_work_here(clock, tmp_path: Path, monkeypatch):
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv("TORQ_TELEMETRY_PATH", str(log))
    failing = ScriptedProvider("a", *[ProviderError("down", code="503")] * 10)
    executor = _executor(clock, provider1=failing, provider2=ScriptedProvider("b", *["ok"] * 10))
    for _ in range(6):
        meta = GenerationMeta()
        executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
    assert meta.provider_attempts[0]["status"] == "skipped"  # provider1's breaker is open
    assert meta.provider_attempts[0]["error_code"] == "circuit_open"
    executor.close()
    assert len(log.read_text(encoding="utf-8").splitlines()) == 6


def test_hot_reload_on_this_route(clock, tmp_path: Path, monkeypatch):
    chain = tmp_path / "direct.yaml"
    chain.write_text("steps: [provider1]\n", encoding="utf-8")
    monkeypatch.setenv("TORQ_CHAINS_DIR", str(tmp_path))
    executor = _executor(clock, provider1=ScriptedProvider("a", "one"),
                         provider2=ScriptedProvider("b", "two"))  # fmt: skip
    assert executor.generate_with_fallback("x") == "one"
    chain.write_text("steps: [provider2]\n", encoding="utf-8")
    executor.reload()
    assert executor.generate_with_fallback("x") == "two"
    chain.unlink()
    executor.reload()  # the file is gone: the list's chain is back
    assert executor.chain_for("direct").chain.source == "ProviderChainConfig.direct_chain"


def test_the_callers_meta_is_filled_whatever_its_class(clock):
    class Slotted:
        __slots__ = ("provider", "provider_attempts")

    executor = _executor(clock, provider1=ScriptedProvider("a", "4"))
    meta = Slotted()
    assert executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60) == "4"
    assert meta.provider == "provider1" and len(meta.provider_attempts) == 1


def test_a_foreign_message_is_redacted(clock, monkeypatch):
    key = "zq-live-0123456789abcdefghij"  # a key the provider object read from the environment
    monkeypatch.setenv("ACME_API_KEY", key)
    leaky = RuntimeError(f"auth failed for key {key} (Authorization: Bearer {key})")
    executor = _executor(clock, provider1=ScriptedProvider("a", leaky),
                         provider2=ScriptedProvider("b", ProviderError(f"denied {key}", code="401")))  # fmt: skip
    meta = GenerationMeta()
    with pytest.raises(ProviderError) as caught:
        executor.generate_with_fallback("x", ExecutionMode.DIRECT, [], meta, 60)
    everything = repr(meta.provider_attempts) + str(meta.error) + str(caught.value)
    assert key not in everything and key[:10] not in everything
    assert "[redacted]" in meta.provider_attempts[0]["message"]


def test_mock_providers_as_the_hosts_own_tests_use_them(clock):
    """The host's tests hand out ``Mock`` providers through a ``Mock`` manager whose
    ``get_provider`` answers a list in turn: it is asked once per attempt, in order."""
    from unittest.mock import Mock

    bad, good = Mock(), Mock()
    bad.generate_response.return_value = "Error: API failed"  # an error as text
    good.generate_response.return_value = "Success"
    good.model = "good-model"
    manager = Mock()
    manager.get_provider.side_effect = [bad, good]
    executor = ProviderFallbackExecutor(
        manager, ProviderChainConfig(direct_chain=["bad_provider", "good_provider"]),
        runtime=clock.runtime(),
    )  # fmt: skip
    meta = GenerationMeta(mode=ExecutionMode.DIRECT)
    assert executor.generate_with_fallback("Test", ExecutionMode.DIRECT, [], meta, 60) == "Success"
    assert [c.args for c in manager.get_provider.call_args_list] == [
        ("bad_provider",),
        ("good_provider",),
    ]
    assert meta.provider_attempts[0]["error_code"] == "contract_violation"
    assert (meta.provider, meta.model) == ("good_provider", "good-model")
    assert meta.provider_attempts[0]["model"] is None  # a Mock's attribute is no model name
