"""The review commands: validate (every problem with file:line), render (diagrams, checked
against the chains, or annotated with a log's traffic), simulate and explain (a chain's path
for given outcomes, over virtual time), and schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.chain.loader import load_chains
from engine.chain.schema import schema_text
from engine.chain.spec import Chain
from engine.manager.environment import resolve_chains_dir
from engine.manager.llm import LLMManager
from engine.tools.report import timeline
from engine.tools.validation import validate_paths
from engine.types.meta import GenerationMeta, mode_of

__all__ = [
    "cmd_explain",
    "cmd_render",
    "cmd_schema",
    "cmd_simulate",
    "cmd_validate",
    "health_states",
    "plural",
    "print_result",
    "render_traffic",
    "write_path_diagram",
]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def manager_config(args: argparse.Namespace) -> dict[str, Any]:
    """The manager the review commands build: the chains given, and the providers the
    application says it registers (``--registered``)."""
    config: dict[str, Any] = {"registered_providers": list(getattr(args, "registered", []) or [])}
    if args.chains:
        config["chains_dir"] = args.chains
    return config


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [str(resolve_chains_dir(args.chains))]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        print(f"torq-fallback: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = validate_paths(paths, args.registered)
    if not report.files:
        print(
            f"torq-fallback: no chain files (*.yaml, *.yml) in {', '.join(paths)}", file=sys.stderr
        )
        return 2
    problems, files = report.problems, report.files
    if args.json:
        data = {
            "files": [str(f) for f in files],
            "valid": not problems,
            "problems": [p.to_dict() for p in problems],
            "modes": {folder: dict(rows) for folder, rows in report.modes.items()},
        }
        print(json.dumps(data, indent=2))
        return 1 if problems else 0
    for problem in problems:
        print(problem)
    if problems:
        bad = len({p.source for p in problems})
        print(f"{plural(len(problems), 'problem')} in {bad} of {plural(len(files), 'file')}")
        return 1
    print(f"ok: {plural(len(files), 'file')} valid")
    for folder, rows in report.modes.items():
        print(f"modes of {folder} (a mode's own file; else the folder's default.yaml; "
              "without one, the chains shipped with the engine):")  # fmt: skip
        width = max(len(mode) for mode, _ in rows) if rows else 0
        for mode, where in rows:
            print(f"  {mode.ljust(width)}  {where}")
    return 0


def render_traffic(chains: dict[str, Chain], args: argparse.Namespace) -> int:
    """``render --traffic LOG...``: each chain's diagram with what the log says went through."""
    from engine.telemetry.read import read_log
    from engine.tools.diagrams import Traffic, parse_formats, render, write_atomically

    read = read_log(args.traffic)
    out = Path(args.out if args.out != "diagrams" else "traffic")
    for name in sorted(chains):
        traffic = Traffic.from_lines(name, read.lines)
        for fmt in parse_formats(args.format):
            if fmt == "mermaid":
                continue  # the counts are drawn in DOT, SVG and PNG
            path = out / f"{name}.{fmt}"
            write_atomically(path, render(chains[name], fmt, traffic=traffic))
            print(f"wrote {path} ({traffic.requests} requests)")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from engine.tools.diagrams import parse_formats, render_all

    formats = parse_formats(args.format)
    folder = resolve_chains_dir(args.chains)
    chains = load_chains(folder)
    if not chains:  # nothing to draw is a mistake (a wrong --chains), not a quiet success
        raise ValueError(f"no chain files (*.yaml, *.yml) in {folder}")
    if args.traffic:
        return render_traffic(chains, args)
    report = render_all(chains, Path(args.out), formats, check=args.check)
    if args.check:
        if report:
            for line in report:
                print(line)
            print(
                f"{len(report)} diagram file(s) out of date; run: torq-fallback render "
                f"--out {args.out} --format {args.format}",
                file=sys.stderr,
            )
            return 1
        print(f"ok: diagrams in {args.out} match {len(chains)} chain(s)")
        return 0
    for line in report:
        print(line if line.startswith("unchanged: ") else f"wrote {line}")
    return 0


