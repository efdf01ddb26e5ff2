"""Chain files on disk -> validated `Chain` objects, with every problem
located at file:line:column.

YAML is read with ruamel.yaml's safe loader (plain data only, no tags that build objects);
the same text is composed once more into nodes to learn where each value was written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.chain.accept import AcceptanceProblem, AcceptSpec, acceptance_problems
from engine.chain.filelimits import MAX_PROBLEMS_SHOWN, read_config_text, screen_yaml
from engine.chain.hedge import HedgeSpec
from engine.chain.pools import MemberSpec
from engine.chain.problems import field_name, locate, validation_problems
from engine.chain.resolve import build_chain
from engine.chain.rules import check_chain
from engine.chain.spec import (
    Chain,
    ChainSpec,
    Defaults,
    Goto,
    Loc,
    Params,
    StepSpec,
    validate_spec,
)
from engine.errors import ChainConfigError, Problem

__all__ = [
    "CHAIN_SUFFIXES",
    "MAX_CHAIN_FILES",
    "NOT_CHAINS",
    "chain_files",
    "chain_from_data",
    "check_file",
    "check_spec",
    "default_chains_dir",
    "load_chain",
    "load_chains",
]

CHAIN_SUFFIXES: Final = (".yaml", ".yml")
#: Most chain files one chains directory may hold (a mode each: a handful in practice).
MAX_CHAIN_FILES: Final = 256
#: File stems in a chains directory that are not chains.
NOT_CHAINS: Final = frozenset({"providers", "breaker"})

_Pos = tuple[int, int]


def default_chains_dir() -> Path:
    """The chains shipped with the package (inside the wheel), or the source tree's ``chains/``."""
    packaged = Path(str(resources.files("engine"))) / "_chains"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "chains"


def chain_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories into their chain files (sorted); keep files as given."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.suffix in CHAIN_SUFFIXES and p.stem not in NOT_CHAINS and p.is_file()
                )
            )
        else:
            found.append(path)
    return found


