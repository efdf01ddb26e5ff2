"""The ``torq-fallback`` command. Thin: parsing and printing only; the work is the library's.

Exit codes: 0 success, 1 the checked thing is bad (invalid chains, failed chain),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine import __version__
from engine.errors import ChainConfigError
from engine.tools.commands import (
    cmd_demo,
    cmd_explain,
    cmd_health,
    cmd_render,
    cmd_run,
    cmd_schema,
    cmd_simulate,
    cmd_simulator,
    cmd_stats,
    cmd_validate,
)
from engine.tools.diagrams import DotMissingError

__all__ = ["main"]

_EPILOG = """examples:
  torq-fallback demo                     every chain against the built-in simulator
  torq-fallback validate chains/         check chain files
  torq-fallback render --check           are the diagrams up to date?
  torq-fallback simulate direct --outcomes "deepseek=retryable:429,openai=timeout"
  torq-fallback run "What is 2+2?" --mode research

Run `torq-fallback COMMAND --help` for a command's options and examples.
"""


_MODES_HELP = (
    "direct, research, code_generation, composition, hierarchical, or any mode a chain file names"
)


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
    if "registered" in names:
        command.add_argument(
            "--registered", metavar="NAME", action="append", default=[],
            help="a provider the application registers itself (chains may name it); repeat "
            "for several",
        )  # fmt: skip
    if "json" in names:
        command.add_argument("--json", action="store_true", help="print {response, meta} as JSON")
    if "diagram" in names:
        command.add_argument(
            "--diagram", metavar="FILE", help="draw the path taken (.svg .png .dot .mmd)"
        )


#: Adds commands of a layer above this one (the gateway's ``serve`` and ``keys``): given the
#: subcommands and `_command`, as ``engine.cli`` passes them.
Extra = Callable[[Any, Callable[..., argparse.ArgumentParser]], None]


def _parser(extra: Sequence[Extra] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torq-fallback",
        description="Declarative LLM provider fallback: check, draw, try and run YAML "
        "provider chains.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torq-fallback {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = _command(
        commands, "validate", cmd_validate,
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
    # Every problem fails the check now (an undeclared provider included); the flag that
    # once made warnings fail is still accepted so existing CI scripts keep running.
    validate.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)
    _common(validate, "chains", "registered")

    render = _command(
        commands, "render", cmd_render,
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
        commands, "simulate", cmd_simulate,
        "run a mode's chain with scripted outcomes (no network, deterministic)",
        "Run a mode's chain with the outcomes you give, with no provider and no network, and "
        "print the timeline and the metadata. Outcomes are CATEGORY[:CODE] per provider (a "
        "pool's members too), several separated by | (for retries); cut:N for a stream cut "
        "after N chunks, rejected for an answer the accept rules turn down; a provider with "
        "none left answers. Time is "
        "virtual: timeouts take their whole timeout, retry waits pass instantly. Exit 0 when "
        "the chain answers, 1 when it fails.",
        ['torq-fallback simulate direct --outcomes "deepseek=retryable:429,openai=timeout"',
         'torq-fallback simulate research --outcomes "claude=non_retryable:content_filter"',
         "torq-fallback simulate --scenario scenario.yaml --diagram path.svg",
         "", "scenario file:", "  mode: direct", "  outcomes:",
         "    deepseek: [retryable:429, success]", "    openai: timeout"],
    )  # fmt: skip
    simulate.add_argument("mode", nargs="?", metavar="MODE", help=_MODES_HELP)
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
    simulate.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed the draws (which pool member a weighted draw picks, backoff jitter); "
        "without it every draw is 0.5",
    )
    _common(simulate, "chains", "json", "diagram", "registered")

    explain = _command(
        commands, "explain", cmd_explain,
        "show where an error code or category leads from each step of a mode's chain",
        "For each step of a mode's chain, show where an outcome leads: an error code "
        "(classified by the taxonomy and the chain's error_codes) or a category.",
        ["torq-fallback explain direct --code 429",
         "torq-fallback explain research --category timeout"],
    )  # fmt: skip
    explain.add_argument("mode", metavar="MODE", help=_MODES_HELP)
    explain.add_argument("--code", help="an error code: 429, insufficient_quota, read_timeout...")
    explain.add_argument("--category", help="retryable, timeout, non_retryable or success")
    _common(explain, "chains", "registered")

    run = _command(
        commands, "run", cmd_run,
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
    run.add_argument("--mode", default="direct", help="a mode (default: direct); " + _MODES_HELP)
    run.add_argument("--provider", help="one provider, no fallback")
    run.add_argument("--timeout", type=float, default=60, help="seconds for the whole call")
    _common(run, "chains", "json", "diagram", "registered")

    health = _command(
        commands, "health", cmd_health,
        "show each provider's circuit breaker (local, or shared through Redis)",
        "Show each provider's breaker: state (closed, open, half_open), failures in a row, "
        "failures in the window and the time until an open breaker lets a probe through. "
        "With TORQ_REDIS_URL (or health: in providers.yaml) it reads the state every "
        "process shares.",
        ["torq-fallback health",
         "TORQ_REDIS_URL=redis://127.0.0.1:6379/0 torq-fallback health --json"],
    )  # fmt: skip
    _common(health, "chains")
    health.add_argument(
        "--json", action="store_true",
        help="print {source, providers, quotas} as JSON: each breaker's state, failures and "
        "last probe, and each quota's use",
    )  # fmt: skip

    stats_cmd = _command(
        commands, "stats", cmd_stats,
        "what the request log says: rates, latencies, errors, paths, cost",
        "Read JSONL request logs (TORQ_TELEMETRY_PATH; rotated and gzipped files too) and "
        "print, per chain and per provider: requests, success and fallback rates, p50/p95/p99 "
        "latency, top error codes, tokens and cost, and the most frequent paths. A torn last "
        "line (a writer killed mid-line) is counted and skipped.",
        ["torq-fallback stats torq.jsonl torq.jsonl.1",
         "torq-fallback stats logs/*.jsonl* --since 2h --chain direct --json"],
    )  # fmt: skip
    stats_cmd.add_argument("files", nargs="+", metavar="FILE", help="JSONL logs (.gz too)")
    stats_cmd.add_argument(
        "--since", metavar="WHEN",
        help="only requests since WHEN: 90s, 30m, 2h or 1d ago, or an ISO time "
        "(2026-12-01T14:00, UTC unless it says otherwise)",
    )  # fmt: skip
    stats_cmd.add_argument("--chain", help="only this chain")
    stats_cmd.add_argument("--html", metavar="FILE", help="also write a report with charts")
    stats_cmd.add_argument(
        "--json", action="store_true",
        help="print the aggregates as JSON: per chain and per provider, with the lines skipped",
    )  # fmt: skip

    schema_cmd = _command(
        commands, "schema", cmd_schema,
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
        commands, "demo", cmd_demo,
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
        commands, "simulator", cmd_simulator,
        "serve the provider simulator until interrupted",
        "Serve the OpenAI, Anthropic and Ollama wire protocols on loopback, following a YAML "
        "script of behaviours per provider.",
        ["torq-fallback simulator --script faults.yaml --port 8900"],
    )  # fmt: skip
    simulator.add_argument("--script", metavar="FILE", help="YAML script of behaviours")
    simulator.add_argument("--host", default="127.0.0.1", help="loopback address")
    simulator.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    simulator.add_argument(
        "--rate-limit",
        metavar="PROVIDER=N",
        action="append",
        default=[],
        help="make PROVIDER a rate-limited deployment: N requests per --rate-window seconds, "
        "429 beyond (repeatable)",
    )
    simulator.add_argument(
        "--rate-window", type=float, default=60.0, help="seconds of a rate limit's window"
    )
    for add in extra:
        add(commands, _command)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps the subcommands only there
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None, extra: Sequence[Extra] = ()) -> int:
    """Entry point of the ``torq-fallback`` console script (``extra``: commands of the
    layers above, added by ``engine.cli``)."""
    parser = _parser(extra)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, with its usage, not the top level's
        command = _subparsers(parser).get(args.command or "", parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
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
