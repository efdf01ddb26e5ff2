"""GenerationMeta round-trips through JSON; the error types carry what callers read."""

from __future__ import annotations

import json

import pytest

from engine import (
    AIResponseError,
    AITimeoutError,
    ExecutionMode,
    GenerationMeta,
    ProviderError,
)


def test_meta_round_trips_through_json():
    meta = GenerationMeta(
        provider="openai",
        model="gpt-4o",
        mode=ExecutionMode.RESEARCH,
        tools_used=["search"],
        provider_attempts=[{"provider": "openai", "status": "success"}],
    )
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["mode"] == "research"
    assert GenerationMeta.from_dict(data) == meta


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        GenerationMeta.from_dict({"colour": "red"})


def test_every_meta_has_its_own_request_id():
    assert GenerationMeta().request_id != GenerationMeta().request_id


@pytest.mark.parametrize(
    ("kind", "category"),
    [(ProviderError, "provider_error"), (AITimeoutError, "timeout"), (AIResponseError, "ai_error")],
)
def test_outcome_errors(kind, category):
    cause = OSError("reset")
    error = kind("went wrong", code=429, cause=cause, provider="openai", retry_after=2.5)
    assert (error.code, error.error_category, error.provider, error.retry_after) == (
        "429",
        category,
        "openai",
        2.5,
    )
    assert error.__cause__ is cause and str(error) == "went wrong"
    assert kind("plain").code is None
