"""A new mode is a new chain file: its name (or its ``mode:`` key) is a mode every entry point
takes, a name no chain serves is a clear error, and a folder of one's own chains runs the
shipped chains for the modes it has no file for."""

from __future__ import annotations

import json

import pytest
from helpers import CHAINS, Scripted, run_cli, write_chain

from engine import ChainConfigError, ExecutionMode, LLMManager, load_chain


@pytest.fixture
def folder(tmp_path):
    """A user's chains folder: a new mode by file name, another by a ``mode:`` key."""
    folder = tmp_path / "chains"
    write_chain(folder, "pair_review", "steps: [deepseek, claude]\n")
    write_chain(folder, "quick", "mode: fast\nsteps: [ollama]\n")
    return folder


def _manager(folder, **providers):
    return LLMManager({"chains_dir": str(folder), "providers": providers})


def test_a_chain_file_is_a_mode_the_api_takes(folder):
    with _manager(folder, deepseek=Scripted("reviewed"), ollama=Scripted("quick")) as manager:
        text, meta = manager.generate_response("hi", mode="pair_review")
        assert (text, meta.mode, meta.provider) == ("reviewed", "pair_review", "deepseek")
        assert meta.to_dict()["mode"] == "pair_review"
        text, meta = manager.generate_response("hi", mode="fast")
        assert (text, meta.mode) == ("quick", "fast")
        assert manager.chain_for("fast").chain.name == "quick"


def test_the_seed_modes_stay_enum_members_and_their_values_give_them(folder):
    assert [m.value for m in ExecutionMode] == [
        "direct", "research", "code_generation", "composition", "hierarchical",
    ]  # fmt: skip
    with _manager(folder, deepseek=Scripted("a", "b")) as manager:
        _, by_member = manager.generate_response("hi", mode=ExecutionMode.RESEARCH)
        _, by_name = manager.generate_response("hi", mode="research")
    assert by_member.mode is ExecutionMode.RESEARCH and by_name.mode is ExecutionMode.RESEARCH


def test_a_name_no_chain_serves_is_an_error_listing_the_modes(folder):
    with _manager(folder, deepseek=Scripted()) as manager, pytest.raises(ValueError) as caught:
        manager.generate_response("hi", mode="pair_reveiw")
    message = str(caught.value)
    assert message.startswith("mode 'pair_reveiw' names no chain (did you mean 'pair_review'?)")
    assert message.endswith(
        "modes: direct, research, code_generation, composition, hierarchical, fast, pair_review"
    )


@pytest.mark.parametrize("mode", ["", "has space", "9lives", "x" * 101])
def test_a_mode_that_is_no_name_is_refused(folder, mode):
    with _manager(folder) as manager, pytest.raises(ValueError, match="is not a mode's name"):
        manager.generate_response("hi", mode=mode)


def test_the_cli_takes_the_new_modes(folder):
    explained = run_cli("explain", "pair_review", "--code", "503", "--chains", str(folder))
    assert explained.returncode == 0, explained.stderr
    assert "chain 'pair_review'" in explained.stdout and "deepseek  -> claude" in explained.stdout
    simulated = run_cli("simulate", "fast", "--outcomes", "ollama=success", "--chains", str(folder))
    assert simulated.returncode == 0, simulated.stderr
    assert "mode fast: chain 'quick' (ollama)" in simulated.stdout
    wrong = run_cli("explain", "pair_reveiw", "--code", "503", "--chains", str(folder))
    assert wrong.returncode == 2
    assert "mode 'pair_reveiw' names no chain (did you mean 'pair_review'?)" in wrong.stderr


