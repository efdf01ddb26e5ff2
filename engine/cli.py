"""The ``torq-fallback`` command. Thin: parsing and printing only; the work is the library's.

Exit codes: 0 success, 1 the checked thing is bad (invalid chains, failed chain),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .diagrams import DotMissingError
from .errors import ChainConfigError, TorqError
from .loader import load_chains, resolve_chains_dir
from .manager import LLMManager
from .meta import ExecutionMode, GenerationMeta
from .report import timeline
from .spec import Chain, schema_text
from .validation import validate_paths

__all__ = ["main"]

_EPILOG = """examples:
  torq-fallback demo                     every chain against the built-in simulator
  torq-fallback validate chains/         check chain files
  torq-fallback render --check           are the diagrams up to date?
  torq-fallback simulate direct --outcomes "deepseek=retryable:429,openai=timeout"
  torq-fallback run "What is 2+2?" --mode research

Run `torq-fallback COMMAND --help` for a command's options and examples.
"""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [str(resolve_chains_dir(args.chains))]
    report = validate_paths(paths)
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
            "warnings": [w.to_dict() for w in report.warnings],
        }
        print(json.dumps(data, indent=2))
        return 1 if problems or (args.strict and report.warnings) else 0
    for problem in [*problems, *report.warnings]:
        print(problem)
    if args.strict and report.warnings and not problems:
        print(
            f"{_plural(len(report.warnings), 'warning')} (--strict: a warning fails the check)",
            file=sys.stderr,
        )
        return 1
    if problems:
        bad = len({p.source for p in problems})
        print(
            f"{_plural(len(problems), 'problem')} in {bad} of {_plural(len(files), 'file')}",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {_plural(len(files), 'file')} valid")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if not args.attempt_timeout > 0:  # checked before the banner, not after
        raise ValueError(
            f"--attempt-timeout must be a positive number of seconds, got {args.attempt_timeout:g}"
        )

    run_demo(sys.stdout, attempt_timeout=args.attempt_timeout)
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .simulator import Script, Simulator, load_script

    script = load_script(args.script) if args.script else Script()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulator(script, host=args.host, port=args.port) as sim:
        print(f"provider simulator listening on http://{sim.host}:{sim.port}", flush=True)
        print("point the built-in providers at it with:", flush=True)
        for name, value in sim.env().items():
            print(f"  export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def _render_traffic(chains: dict[str, Chain], args: argparse.Namespace) -> int:
    """``render --traffic LOG...``: each chain's diagram with what the log says went through."""
    from .diagrams import Traffic, parse_formats, render, write_atomically
    from .telemetry.read import read_log

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


def _cmd_render(args: argparse.Namespace) -> int:
    from .diagrams import parse_formats, render_all

    formats = parse_formats(args.format)
    chains = load_chains(resolve_chains_dir(args.chains))
    if args.traffic:
        return _render_traffic(chains, args)
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


def _write_path_diagram(chain: Chain, attempts: list[dict[str, Any]], target: str) -> None:
    from .diagrams import FORMATS, highlight_from_attempts, render, write_atomically

    suffixes = {suffix: fmt for fmt, suffix in FORMATS.items()}
    suffix = Path(target).suffix.lstrip(".")
    if suffix not in suffixes:
        raise ValueError(f"--diagram {target}: use a .svg, .png, .dot or .mmd file name")
    data = render(chain, suffixes[suffix], highlight_from_attempts(attempts))
    write_atomically(Path(target), data)
    print(f"path diagram written to {target}")


