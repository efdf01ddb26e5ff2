"""What each torq-fallback command does: validate, render, simulate, explain, run, demo,
simulator, health, schema and stats. The command line (engine.tools.cli) only parses
arguments and reports errors."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from engine.errors import ChainConfigError, TorqError
from engine.manager.llm import LLMManager
from engine.tools.review import (
    cmd_explain,
    cmd_render,
    cmd_schema,
    cmd_simulate,
    cmd_validate,
    health_states,
    plural,
    print_result,
    render_traffic,
    write_path_diagram,
)
from engine.types.meta import GenerationMeta, mode_of

__all__ = [
    "MAX_MESSAGES_BYTES",
    "cmd_demo",
    "cmd_explain",
    "cmd_health",
    "cmd_render",
    "cmd_run",
    "cmd_schema",
    "cmd_simulate",
    "cmd_simulator",
    "cmd_stats",
    "cmd_validate",
    "health_states",
    "not_json",
    "plural",
    "printable",
    "read_messages",
    "render_traffic",
    "run_messages",
    "stream_to_stdout",
    "write_path_diagram",
]


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.tools.demo import run_demo

    if not args.attempt_timeout > 0:  # checked before the banner, not after
        raise ValueError(
            f"--attempt-timeout must be a positive number of seconds, got {args.attempt_timeout:g}"
        )

    run_demo(sys.stdout, attempt_timeout=args.attempt_timeout)
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    import signal
    import threading

    from engine.tools.simulator import Script, Simulator, load_script

    script = load_script(args.script) if args.script else Script()
    limits: dict[str, int] = {}
    for item in args.rate_limit:
        name, _, count = item.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            raise ValueError(f"--rate-limit {item!r}: write PROVIDER=N, N a whole number ≥ 1")
        limits[name] = int(count)
    if args.rate_window <= 0:
        raise ValueError("--rate-window must be more than 0 seconds")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulator(
        script, host=args.host, port=args.port, rate_limits=limits, rate_window=args.rate_window
    ) as sim:
        print(f"provider simulator listening on http://{sim.host}:{sim.port}", flush=True)
        print("point the built-in providers at it with:", flush=True)
        for name, value in sim.env().items():
            print(f"  export {name}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        if limits:  # what the rate limits turned away, for whoever started it
            print(f"rate-limited: {json.dumps(sim.limited, sort_keys=True)}", flush=True)
    return 0


#: Largest conversation file ``run --messages`` reads.
MAX_MESSAGES_BYTES = 16 * 1024 * 1024


def read_messages(name: str) -> list[Any]:
    """A conversation file: a regular file (not a FIFO, a device or a directory), at most
    `MAX_MESSAGES_BYTES`, strict JSON no deeper than the request limit, a list."""
    from engine.core.request_check import strict_json

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
        data = json.loads(raw.decode("utf-8"), parse_constant=not_json)
        strict_json(data, "messages")
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of messages, got {type(data).__name__}")
    return data


def not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def run_messages(args: argparse.Namespace) -> list[Any] | None:
    """The conversation of ``run --messages FILE.json`` (plus the prompt, if given)."""
    if args.messages is None:
        return None
    data = read_messages(args.messages)
    if args.prompt:
        data.append({"role": "user", "content": args.prompt})
    return data


def cmd_run(args: argparse.Namespace) -> int:
    messages = run_messages(args)
    if messages is None and not args.prompt:
        raise ValueError("run: give a PROMPT, --messages FILE.json, or both")
    chat = messages is not None or args.stream or args.system
    from engine.tools.review import manager_config

    with LLMManager(config=manager_config(args)) as manager:
        if args.provider is not None and manager.get_provider(args.provider) is None:
            close = difflib.get_close_matches(args.provider, sorted(manager.providers), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"--provider {args.provider!r} is not a provider{hint}; "
                f"known: {', '.join(sorted(manager.providers))}"
            )
        conversation = messages or [{"role": "user", "content": args.prompt}]
        options = {"provider": args.provider, "mode": mode_of(args.mode),
                   "timeout": args.timeout, "system": args.system}  # fmt: skip
        if args.stream:
            meta, text = stream_to_stdout(manager, conversation, options, args.json)
        elif chat:
            completion, meta = manager.chat(conversation, **options)
            text = completion.text
        else:
            text, meta = manager.generate_response(
                args.prompt, provider=args.provider, mode=mode_of(args.mode),
                timeout=args.timeout,
            )  # fmt: skip
        print_result(text, meta, args.json)
        if args.diagram:
            if args.provider:
                chain = manager.chain_for_provider(args.provider, args.mode).chain
            else:
                chain = manager.chain_for(args.mode).chain
            write_path_diagram(chain, meta.provider_attempts, args.diagram)
    return 0 if meta.error is None else 1


def stream_to_stdout(
    manager: LLMManager, messages: list[Any], options: dict[str, Any], quiet: bool
) -> tuple[GenerationMeta, str | None]:
    """Print a streamed answer as it arrives (not with --json); return its meta and text."""
    from engine.core.streaming import Reset, TextDelta

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


def printable(text: str) -> str:
    """A name as printed on a terminal: control characters shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def cmd_health(args: argparse.Namespace) -> int:
    from engine.tools.health_view import health_report

    with LLMManager(config={"chains_dir": args.chains} if args.chains else None) as manager:
        report = health_report(manager)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows, quotas, source = report["providers"], report["quotas"], report["source"]
    print(f"provider health ({source})")
    shown = {r["provider"]: printable(r["provider"]) for r in rows}
    width = max(len(name) for name in shown.values())
    for r in rows:
        extra = f", half-open in {r['half_open_in_s']:g} s" if r["half_open_in_s"] else ""
        if r["probed_s_ago"] is not None:
            said = "answered" if r["probe_answered"] else "not answered"
            extra += f"; probed {max(r['probed_s_ago'], 0):g} s ago: {said}"
        why = "" if r["state"] == "closed" else f"; {r['why']}"
        name = shown[r["provider"]].ljust(width)
        print(
            f"  {name}  {r['state']:<9}  {r['consecutive_failures']} in a "
            f"row, {r['failures']}/{r['calls']} failed in the window{extra}{why}"
        )
    if quotas:
        print("quotas (the last minute):")
        for q in quotas:
            limits = ", ".join(
                f"{q[k]}/{q[k + '_limit']} {k[:-1] if k == 'requests' else k}"
                for k in ("requests", "tokens") if q[k + "_limit"] is not None
            )  # fmt: skip
            print(f"  {printable(q['provider'])}  {limits}")
    if source == "local":
        print("  (local health lives in each process; set TORQ_REDIS_URL to share and see it)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from engine.telemetry.read import read_log
    from engine.telemetry.stats import stats, stats_text

    if args.html:  # checked before any work starts
        try:
            import matplotlib  # noqa: F401  (the report's charts need it)
        except ImportError:
            raise ValueError(
                "--html needs matplotlib, which the plain install leaves out: "
                "pip install 'torq-fallback[report]'"
            ) from None
    try:
        read = read_log(args.files, since=args.since, chain=args.chain)
    except ValueError as exc:
        raise ValueError(f"--since {args.since!r}: {exc}") from None
    if args.chain is not None and args.chain not in read.chains:
        import difflib

        seen = sorted(read.chains)
        close = difflib.get_close_matches(args.chain, seen, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(
            f"--chain {args.chain!r}: no request of that chain in {', '.join(read.files)}{hint}; "
            + (f"chains there: {', '.join(seen)}" if seen else "the log holds no request")
        )
    report = stats(read.lines)
    report["skipped_lines"] = read.skipped
    report["dropped_lines"] = read.dropped
    report["files_cut_short"] = read.cut_files
    if args.html:
        from engine.telemetry.report import html_report
        from engine.tools.diagrams import write_atomically

        page = html_report(read.lines, files=read.files, skipped=read.skipped, dropped=read.dropped)
        write_atomically(Path(args.html), page.encode())
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
