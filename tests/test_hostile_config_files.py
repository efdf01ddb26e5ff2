"""Chain and providers files built to hurt: each is refused quickly, with a located problem,
never with a traceback, a RecursionError or a MemoryError, and nothing of a file the
chains directory does not own is echoed back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import run_cli

from engine import ChainConfigError, LLMManager, load_chain, load_chains
from engine.chain.filelimits import MAX_DEPTH, MAX_FILE_BYTES, MAX_ITEMS, MAX_PROBLEMS_SHOWN

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
steps: *i
"""


def refused(path: Path) -> ChainConfigError:
    started = time.monotonic()
    with pytest.raises(ChainConfigError) as caught:
        load_chain(path)
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"{elapsed:.1f}s to refuse {path.name}"  # seconds, not minutes
    return caught.value


def validate(path: Path):
    result = run_cli("validate", str(path))
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1, result.stderr
    return result


def test_an_alias_bomb_is_refused_at_its_first_anchor(tmp_path: Path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    error = refused(path)
    assert [(p.line, p.column) for p in error.problems] == [(1, 4)]
    assert "anchors" in error.problems[0].message
    assert f"{path}:1:4" in validate(path).stdout


def test_an_alias_alone_is_refused_too(tmp_path: Path):
    path = tmp_path / "alias.yaml"
    path.write_text("defaults: {timeout: 5}\nsteps:\n  - deepseek\n  - *x\n")
    assert "alias" in str(refused(path)) or "anchor" in str(refused(path))


def test_deep_nesting_is_refused_without_recursion_errors(tmp_path: Path):
    path = tmp_path / "deep.yaml"
    path.write_text("steps: " + "[" * 1000 + "]" * 1000 + "\n")
    error = refused(path)
    assert f"nested more than {MAX_DEPTH} levels" in str(error)
    assert "RecursionError" not in validate(path).stderr


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path):
    path = tmp_path / "huge.yaml"
    path.write_text("error_codes:\n" + "".join(f"  c{i}: retryable\n" for i in range(60_000)))
    assert path.stat().st_size > MAX_FILE_BYTES
    error = refused(path)
    assert f"limited to {MAX_FILE_BYTES}" in str(error)


def test_too_many_entries_in_one_place(tmp_path: Path):
    path = tmp_path / "wide.yaml"
    path.write_text("steps: [" + ", ".join(["deepseek"] * (MAX_ITEMS + 5)) + "]\n")
    assert f"more than {MAX_ITEMS} entries" in str(refused(path))


def test_too_many_steps(tmp_path: Path):
    path = tmp_path / "long.yaml"
    path.write_text(
        "steps:\n" + "".join(f"  - {{id: s{i}, provider: deepseek}}\n" for i in range(150))
    )
    error = refused(path)
    assert [p.field for p in error.problems] == ["steps"]
    assert "at most 100 steps (got 150)" in str(error)


def test_problems_are_capped_and_step_lists_kept_short(tmp_path: Path):
    steps = "".join(
        f"  - {{id: s{i}, provider: deepseek, goto: {{retryable: nowhere{i}}}}}\n"
        for i in range(90)
    )
    path = tmp_path / "gotos.yaml"
    path.write_text("steps:\n" + steps)
    error = refused(path)
    assert len(error.problems) == MAX_PROBLEMS_SHOWN + 1
    assert error.problems[-1].message == f"… and {90 - MAX_PROBLEMS_SHOWN} more problems"
    assert all(len(p.message) < 400 for p in error.problems)
    out = validate(path).stdout
    assert len(out) < 40_000 and "… and 40 more problems" in out


def test_a_symlink_out_of_the_chains_directory_is_refused_and_never_echoed(tmp_path: Path):
    outside = tmp_path / "secret.txt"
    outside.write_text("root: $6$SHADOWHASH-do-not-print:19000:0:99999:7:::\n")
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek]\n")
    (folder / "evil.yaml").symlink_to(outside)
    with pytest.raises(ChainConfigError) as caught:
        load_chains(folder)
    assert "outside its directory" in str(caught.value)
    assert "SHADOWHASH" not in str(caught.value)
    with pytest.raises(ChainConfigError):
        LLMManager(config={"chains_dir": str(folder)})
    result = run_cli("validate", str(folder))
    assert result.returncode == 1 and "SHADOWHASH" not in result.stdout + result.stderr


def test_a_providers_file_symlinked_out_is_refused(tmp_path: Path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("providers:\n  groq: {kind: openai, base_url: http://x, model: m}\n")
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek]\n")
    (folder / "providers.yaml").symlink_to(outside)
    with pytest.raises(ChainConfigError, match="outside its directory"):
        LLMManager(config={"chains_dir": str(folder)})


def test_a_symlink_inside_the_directory_is_fine(tmp_path: Path):
    folder = tmp_path / "chains"
    folder.mkdir()
    (folder / "default.yaml").write_text("steps: [deepseek]\n")
    (folder / "direct.yaml").symlink_to(folder / "default.yaml")
    assert set(load_chains(folder)) == {"default", "direct"}


def test_a_device_is_not_a_chain_file(tmp_path: Path):
    error = refused(Path("/dev/zero"))
    assert "not a regular file" in str(error) or "outside" in str(error)


def test_unknown_keys_are_echoed_as_short_escaped_excerpts(tmp_path: Path):
    path = tmp_path / "keys.yaml"
    long_key = "x" * 500 + "\\u0007"
    path.write_text(f'"{long_key}": 1\nsteps: [deepseek]\n')
    error = refused(path)
    message = error.problems[0].message
    assert "unknown key" in message and len(message) < 300 and "\x07" not in message