def _positions(node: Node | None, prefix: Loc) -> tuple[dict[Loc, _Pos], dict[Loc, _Pos]]:
    """Where each value (and each mapping key) was written, keyed by its location path."""
    values: dict[Loc, _Pos] = {}
    keys: dict[Loc, _Pos] = {}

    def walk(n: Node, loc: Loc) -> None:
        values[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, MappingNode):
            for key_node, value_node in n.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                child = (*loc, str(key_node.value))
                keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                walk(value_node, child)
        elif isinstance(n, SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, (*loc, index))

    if node is not None:
        walk(node, prefix)
    return values, keys


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model whose keys are checked at ``loc`` (for "did you mean" on unknown keys)."""
    if not loc:
        return ChainSpec
    if loc == ("defaults",):
        return Defaults
    if loc[0] == "steps" and len(loc) == 2:
        return StepSpec
    if loc[-1] == "goto":
        return Goto
    if loc[-1] == "params":
        return Params
    if loc[-1] == "accept":
        return AcceptSpec
    if loc[-1] == "hedge":
        return HedgeSpec
    if len(loc) == 4 and loc[2] == "pool":
        return MemberSpec
    return None


def _salvaged_checks(data: Any) -> list[tuple[Loc, str]]:
    """Structural checks on the parts of an invalid file that did validate.

    So that one run reports a misspelt key *and* a goto naming no step. A step that failed
    validation stands in as its bare id (its own gotos unchecked); reachability is skipped,
    since the failed steps' routes are unknown.
    """
    raw = {"steps": data} if isinstance(data, list) else data
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        return []
    steps: list[str | StepSpec] = []
    for entry in raw["steps"]:
        if isinstance(entry, str):
            steps.append(entry)
            continue
        try:
            steps.append(StepSpec.model_validate(entry))
        except ValidationError:
            if not isinstance(entry, dict):
                return []
            stand_in = entry.get("id", entry.get("provider"))
            if not isinstance(stand_in, str) or not stand_in:
                return []
            steps.append(stand_in)
    try:
        defaults = Defaults.model_validate(raw.get("defaults") or {})
    except ValidationError:
        defaults = Defaults()
    spec = ChainSpec.model_construct(defaults=defaults, steps=steps, error_codes={})
    return check_chain(spec, reachability=False)


def _rule_problems(spec: ChainSpec, base: Path | None) -> list[tuple[Loc, str]]:
    """The structural rules, and acceptance rules that cannot be built (schemas)."""
    steps = {
        index: entry.accept for index, entry in enumerate(spec.steps) if isinstance(entry, StepSpec)
    }
    found = check_chain(spec)
    if spec.defaults.accept is not None or any(a is not None for a in steps.values()):
        found += acceptance_problems(spec.defaults.accept, steps, base)
    return found


def check_spec(
    data: Any,
    source: str,
    values: Mapping[Loc, _Pos] | None = None,
    keys: Mapping[Loc, _Pos] | None = None,
    base: Path | None = None,
) -> tuple[ChainSpec | None, list[Problem]]:
    """Validate plain chain data; return the spec (None if invalid) and every problem.
    ``base``: the directory a ``schema_file`` is read from."""
    values = values or {}
    keys = keys or {}
    try:
        spec = validate_spec(data)
    except ValidationError as exc:
        problems = validation_problems(exc, source, values, keys, _model_at)
        if len(problems) > MAX_PROBLEMS_SHOWN:
            return None, problems  # already more than will be shown
        for loc, message in _salvaged_checks(data):
            line, column = locate(loc, values, keys, key=False)
            problems.append(Problem(source, line, column, field_name(loc), message))
        return None, problems
    problems = []
    for loc, message in _rule_problems(spec, base):
        line, column = locate(loc, values, keys, key=False)
        problems.append(Problem(source, line, column, field_name(loc), message))
    return (spec if not problems else None), problems


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return capped(sorted(problems, key=lambda p: (p.line, p.column)))


def capped(problems: list[Problem]) -> list[Problem]:
    """At most `MAX_PROBLEMS_SHOWN` problems, then one that says
    how many more there were."""
    if len(problems) <= MAX_PROBLEMS_SHOWN:
        return problems
    rest = len(problems) - MAX_PROBLEMS_SHOWN
    last = problems[MAX_PROBLEMS_SHOWN - 1]
    more = Problem(last.source, 0, 0, "", f"… and {rest} more problem{'s' if rest != 1 else ''}")
    return [*problems[:MAX_PROBLEMS_SHOWN], more]


def read_yaml(
    path: Path, list_prefix: Loc = ("steps",)
) -> tuple[Any, dict[Loc, _Pos], dict[Loc, _Pos], list[Problem]]:
    """Parse a YAML file safely: its data, where each value and key was written, and any
    problem (unreadable, outside its directory, over a limit of `engine.chain.filelimits`,
    invalid YAML, empty, not a mapping or list)."""
    source = str(path)
    text, refused = read_config_text(path)
    if refused is None and text is not None:
        refused = screen_yaml(text, source)
    if refused is not None or text is None:
        return None, {}, {}, [refused] if refused is not None else []
    yaml = YAML(typ="safe", pure=True)
    try:
        data = yaml.load(text)
        node = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, {}, {}, [Problem(source, line, column, "", f"invalid YAML: {what}")]
    except YAMLError as exc:
        return None, {}, {}, [Problem(source, 0, 0, "", f"invalid YAML: {exc}")]
    if data is None:
        return None, {}, {}, [Problem(source, 1, 1, "", "file is empty; a chain needs steps")]
    if not isinstance(data, dict | list):
        return (
            None,
            {},
            {},
            [Problem(source, 1, 1, "", "expected a mapping with `steps:` or a list of steps")],
        )
    prefix: Loc = list_prefix if isinstance(data, list) else ()
    values, keys = _positions(node, prefix)
    return data, values, keys, []


def check_file(path: str | os.PathLike[str]) -> tuple[Chain | None, list[Problem]]:
    """Load and validate one chain file; return the chain (None if invalid) and every problem."""
    file = Path(path)
    data, values, keys, problems = read_yaml(file)
    if problems:
        return None, problems
    spec, problems = check_spec(data, str(file), values, keys, file.parent)
    if spec is None:
        return None, _in_file_order(problems)
    return build_chain(spec, file.stem, str(file), file.parent), []


def chain_from_data(
    name: str, data: Any, source: str | None = None, base: str | os.PathLike[str] | None = None
) -> Chain:
    """A chain built from Python data, validated like a chain file (the same messages):
    a list of steps (provider names, or step dicts written as in a file) or a whole chain
    mapping (``{"deadline": 60, "steps": [...]}``). ``source`` names where the data came
    from in messages (default ``chain '<name>'``); ``base`` is where ``schema_file`` paths
    start. Raises `ChainConfigError` listing every problem."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a chain's name is a non-empty str, not {name!r}")
    where = source or f"chain '{name}'"
    if isinstance(data, tuple):
        data = list(data)
    if isinstance(data, dict) and isinstance(data.get("steps"), tuple):
        data = {**data, "steps": list(data["steps"])}
    folder = Path(base) if base is not None else None
    spec, problems = check_spec(data, where, base=folder)
    if spec is None:
        raise ChainConfigError(capped(problems))
    try:
        return build_chain(spec, name, where, folder)
    except AcceptanceProblem as exc:
        raise ChainConfigError([Problem(where, 0, 0, f"accept.{exc.key}", exc.message)]) from None