def write_path_diagram(chain: Chain, attempts: list[dict[str, Any]], target: str) -> None:
    from engine.tools.diagrams import FORMATS, highlight_from_attempts, render, write_atomically

    suffixes = {suffix: fmt for fmt, suffix in FORMATS.items()}
    suffix = Path(target).suffix.lstrip(".")
    if suffix not in suffixes:
        raise ValueError(f"--diagram {target}: use a .svg, .png, .dot or .mmd file name")
    data = render(chain, suffixes[suffix], highlight_from_attempts(attempts))
    write_atomically(Path(target), data)
    print(f"path diagram written to {target}")


def cmd_simulate(args: argparse.Namespace) -> int:
    from engine.tools.scenario import Scenario, load_scenario, parse_outcomes, simulate

    if not args.scenario and not (args.mode and args.outcomes):
        raise ValueError("give MODE and --outcomes, or --scenario FILE")
    start = health_states(args.health)
    manager = LLMManager(config=manager_config(args))
    if args.scenario:
        # The file's mode is checked against the chains it runs on, at its line.
        scenario = load_scenario(args.scenario, None if args.mode else manager.chainset.missing)
        if args.mode:
            scenario.mode = mode_of(args.mode)
    else:
        scenario = Scenario(mode_of(args.mode), {})
    if args.outcomes:
        scenario.outcomes.update(parse_outcomes(args.outcomes))
    compiled = manager.chain_for(scenario.mode)
    results = simulate(
        compiled, scenario.outcomes, scenario.prompt, scenario.mode,
        requests=args.requests, every=args.every, health=start, seed=args.seed,
        policies=manager.health_policies,
        known=lambda name: manager.get_provider(name) is not None,
    )  # fmt: skip
    if args.json and args.requests > 1:
        print(json.dumps([{"response": t, "meta": m.to_dict()} for t, m in results], indent=2))
    for index, (text, meta) in enumerate(results):
        if args.json and args.requests > 1:
            break
        if not args.json:
            order = " -> ".join(step.id for step in compiled.chain.steps)
            when = (
                f" (request {index + 1}, t={index * args.every:g} s)" if args.requests > 1 else ""
            )
            print(f"mode {scenario.mode}: chain '{compiled.chain.name}' ({order}){when}")
        print_result(text, meta, args.json)
    text, meta = results[-1]
    if args.diagram:
        write_path_diagram(compiled.chain, meta.provider_attempts, args.diagram)
    return 0 if meta.error is None else 1


def health_states(spec: str | None) -> dict[str, str]:
    """``--health deepseek=open,openai=half_open`` -> starting breaker states."""
    states: dict[str, str] = {}
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        name, _, state = part.partition("=")
        if state not in ("open", "half_open", "closed") or not name:
            raise ValueError(f"--health: {part!r} is not PROVIDER=open|half_open|closed")
        states[name.strip()] = state
    return states


def cmd_explain(args: argparse.Namespace) -> int:
    from engine.tools.explain import explain

    if (args.code is None) == (args.category is None):
        raise ValueError("give exactly one of --code and --category")
    manager = LLMManager(config=manager_config(args))
    known = lambda name: manager.get_provider(name) is not None  # noqa: E731
    for line in explain(manager.chain_for(args.mode), args.code, args.category, known):
        print(line)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.telemetry:
        from engine.telemetry.jsonl import line_schema

        print(json.dumps(line_schema(), indent=2))
        return 0
    print(schema_text(), end="")
    return 0


def print_result(text: str | None, meta: GenerationMeta, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"response": text, "meta": meta.to_dict()}, indent=2))
        return
    print(timeline(meta))
    if meta.error is None:
        print(f"answer ({meta.provider}, model {meta.model or 'not reported'}): {text}")
    else:
        print(f"failed ({meta.error_category}): {text or meta.error}")
    if meta.fallback_used:
        print(f"fallback_reason: {meta.fallback_reason}")