def _print_result(text: str | None, meta: GenerationMeta, as_json: bool) -> None:
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


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .scenario import Scenario, load_scenario, parse_outcomes, simulate

    if args.scenario:
        scenario = load_scenario(args.scenario)
        if args.mode:
            scenario.mode = ExecutionMode(args.mode)
    elif args.mode and args.outcomes:
        scenario = Scenario(ExecutionMode(args.mode), {})
    else:
        raise ValueError("give MODE and --outcomes, or --scenario FILE")
    if args.outcomes:
        scenario.outcomes.update(parse_outcomes(args.outcomes))
    start = _health_states(args.health)
    manager = LLMManager(config={"chains_dir": args.chains} if args.chains else None)
    compiled = manager.chain_for(scenario.mode)
    results = simulate(
        compiled, scenario.outcomes, scenario.prompt, scenario.mode,
        requests=args.requests, every=args.every, health=start,
        policies=manager._health_policies,
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
            print(f"mode {scenario.mode.value}: chain '{compiled.chain.name}' ({order}){when}")
        _print_result(text, meta, args.json)
    text, meta = results[-1]
    if args.diagram:
        _write_path_diagram(compiled.chain, meta.provider_attempts, args.diagram)
    return 0 if meta.error is None else 1


def _health_states(spec: str | None) -> dict[str, str]:
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


def _cmd_explain(args: argparse.Namespace) -> int:
    from .scenario import explain

    if (args.code is None) == (args.category is None):
        raise ValueError("give exactly one of --code and --category")
    manager = LLMManager(config={"chains_dir": args.chains} if args.chains else None)
    known = lambda name: manager.get_provider(name) is not None  # noqa: E731
    for line in explain(
        manager.chain_for(ExecutionMode(args.mode)), args.code, args.category, known
    ):
        print(line)
    return 0


#: Largest conversation file ``run --messages`` reads.
MAX_MESSAGES_BYTES = 16 * 1024 * 1024


def _read_messages(name: str) -> list[Any]:
    """A conversation file: a regular file (not a FIFO, a device or a directory), at most
    :data:`MAX_MESSAGES_BYTES`, strict JSON no deeper than the request limit, a list."""
    from .request_check import strict_json

    where = f"--messages {name}"
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueError(f"{where}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"{where}: not a regular file")
        raw = handle.read(MAX_MESSAGES_BYTES + 1)
    if len(raw) > MAX_MESSAGES_BYTES:
        raise ValueError(f"{where}: larger than {MAX_MESSAGES_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
        strict_json(data, "messages")
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of messages, got {type(data).__name__}")
    return data


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _run_messages(args: argparse.Namespace) -> list[Any] | None:
    """The conversation of ``run --messages FILE.json`` (plus the prompt, if given)."""
    if args.messages is None:
        return None
    data = _read_messages(args.messages)
    if args.prompt:
        data.append({"role": "user", "content": args.prompt})
    return data


def _cmd_run(args: argparse.Namespace) -> int:
    messages = _run_messages(args)
    if messages is None and not args.prompt:
        raise SystemExit("torq-fallback run: give a PROMPT, --messages FILE.json, or both")
    chat = messages is not None or args.stream or args.system
    with LLMManager(config={"chains_dir": args.chains} if args.chains else None) as manager:
        if args.provider is not None and manager.get_provider(args.provider) is None:
            close = difflib.get_close_matches(args.provider, sorted(manager.providers), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"--provider {args.provider!r} is not a provider{hint}; "
                f"known: {', '.join(sorted(manager.providers))}"
            )
        conversation = messages or [{"role": "user", "content": args.prompt}]
        options = {"provider": args.provider, "mode": ExecutionMode(args.mode),
                   "timeout": args.timeout, "system": args.system}  # fmt: skip
        if args.stream:
            meta, text = _stream_to_stdout(manager, conversation, options, args.json)
        elif chat:
            completion, meta = manager.chat(conversation, **options)
            text = completion.text
        else:
            text, meta = manager.generate_response(
                args.prompt, provider=args.provider, mode=ExecutionMode(args.mode),
                timeout=args.timeout,
            )  # fmt: skip
        _print_result(text, meta, args.json)
        if args.diagram:
            if args.provider:
                chain = manager.chain_for_provider(args.provider, args.mode).chain
            else:
                chain = manager.chain_for(args.mode).chain
            _write_path_diagram(chain, meta.provider_attempts, args.diagram)
    return 0 if meta.error is None else 1


def _stream_to_stdout(
    manager: LLMManager, messages: list[Any], options: dict[str, Any], quiet: bool
) -> tuple[GenerationMeta, str | None]:
    """Print a streamed answer as it arrives (not with --json); return its meta and text."""
    from .streaming import Reset, TextDelta

    stream = manager.stream(messages, **options)
    try:
        for event in stream:
            if quiet:
                continue
            if isinstance(event, Reset):
                print(f"\n[reset: {event.provider} answers from the start]", flush=True)
            elif isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
        if not quiet:
            print()
    except (ChainConfigError, TorqError) as error:
        if not quiet:
            print()
        return stream.meta, str(error)
    return stream.meta, stream.text


def _printable(text: str) -> str:
    """A name as printed on a terminal: control characters shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _cmd_health(args: argparse.Namespace) -> int:
    import time

    with LLMManager(config={"chains_dir": args.chains} if args.chains else None) as manager:
        store = manager.health.store
        records = store.snapshot()
        source = repr(store) if type(store).__name__ != "LocalHealthStore" else "local"
        now = time.time()
        names = sorted(set(manager.provider_settings) | set(records))
        rows: list[dict[str, Any]] = []
        for name in names:
            health = records.get(name)
            state = health.state if health else "closed"
            calls = sum(b[0] for b in health.calls.values()) if health else 0
            failures = sum(b[1] for b in health.calls.values()) if health else 0
            wait = max((health.open_until - now) if health else 0.0, 0.0)
            if state == "open" and wait <= 0:
                state = "half_open"  # its cooldown is over: the next call is a probe
            rows.append(
                {
                    "provider": name,
                    "state": state,
                    "consecutive_failures": health.consecutive if health else 0,
                    "calls": calls,
                    "failures": failures,
                    "half_open_in_s": round(wait, 1) if state == "open" else None,
                }
            )
    if args.json:
        print(json.dumps({"source": source, "providers": rows}, indent=2))
        return 0
    print(f"provider health ({source})")
    shown = {r["provider"]: _printable(r["provider"]) for r in rows}
    width = max(len(name) for name in shown.values())
    for r in rows:
        extra = f", half-open in {r['half_open_in_s']:g} s" if r["half_open_in_s"] else ""
        name = shown[r["provider"]].ljust(width)
        print(
            f"  {name}  {r['state']:<9}  {r['consecutive_failures']} in a "
            f"row, {r['failures']}/{r['calls']} failed in the window{extra}"
        )
    if source == "local":
        print("  (local health lives in each process; set TORQ_REDIS_URL to share and see it)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.telemetry:
        from .telemetry.jsonl import line_schema

        print(json.dumps(line_schema(), indent=2))
        return 0
    print(schema_text(), end="")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .telemetry.read import read_log
    from .telemetry.stats import stats, stats_text

    try:
        read = read_log(args.files, since=args.since, chain=args.chain)
    except ValueError as exc:
        raise ValueError(f"--since {args.since!r}: {exc}") from None
    report = stats(read.lines)
    report["skipped_lines"] = read.skipped
    report["dropped_lines"] = read.dropped
    report["files_cut_short"] = read.cut_files
    if args.html:
        from .diagrams import write_atomically

        try:
            from .telemetry.report import html_report
        except ImportError:  # pragma: no cover - the extra is missing
            raise SystemExit(
                "torq-fallback stats --html needs matplotlib: pip install 'torq-fallback[report]'"
            ) from None
        write_atomically(Path(args.html), html_report(read.lines).encode())
        print(f"wrote {args.html}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(stats_text(report))
        if read.skipped:
            print(f"({read.skipped} torn or unreadable line(s) skipped)")
        if read.dropped:
            print(
                f"({read.dropped} request(s) not logged: the writer noted them as dropped, "
                "its queue full or its file unwritable)"
            )
        for name in read.cut_files:
            print(f"({name}: read only in part: corrupt, or larger than the reading limit)")
    return 0


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """One subcommand: its one-line help, its description and its examples."""
    heading = "example:" if len(examples) == 1 else "examples:"
    command = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=heading + "".join(f"\n  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.set_defaults(run=run)
    return command


def _common(command: argparse.ArgumentParser, *names: str) -> None:
    """Options several commands share, spelt the same everywhere."""
    if "chains" in names:
        command.add_argument("--chains", metavar="DIR", help="chains directory (default: in use)")
    if "json" in names:
        command.add_argument("--json", action="store_true", help="print {response, meta} as JSON")
    if "diagram" in names:
        command.add_argument(
            "--diagram", metavar="FILE", help="draw the path taken (.svg .png .dot .mmd)"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torq-fallback",
        description="Declarative LLM provider fallback: check, draw, try and run YAML "
        "provider chains.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torq-fallback {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    modes = [m.value for m in ExecutionMode]

    validate = _command(
        commands, "validate", _cmd_validate,
        "check chain files; print every problem with file:line:column",
        "Check chain files (and a directory's providers.yaml) and print every problem with "
        "file:line:column. Exits 0 when all are valid, 1 otherwise.",
        ["torq-fallback validate                 the chains in use (TORQ_CHAINS_DIR or packaged)",
         "torq-fallback validate chains/         every chain file in a directory",
         "torq-fallback validate --json my.yaml  problems as JSON, for editors and CI"],
    )  # fmt: skip
    validate.add_argument(
        "paths", nargs="*", metavar="PATH", help="chain files or directories (default: in use)"
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.add_argument(
        "--strict", action="store_true",
        help="warnings (a step naming an undeclared provider) fail the check too, for CI",
    )  # fmt: skip
    _common(validate, "chains")

    render = _command(
        commands, "render", _cmd_render,
        "draw the chains as diagrams (SVG, PNG, DOT, Mermaid)",
        "Draw every chain as a diagram: steps with provider, model, timeout and retries; "
        "edges coloured by category; retry loops; final states; a legend. The same chain "
        "always gives the same bytes. SVG and PNG need Graphviz's dot program.",
        ["torq-fallback render                 diagrams/*.svg and *.mmd for the chains in use",
         "torq-fallback render --format dot --out /tmp/d",
         "torq-fallback render --check         exit 1 if diagrams/ is out of date"],
    )  # fmt: skip
    _common(render, "chains")
    render.add_argument("--out", metavar="DIR", default="diagrams", help="default: diagrams")
    render.add_argument(
        "--traffic", nargs="+", metavar="LOG",
        help="annotate each chain with a request log's traffic (edge counts and shares, "
        "step success rate and p95); written to --out (default: traffic)",
    )  # fmt: skip
    render.add_argument(
        "--format", default="svg,mermaid", help="comma-separated: svg,png,dot,mermaid"
    )
    render.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is stale"
    )

    simulate = _command(
        commands, "simulate", _cmd_simulate,
        "run a mode's chain with scripted outcomes (no network, deterministic)",
        "Run a mode's chain with the outcomes you give, with no provider and no network, and "
        "print the timeline and the metadata. Outcomes are CATEGORY[:CODE] per provider, "
        "several separated by | (for retries); a provider with none left answers. Time is "
        "virtual: timeouts take their whole timeout, retry waits pass instantly. Exit 0 when "
        "the chain answers, 1 when it fails.",
        ['torq-fallback simulate direct --outcomes "deepseek=retryable:429,openai=timeout"',
         'torq-fallback simulate research --outcomes "claude=non_retryable:content_filter"',
         "torq-fallback simulate --scenario scenario.yaml --diagram path.svg",
         "", "scenario file:", "  mode: direct", "  outcomes:",
         "    deepseek: [retryable:429, success]", "    openai: timeout"],
    )  # fmt: skip
    simulate.add_argument("mode", nargs="?", choices=modes, metavar="MODE", help=", ".join(modes))
    simulate.add_argument("--outcomes", metavar="SPEC", help='e.g. "deepseek=retryable:429"')
    simulate.add_argument("--scenario", metavar="FILE", help="YAML scenario file")
    simulate.add_argument(
        "--health",
        metavar="SPEC",
        help="starting breaker states, e.g. deepseek=open,openai=half_open",
    )
    simulate.add_argument(
        "--requests",
        type=int,
        default=1,
        help="requests in a row (outcomes are consumed across them)",
    )
    simulate.add_argument(
        "--every", type=float, default=0.0, help="virtual seconds between the requests"
    )
    _common(simulate, "chains", "json", "diagram")

    explain = _command(
        commands, "explain", _cmd_explain,
        "show where an error code or category leads from each step of a mode's chain",
        "For each step of a mode's chain, show where an outcome leads: an error code "
        "(classified by the taxonomy and the chain's error_codes) or a category.",
        ["torq-fallback explain direct --code 429",
         "torq-fallback explain research --category timeout"],
    )  # fmt: skip
    explain.add_argument("mode", choices=modes, metavar="MODE", help=", ".join(modes))
    explain.add_argument("--code", help="an error code: 429, insufficient_quota, read_timeout...")
    explain.add_argument("--category", help="retryable, timeout, non_retryable or success")
    _common(explain, "chains")

    run = _command(
        commands, "run", _cmd_run,
        "answer one prompt through LLMManager (real providers) and show the attempts",
        "Answer one prompt through LLMManager with the configured providers (keys and URLs "
        "from the environment) and print the answer and the attempt timeline. Exit 0 when "
        "answered, 1 when the chain failed or aborted (the friendly error and the attempts "
        "are still printed), 2 for bad usage or configuration.",
        ['torq-fallback run "What is 2+2?"',
         'torq-fallback run "Summarise X" --mode research --json',
         'torq-fallback run "Hi" --provider claude --timeout 20',
         'torq-fallback run "And now?" --messages history.json --system "Be brief." --stream'],
    )  # fmt: skip
    run.add_argument("prompt", nargs="?", help="the prompt (or the last user message)")
    run.add_argument("--system", help="a system prompt")
    run.add_argument(
        "--messages",
        metavar="FILE.json",
        help="a conversation: a JSON list of messages (OpenAI's shape)",
    )
    run.add_argument(
        "--stream", action="store_true", help="stream the answer to the terminal as it arrives"
    )
    run.add_argument("--mode", default="direct", choices=modes, help="default: direct")
    run.add_argument("--provider", help="one provider, no fallback")
    run.add_argument("--timeout", type=float, default=60, help="seconds for the whole call")
    _common(run, "chains", "json", "diagram")

    health = _command(
        commands, "health", _cmd_health,
        "show each provider's circuit breaker (local, or shared through Redis)",
        "Show each provider's breaker: state (closed, open, half_open), failures in a row, "
        "failures in the window and the time until an open breaker lets a probe through. "
        "With TORQ_REDIS_URL (or health: in providers.yaml) it reads the state every "
        "process shares.",
        ["torq-fallback health",
         "TORQ_REDIS_URL=redis://127.0.0.1:6379/0 torq-fallback health --json"],
    )  # fmt: skip
    _common(health, "chains", "json")

    stats_cmd = _command(
        commands, "stats", _cmd_stats,
        "what the request log says: rates, latencies, errors, paths, cost",
        "Read JSONL request logs (TORQ_TELEMETRY_PATH; rotated and gzipped files too) and "
        "print, per chain and per provider: requests, success and fallback rates, p50/p95/p99 "
        "latency, top error codes, tokens and cost, and the most frequent paths. A torn last "
        "line (a writer killed mid-line) is counted and skipped.",
        ["torq-fallback stats torq.jsonl torq.jsonl.1",
         "torq-fallback stats logs/*.jsonl* --since 2h --chain direct --json"],
    )  # fmt: skip
    stats_cmd.add_argument("files", nargs="+", metavar="FILE", help="JSONL logs (.gz too)")
    stats_cmd.add_argument("--since", help="an ISO time, or 30m, 2h, 1d ago")
    stats_cmd.add_argument("--chain", help="only this chain")
    stats_cmd.add_argument("--html", metavar="FILE", help="also write a report with charts")
    _common(stats_cmd, "json")

    schema_cmd = _command(
        commands, "schema", _cmd_schema,
        "print the JSON Schema of chain files",
        "Print the JSON Schema of chain files (from the same models that validate them), "
        "for editors: chains reference it with a '# yaml-language-server: $schema=...' "
        "comment.",
        ["torq-fallback schema > chains/chain.schema.json",
         "torq-fallback schema --telemetry   # the request log's line format"],
    )  # fmt: skip
    schema_cmd.add_argument(
        "--telemetry", action="store_true", help="the JSON Schema of a request log line"
    )

    demo = _command(
        commands, "demo", _cmd_demo,
        "run every default chain against the built-in simulator (no keys, no network)",
        "Start the provider simulator on loopback, point the four built-in providers at it, "
        "and run each mode's chain through a scenario with real fallbacks, printing each "
        "attempt.",
        ["torq-fallback demo"],
    )  # fmt: skip
    demo.add_argument(
        "--attempt-timeout",
        type=float,
        default=1.0,
        metavar="S",
        help="per-attempt timeout in seconds (default 1; the scenario has one 1.5 s reply)",
    )

    simulator = _command(
        commands, "simulator", _cmd_simulator,
        "serve the provider simulator until interrupted",
        "Serve the OpenAI, Anthropic and Ollama wire protocols on loopback, following a YAML "
        "script of behaviours per provider.",
        ["torq-fallback simulator --script faults.yaml --port 8900"],
    )  # fmt: skip
    simulator.add_argument("--script", metavar="FILE", help="YAML script of behaviours")
    simulator.add_argument("--host", default="127.0.0.1", help="loopback address")
    simulator.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torq-fallback`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `torq-fallback ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit flush cannot fail again
        return 0
    except ChainConfigError as exc:
        print(f"torq-fallback: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except DotMissingError as exc:
        print(f"torq-fallback: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad settings (environment variables, options)
        print(f"torq-fallback: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or directory that cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"torq-fallback: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
