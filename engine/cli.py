"""The ``torq-fallback`` command. Thin: parsing and printing only; the work is the library's.

Exit codes: 0 success, 1 the checked thing is bad (invalid chains, failed chain),
2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ChainConfigError, Problem
from .loader import chain_files, check_file, resolve_chains_dir

__all__ = ["main"]

_EPILOG = """examples:
  torq-fallback validate                 check the chains in use (TORQ_CHAINS_DIR or packaged)
  torq-fallback validate chains/         check every chain file in a directory
  torq-fallback validate --json my.yaml  problems as JSON, for editors and CI
"""


def _cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [str(resolve_chains_dir())]
    files = chain_files(paths)
    if not files:
        print(
            f"torq-fallback: no chain files (*.yaml, *.yml) in {', '.join(paths)}", file=sys.stderr
        )
        return 2
    problems: list[Problem] = []
    for file in files:
        problems.extend(check_file(file)[1])
    if args.json:
        print(
            json.dumps(
                {
                    "files": [str(f) for f in files],
                    "valid": not problems,
                    "problems": [p.to_dict() for p in problems],
                },
                indent=2,
            )
        )
    else:
        for problem in problems:
            print(problem)
        bad = len({p.source for p in problems})
        if problems:
            print(
                f"{len(problems)} problem{'s' if len(problems) != 1 else ''} "
                f"in {bad} of {len(files)} file{'s' if len(files) != 1 else ''}",
                file=sys.stderr,
            )
        else:
            print(f"ok: {len(files)} chain file{'s' if len(files) != 1 else ''} valid")
    return 1 if problems else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torq-fallback",
        description="Declarative LLM provider fallback: check and run YAML provider chains.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torq-fallback {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check chain files; print every problem with file:line:column",
        description="Check chain files and print every problem with file:line:column. "
        "Exits 0 when all are valid, 1 otherwise.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument(
        "paths", nargs="*", metavar="PATH", help="chain files or directories (default: in use)"
    )
    validate.add_argument("--json", action="store_true", help="print the result as JSON")
    validate.set_defaults(run=_cmd_validate)
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
    except ChainConfigError as exc:
        print(f"torq-fallback: invalid chain configuration\n{exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