def test_validate_says_which_chain_serves_each_mode(folder):
    result = run_cli("validate", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        line.split()[0]: line.split(maxsplit=1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("  ")
    }
    assert rows["pair_review"] == str(folder / "pair_review.yaml")
    assert rows["fast"] == str(folder / "quick.yaml")
    assert rows["research"] == f"shipped {CHAINS.resolve() / 'research.yaml'}"
    assert rows["composition"] == f"shipped {CHAINS.resolve() / 'default.yaml'}"
    as_json = json.loads(run_cli("validate", "--json", str(folder)).stdout)
    assert as_json["valid"] is True


def test_a_default_of_ones_own_replaces_the_shipped_chains(folder):
    write_chain(folder, "default", "steps: [ollama]\n")
    with _manager(folder) as manager:
        for mode in ("direct", "research", "composition"):
            assert manager.chain_for(mode).chain.source == str(folder / "default.yaml")
    rows = run_cli("validate", str(folder)).stdout.splitlines()[2:]
    assert not any("shipped" in row for row in rows)
    assert f"  research         {folder / 'default.yaml'} (no research.yaml)" in rows


def test_two_chains_for_one_mode_are_a_located_problem(folder):
    write_chain(folder, "also_fast", "mode: fast\nsteps: [deepseek]\n")
    with pytest.raises(ChainConfigError) as caught:
        _manager(folder)
    assert "mode 'fast' is served by two chains" in str(caught.value)
    assert str(folder / "also_fast.yaml") in str(caught.value)
    result = run_cli("validate", str(folder))
    assert result.returncode == 1
    assert (
        f"{folder / 'quick.yaml'}:1:7: mode: mode 'fast' is served by two chains: "
        f"{folder / 'also_fast.yaml'} and {folder / 'quick.yaml'}"
    ) in result.stdout


def test_a_config_order_for_a_new_mode_and_for_no_mode(folder):
    config = {"chains_dir": str(folder), "chains": {"pair_review": ["claude"]}}
    with LLMManager({**config, "providers": {"claude": Scripted("c")}}) as manager:
        assert manager.generate_response("hi", mode="pair_review")[1].provider == "claude"
    with pytest.raises(ChainConfigError, match="mode 'pair_reveiw' names no chain"):
        LLMManager({**config, "chains": {"pair_reveiw": ["claude"]}})


def test_the_mode_key_is_in_the_schema_and_checked():
    schema = json.loads((CHAINS / "chain.schema.json").read_text())
    assert "mode" in schema["$defs"]["ChainSpec"]["properties"]
    chain = load_chain(CHAINS / "direct.yaml")
    assert chain.spec.mode is None and chain.name == "direct"


def test_aliases_name_a_chain_for_gateway_clients(folder):
    write_chain(folder, "pair_review", "aliases: [gpt-4o, openai/gpt-4o]\nsteps: [deepseek]\n")
    write_chain(folder, "quick", "mode: fast\naliases: [haiku]\nsteps: [ollama]\n")
    with _manager(folder) as manager:
        assert manager.chainset.aliases == {"gpt-4o": "pair_review", "openai/gpt-4o": "pair_review",
                                            "haiku": "fast"}  # fmt: skip
        assert manager.chainset.model("haiku") == "fast"
        assert manager.chainset.model("direct") == "direct"  # a mode names itself
        assert manager.chainset.model("gpt-5") is None
    assert run_cli("validate", str(folder)).returncode == 0
    # drawn in the diagram's header and said by explain
    from engine.tools.diagrams import dot_source, mermaid_source

    chain = load_chain(folder / "pair_review.yaml")
    for text in (dot_source(chain), mermaid_source(chain)):
        assert "gateway clients may call it: gpt-4o, openai/gpt-4o" in text
    explained = run_cli("explain", "pair_review", "--code", "503", "--chains", str(folder))
    assert "(deadline 120 s, also called gpt-4o, openai/gpt-4o)" in explained.stdout


def test_an_alias_used_twice_or_naming_a_mode_is_a_located_problem(folder):
    write_chain(folder, "pair_review", "steps: [deepseek]\naliases:\n  - gpt-4o\n  - research\n")
    write_chain(folder, "quick", "mode: fast\naliases: [haiku, gpt-4o]\nsteps: [ollama]\n")
    with pytest.raises(ChainConfigError) as caught:
        _manager(folder)
    said = str(caught.value)
    assert (
        f"{folder / 'pair_review.yaml'}:4:5: aliases[1]: alias 'research' is a mode's name" in said
    )
    assert (
        f"{folder / 'quick.yaml'}:2:18: aliases[1]: alias 'gpt-4o' is declared by two chains"
        in said
    )
    result = run_cli("validate", str(folder))
    assert result.returncode == 1
    assert "pair_review.yaml:4:5: aliases[1]: alias 'research'" in result.stdout


def test_an_alias_that_is_no_name_is_refused_at_its_line(tmp_path):
    write_chain(tmp_path, "direct", "aliases: [ok-name, 'has space']\nsteps: [deepseek]\n")
    result = run_cli("validate", str(tmp_path / "direct.yaml"))
    assert result.returncode == 1
    assert "direct.yaml:1:" in result.stdout and "aliases[1]" in result.stdout
