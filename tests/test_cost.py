"""Cost of a reply from the price table, prompt-cache reads and writes priced apart."""

from __future__ import annotations

import pytest

from engine.providers.settings import BUILTIN_SETTINGS, load_providers_file


def test_anthropic_cache_tokens_are_priced_at_their_own_rates():
    claude = BUILTIN_SETTINGS["claude"]
    # input_tokens excludes cached ones: 1,000 plain + 10,000 read + 2,000 written
    cost = claude.cost("claude-sonnet-4-5-20250929", 1000, 500, 10_000, 2_000, cache_in_input=False)
    assert cost == pytest.approx((1000 * 3.0 + 500 * 15.0 + 10_000 * 0.30 + 2_000 * 3.75) / 1e6)


def test_openai_cached_tokens_are_part_of_the_prompt_count():
    openai = BUILTIN_SETTINGS["openai"]
    cost = openai.cost("gpt-4o-2024-08-06", 2006, 300, 1920)
    assert cost == pytest.approx((86 * 2.50 + 300 * 10.0 + 1920 * 1.25) / 1e6)


def test_a_providers_file_sets_cache_prices_and_they_default_to_the_input_price(tmp_path):
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  claude:\n    prices:\n"
        "      my-model: {input: 2, output: 4, cache_read: 0.5}\n"
    )
    claude = load_providers_file(tmp_path)["claude"]
    cost = claude.cost("my-model", 100, 10, 1000, 1000, cache_in_input=False)
    assert cost == pytest.approx((100 * 2 + 10 * 4 + 1000 * 0.5 + 1000 * 2) / 1e6)


def test_a_priced_answer_keeps_every_other_field():
    # Every field set to something other than its default: a field added to Completion and
    # not carried by with_cost shows here.
    import dataclasses

    from engine.types.completion import Completion
    from engine.types.request import ToolCall

    values = {
        "text": "t", "model": "m", "tokens_in": 3, "tokens_out": 4, "cost_usd": None,
        "tool_calls": (ToolCall("c1", "f", "{}"),), "finish_reason": "stop",
        "reasoning": "r", "cache_read_tokens": 5, "cache_write_tokens": 6,
    }  # fmt: skip
    assert set(values) == {f.name for f in dataclasses.fields(Completion)}
    answer = Completion(**values)
    assert answer.with_cost(0.25) == dataclasses.replace(answer, cost_usd=0.25)
