"""Chain validation: a corpus of malformed files (one kind of mistake each, the expected
problems written in the file itself as `# expect: LINE:COL: field: message` lines), the
default chains, and the ChainConfigError raised when a bad chain is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CHAINS, chains_dir

from engine import ChainConfigError, LLMManager, check_file, load_chain
from engine.chain.loader import load_chains

MALFORMED = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("# expect: ", 1)[1] for line in lines if "# expect: " in line]


def test_the_corpus_covers_at_least_twenty_mistakes():
    assert len(MALFORMED) >= 20
    assert all(expectations(path) for path in MALFORMED)


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_each_malformed_file_gives_its_expected_problems(path):
    chain, problems = check_file(path)
    assert chain is None
    got = [str(problem) for problem in problems]
    expected = [f"{path}:{text}" for text in expectations(path)]
    assert len(got) == len(expected), got
    for want, have in zip(expected, got, strict=True):
        assert have.startswith(want), (want, have)


@pytest.mark.parametrize("path", MALFORMED[:3], ids=lambda p: p.stem)
def test_loading_a_malformed_file_raises_chain_config_error(path):
    with pytest.raises(ChainConfigError) as caught:
        load_chain(path)
    assert caught.value.problems and all(p.source == str(path) for p in caught.value.problems)
    assert str(caught.value.problems[0]) in str(caught.value)


def test_default_chains_are_valid_and_in_the_seed_order():
    chains = load_chains(CHAINS)
    orders = {name: [step.provider for step in chain.steps] for name, chain in chains.items()}
    assert orders == {
        "direct": ["deepseek", "openai", "claude", "ollama"],
        "research": ["claude", "openai", "deepseek", "ollama"],
        "code_generation": ["claude", "openai", "deepseek"],
        "default": ["deepseek", "claude"],
    }


def test_a_list_is_a_whole_chain(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text("- deepseek\n- {provider: openai, model: gpt-4o-mini, retries: 1}\n")
    chain = load_chain(path)
    assert [(s.id, s.model, s.retries) for s in chain.steps] == [
        ("deepseek", None, 0),
        ("openai", "gpt-4o-mini", 1),
    ]
    assert chain.steps[1].routes == {
        "retryable": "exhausted",
        "timeout": "exhausted",
        "non_retryable": "aborted",
    }


def test_steps_inherit_defaults_and_override_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "defaults: {timeout: 12, retries: 1, goto: {non_retryable: next}}\n"
        "steps:\n  - deepseek\n  - {provider: openai, timeout: 5, goto: {timeout: abort}}\n"
        "  - claude\n"
    )
    first, second, _ = load_chain(path).steps
    assert (first.timeout, first.retries, first.routes["non_retryable"]) == (12, 1, "openai")
    assert (second.timeout, second.routes["timeout"], second.routes["retryable"]) == (
        5,
        "aborted",
        "claude",
    )


def test_a_bad_chain_stops_the_manager_with_every_problem(tmp_path):
    folder = chains_dir(
        tmp_path,
        {
            "direct": "steps: [deepseek, {provider: openai, retries: -2}]\n",
            "research": "stepz: [claude]\n",
        },
    )
    with pytest.raises(ChainConfigError) as caught:
        LLMManager(config={"chains_dir": str(folder)})
    sources = {Path(p.source).name for p in caught.value.problems}
    assert sources == {"direct.yaml", "research.yaml"}


def test_a_missing_chains_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ChainConfigError, match="chains directory does not exist"):
        LLMManager(config={"chains_dir": str(tmp_path / "nope")})


def test_a_folder_without_a_default_runs_the_shipped_chains_for_the_rest(tmp_path, caplog):
    folder = tmp_path / "only-direct"
    folder.mkdir()
    (folder / "direct.yaml").write_text("steps: [deepseek]\n")
    with caplog.at_level("INFO"), LLMManager(config={"chains_dir": str(folder)}) as manager:
        assert [s.provider for s in manager.chain_for("direct").chain.steps] == ["deepseek"]
        research = manager.chain_for("research").chain
        assert Path(research.source).parent == CHAINS.resolve()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("chains from"))
    assert f"direct <- {folder / 'direct.yaml'}" in line
    assert f"research <- {CHAINS.resolve() / 'research.yaml'}" in line


def test_providers_file_problems_are_located(tmp_path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n"
        "  groq:\n"
        "    kind: openai\n"
        "    base_url: https://api.groq.com/openai/v1\n"
        "    api_key: gsk-should-not-be-here\n"
        "  mistral:\n"
        "    kind: mistral\n"
        "  local:\n"
        "    model: phi\n"
        "  claude:\n"
        "    kind: openai\n"
    )
    settings, problems = check_providers_file(path)
    assert settings is None
    got = [str(p) for p in problems]
    assert got[0].startswith(
        f"{path}:5:5: providers.groq.api_key: unknown key 'api_key' (did you mean 'api_key_env'?)"
    )
    assert got[1].startswith(f"{path}:7:11: providers.mistral.kind: unknown value 'mistral'")
    assert "gsk-should-not-be-here" not in "\n".join(got)


def test_providers_file_semantic_problems(tmp_path):
    from engine.providers.settings import check_providers_file

    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  local:\n    model: phi\n  claude:\n    kind: openai\n")
    _, problems = check_providers_file(path)
    assert [str(p) for p in problems] == [
        f"{path}:2:3: providers.local: a new provider needs kind, base_url",
        f"{path}:5:11: providers.claude.kind: 'claude' is built in with kind 'anthropic'; "
        "add a provider under another name instead",
    ]


def test_a_declared_provider_is_usable_in_chains_and_env_lists(tmp_path, monkeypatch):
    folder = chains_dir(tmp_path, {"direct": "steps: [groq, openai]\n"})
    (folder / "providers.yaml").write_text(
        "providers:\n  groq:\n    kind: openai\n    base_url: https://api.groq.com/openai/v1\n"
        "    api_key_env: GROQ_API_KEY\n    model: llama-3.3-70b\n  openai:\n    model: gpt-4.1\n"
    )
    monkeypatch.setenv("TORQ_RESEARCH_CHAIN", "groq,claude")
    manager = LLMManager(config={"chains_dir": str(folder)})
    groq = manager.get_provider("groq")
    assert (groq.kind, groq.base_url, groq.model, groq.configured) == (
        "openai",
        "https://api.groq.com/openai/v1",
        "llama-3.3-70b",
        False,
    )
    assert manager.get_provider("openai").model == "gpt-4.1"
    assert [s.provider for s in manager.chain_for("research").chain.steps] == ["groq", "claude"]


def test_a_bad_providers_file_stops_the_manager(tmp_path):
    folder = chains_dir(tmp_path, {})
    (folder / "providers.yaml").write_text("providers:\n  x:\n    kindd: openai\n")
    with pytest.raises(ChainConfigError, match="did you mean 'kind'"):
        LLMManager(config={"chains_dir": str(folder)})
