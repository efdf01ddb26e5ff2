"""The seed guide's contract: one provider lookup per attempt, on every path; a lookup that
raises is that attempt's recorded failure, never an error from inside the engine."""

from __future__ import annotations

from helpers import Scripted

from engine import LLMManager


class Lookups:
    """A replacement ``get_provider`` that hands out the given objects in turn (like a
    ``Mock(side_effect=[...])``) and counts its calls."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = 0

    def __call__(self, name):
        self.calls += 1
        result = self.results.pop(0) if self.results else None
        if isinstance(result, BaseException):
            raise result
        if result is None:
            raise StopIteration  # what an exhausted side_effect raises
        return result


def test_the_single_provider_path_looks_up_once_per_attempt():
    first, second = Scripted("from the first"), Scripted("from the second")
    manager = LLMManager(config={"fallback_enabled": False, "providers": {"claude": Scripted("x")}})
    lookups = Lookups(first, second)
    manager.get_provider = lookups
    text, meta = manager.generate_response("hi", provider="claude")
    assert text == "from the first" and lookups.calls == 1
    assert len(meta.provider_attempts) == 1 and not second.calls


def test_an_exhausted_lookup_is_a_recorded_failure_not_a_runtime_error():
    manager = LLMManager(config={"fallback_enabled": False, "providers": {"claude": Scripted("x")}})
    manager.get_provider = Lookups(Scripted("once"))
    assert manager.generate_response("hi", provider="claude")[0] == "once"
    text, meta = manager.generate_response("hi", provider="claude")
    (attempt,) = meta.provider_attempts
    assert (attempt["error_category"], attempt["error_code"]) == ("exception", "StopIteration")
    assert meta.error and "StopIteration" in meta.error
    assert isinstance(text, str)


def test_a_lookup_that_raises_falls_back_on_the_chain():
    manager = LLMManager(config={"providers": {"deepseek": Scripted("x"), "openai": Scripted("x")}})
    manager.get_provider = Lookups(RuntimeError("registry down"), Scripted("second"))
    text, meta = manager.generate_response("hi")
    assert text == "second" and meta.fallback_used
    assert meta.provider_attempts[0]["error_code"] == "RuntimeError"
    assert meta.fallback_reason == "exception:RuntimeError"