def load_chain(path: str | os.PathLike[str]) -> Chain:
    """Load one chain file or raise `ChainConfigError` listing every problem."""
    chain, problems = check_file(path)
    if chain is None:
        raise ChainConfigError(problems)
    return chain


def load_chains(directory: str | os.PathLike[str]) -> dict[str, Chain]:
    """Load every chain file in ``directory``, keyed by file stem; all problems at once."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ChainConfigError([Problem(str(folder), 0, 0, "", "chains directory does not exist")])
    chains: dict[str, Chain] = {}
    problems: list[Problem] = []
    files = chain_files([folder])
    if len(files) > MAX_CHAIN_FILES:
        raise ChainConfigError([Problem(
            str(folder), 0, 0, "",
            f"holds {len(files)} chain files; at most {MAX_CHAIN_FILES} are read",
        )])  # fmt: skip
    for file in files:
        chain, found = check_file(file)
        problems.extend(found)
        if chain is not None:
            if chain.name in chains:
                problems.append(
                    Problem(str(file), 0, 0, "", f"a chain named '{chain.name}' is defined twice")
                )
            chains[chain.name] = chain
    if problems:
        raise ChainConfigError(problems)
    return chains


def rebuild(spec: ChainSpec, chain: Chain, source: str, name: str | None = None) -> Chain:
    """Validate a spec derived from ``chain`` (an override) and build it (named ``name``,
    or as ``chain``), or raise."""
    # model_copy skips field validation; callers validate the values they put in, and the
    # structural rules are checked here.
    found = _rule_problems(spec, chain.base)
    problems = [Problem(source, 0, 0, field_name(loc), msg) for loc, msg in found]
    if problems:
        raise ChainConfigError(problems)
    try:
        return build_chain(spec, name or chain.name, source, chain.base)
    except AcceptanceProblem as exc:  # a schema file changed since the chain was read
        raise ChainConfigError([Problem(source, 0, 0, f"accept.{exc.key}", exc.message)]) from None


def problems_text(problems: Sequence[Problem]) -> str:
    """One problem per line, as ``validate`` prints them."""
    return "\n".join(str(p) for p in problems)


__all__ += [
    "capped",
    "field_name",
    "locate",
    "problems_text",
    "read_yaml",
    "rebuild",
    "validation_problems",
]
