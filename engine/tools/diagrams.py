"""Diagrams of chains (and of one run's path through a chain), for review.

Drawn with transitions' diagram support: a ``GraphMachine`` built only for rendering, from
the same transitions (`engine.core.machine.edges`) as the machine on the request path,
never that machine itself. Two outputs: Graphviz (DOT, and through Graphviz's ``dot``
program SVG and PNG) and Mermaid (``stateDiagram-v2``, for Markdown).

Every transition is its own edge, coloured by category, so two categories between the same
two steps stay apart; retry loops are dashed self-loops. The whole-chain deadline (any step
to ``exhausted``) is stated in the title rather than drawn from every step. The same chain
always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, cast

import graphviz
from transitions.extensions import GraphMachine
from transitions.extensions.diagrams_graphviz import Graph as _GraphvizGraph
from transitions.extensions.diagrams_mermaid import Graph as _MermaidGraph

from engine.chain.spec import FINAL_STATES, Chain
from engine.errors import TorqError
from engine.tools.diagram_text import (
    _FINAL_STYLE,
    _TAKEN,
    COLOURS,
    Highlight,
    Traffic,
    _dot_text,
    _drawn,
    _drawn_edges,
    _header_html,
    _mermaid_text,
    _step_lines,
    _title,
    highlight_from_attempts,
)

__all__ = [
    "COLOURS",
    "FORMATS",
    "DotMissingError",
    "Highlight",
    "dot_source",
    "highlight_from_attempts",
    "mermaid_source",
    "render",
]

#: Output formats, by file suffix.
FORMATS: Final = {"svg": "svg", "png": "png", "dot": "dot", "mermaid": "mmd"}


class DotMissingError(TorqError, RuntimeError):
    """SVG or PNG was asked for, but Graphviz's ``dot`` program is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "SVG and PNG need Graphviz's `dot` program, which is not installed. Install it "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
            "Windows: winget install graphviz), or ask for --format dot,mermaid, which "
            "need nothing."
        )


class _RenderMachine(GraphMachine):
    """A machine built only to be drawn; it is its own model and never runs a request."""

    def __init__(
        self,
        chain: Chain,
        engine: Literal["graphviz", "mermaid"],
        highlight: Highlight | None,
        traffic: Traffic | None = None,
    ) -> None:
        self.chain = chain
        self.highlight = highlight
        self.traffic = traffic
        transitions = [
            {
                "trigger": e.trigger,
                "source": e.source,
                "dest": e.dest,
                **({"conditions": ["can_retry"]} if e.kind == "retry" else {}),
            }
            for e in _drawn(chain)
        ]
        super().__init__(
            states=[step.id for step in chain.steps] + list(FINAL_STATES),
            transitions=transitions,
            initial=chain.steps[0].id,
            auto_transitions=False,
            title=_title(chain),
            show_conditions=True,
            graph_engine=engine,
        )

    def _init_graphviz_engine(self, graph_engine: str) -> type:
        return _ChainDot if graph_engine == "graphviz" else _ChainMermaid


class _ChainDot(_GraphvizGraph):
    """transitions' Graphviz graph, drawing one edge per transition with our styling."""

    def get_graph(self, title: str | None = None, roi_state: Any = None) -> graphviz.Digraph:
        machine = cast(_RenderMachine, self.machine)
        chain, _highlight = machine.chain, machine.highlight
        graph = graphviz.Digraph(name=f"chain_{chain.name}")
        graph.attr(
            rankdir="LR",
            label=_header_html(chain, _highlight is not None),
            labelloc="t",
            fontname="Helvetica",
            fontsize="14",
            nodesep="0.35",
            ranksep="0.3",
        )
        graph.attr("node", fontname="Helvetica", fontsize="11", style="rounded,filled")
        graph.attr("edge", fontname="Helvetica", fontsize="10")
        graph.node("start", label="", shape="point", width="0.15", color="black")
        states, transitions = self._get_elements()
        self._add_nodes(states, graph)
        graph.edge("start", chain.steps[0].id, color="black")
        self._add_edges(transitions, graph)
        # Every chain's final states in the same place and order: the last rank, top-down.
        with graph.subgraph(name="finals") as finals:
            finals.attr(rank="max")
            for name in FINAL_STATES:
                finals.node(name)
        return graph

    def _add_nodes(self, states: list[dict[str, Any]], container: graphviz.Digraph) -> None:
        machine = cast(_RenderMachine, self.machine)
        visited = machine.highlight.states if machine.highlight else set()
        for state in states:
            name = state["name"]
            taken = {"penwidth": "2.5", "color": _TAKEN} if name in visited else {}
            if name in _FINAL_STYLE:
                container.node(name, label=name, **{**_FINAL_STYLE[name], **taken})
                continue
            step = machine.chain.by_id[name]
            lines = _step_lines(step, machine.chain.source)
            if machine.traffic is not None:
                tried, ok, p95 = machine.traffic.steps.get(name, (0, 0, None))
                rate = f"{ok / tried:.0%} ok of {tried}" if tried else "no attempts"
                lines.append(rate + (f", p95 {p95:g} ms" if p95 is not None else ""))
            label = "\\n".join(_dot_text(line) for line in lines)
            fill = "#e3f2fd" if name in visited else "white"
            container.node(name, label=label, shape="box", fillcolor=fill, **taken)

    def _add_edges(self, transitions: list[dict[str, Any]], container: graphviz.Digraph) -> None:
        machine = cast(_RenderMachine, self.machine)
        traffic = machine.traffic
        leaving: dict[str, int] = {}
        for (source, _, _), count in traffic.edges.items() if traffic else ():
            leaving[source] = leaving.get(source, 0) + count
        busiest = max(traffic.edges.values(), default=1) if traffic else 1
        for edge in _drawn_edges(transitions, machine.chain, machine.highlight):
            colour = COLOURS[edge.trigger]
            attrs = {"color": colour, "fontcolor": colour}
            label = edge.label
            if edge.retry:
                attrs["style"] = "dashed"
            if edge.taken:
                attrs["penwidth"] = "3"
            if traffic is not None:
                count = traffic.edges.get((edge.source, edge.trigger, edge.dest), 0)
                share = count / leaving[edge.source] if leaving.get(edge.source) else 0.0
                label += f"  x{count} ({share:.0%})"
                attrs["penwidth"] = f"{1 + 5 * count / busiest:.2f}"
            container.edge(edge.source, edge.dest, label=label, **attrs)


class _ChainMermaid(_MermaidGraph):
    """transitions' Mermaid graph, one edge per transition, styled like the DOT one."""

    def get_graph(self, title: str | None = None, roi_state: Any = None) -> Any:
        machine = cast(_RenderMachine, self.machine)
        chain, highlight = machine.chain, machine.highlight
        ids = {step.id: f"s{i}" for i, step in enumerate(chain.steps)}
        ids.update({name: name for name in FINAL_STATES})
        title_line = _title(chain).replace("\n", " - ")
        # A JSON string is a valid YAML double-quoted scalar: ": " in the title stays text.
        lines = [
            "---",
            f"title: {json.dumps(title_line, ensure_ascii=False)}",
            "---",
            "stateDiagram-v2",
            "    direction LR",
        ]
        for step in chain.steps:
            label = "<br/>".join(_mermaid_text(line) for line in _step_lines(step, chain.source))
            lines.append(f'    state "{label}" as {ids[step.id]}')
        lines.append(f"    [*] --> {ids[chain.steps[0].id]}")
        _states, transitions = self._get_elements()
        # stateDiagram-v2 cannot style one transition (no linkStyle): the label carries the
        # category, and a path's attempts are numbered on it; the visited states are styled.
        for edge in _drawn_edges(transitions, chain, highlight):
            lines.append(f"    {ids[edge.source]} --> {ids[edge.dest]}: {edge.label}")
        for name in FINAL_STATES:
            lines.append(f"    {name} --> [*]")
        for name, style in _FINAL_STYLE.items():
            lines.append(
                f"    classDef final_{name} fill:{style['fillcolor']},stroke:{style['color']}"
            )
        lines.append(f"    classDef taken fill:#e3f2fd,stroke:{_TAKEN},stroke-width:3px")
        for name in FINAL_STATES:
            lines.append(f"    class {name} final_{name}")
        if highlight:
            visited = sorted(ids[s] for s in highlight.states if s in ids)
            lines.append(f"    class {','.join(visited)} taken")
        return "\n".join(lines) + "\n"


def dot_source(
    chain: Chain, highlight: Highlight | None = None, traffic: Traffic | None = None
) -> str:
    """The chain as Graphviz DOT text (with ``traffic``: annotated with a log's counts)."""
    graph: graphviz.Digraph = _RenderMachine(chain, "graphviz", highlight, traffic).get_graph()
    return str(graph.source)


def mermaid_source(chain: Chain, highlight: Highlight | None = None) -> str:
    """The chain as a Mermaid ``stateDiagram-v2``."""
    return str(_RenderMachine(chain, "mermaid", highlight).get_graph())


def render(
    chain: Chain, fmt: str, highlight: Highlight | None = None, traffic: Traffic | None = None
) -> bytes:
    """The chain in ``fmt`` (svg, png, dot or mermaid). Raises `DotMissingError`
    when svg or png is asked for without Graphviz's ``dot`` program. ``traffic`` annotates
    DOT, SVG and PNG."""
    if fmt == "dot":
        return dot_source(chain, highlight, traffic).encode()
    if fmt == "mermaid":
        return mermaid_source(chain, highlight).encode()
    if fmt not in ("svg", "png"):
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        data: bytes = graphviz.Source(dot_source(chain, highlight, traffic)).pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise DotMissingError() from exc
    return data


def parse_formats(text: str) -> list[str]:
    """``"svg,mermaid"`` -> ``["svg", "mermaid"]``, with a clear error for unknown ones."""
    formats = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; use {', '.join(FORMATS)}"
        )
    return formats


__all__ += ["Traffic", "parse_formats"]


def write_atomically(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half;
    a file that already holds ``data`` is left untouched (False). New files get the usual
    permissions (0666 less the umask), not the temporary file's 0600."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return True


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


#: The file stem of the breaker machine's diagram (no chain may have this name).
BREAKER_DIAGRAM: Final = "breaker"


def render_breaker(fmt: str) -> bytes:
    """The provider breaker machine in ``fmt``."""
    from engine.tools.breaker_diagram import breaker_dot, breaker_mermaid

    if fmt == "mermaid":
        return breaker_mermaid().encode()
    if fmt == "dot":
        return breaker_dot().encode()
    try:
        data: bytes = graphviz.Source(breaker_dot()).pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise DotMissingError() from exc
    return data


def render_all(
    chains: Mapping[str, Chain], out: Path, formats: Sequence[str], *, check: bool
) -> list[str]:
    """Render every chain in every format into ``out``. With ``check``, write nothing and
    return what is stale (``"stale: path"``, ``"missing: path"``, ``"orphan: path"``);
    otherwise return the files written."""
    report: list[str] = []
    expected: set[Path] = set()

    def emit(path: Path, data: bytes) -> None:
        expected.add(path)
        if not check:
            written = write_atomically(path, data)
            report.append(str(path) if written else f"unchanged: {path}")
        elif not path.exists():
            report.append(f"missing: {path}")
        elif path.read_bytes() != data:
            report.append(f"stale: {path}")

    for name in sorted(chains):
        for fmt in formats:
            emit(out / f"{name}.{FORMATS[fmt]}", render(chains[name], fmt))
    for fmt in formats:  # the breaker machine, beside the chains
        emit(out / f"{BREAKER_DIAGRAM}.{FORMATS[fmt]}", render_breaker(fmt))
    if check and out.is_dir():
        suffixes = {f".{FORMATS[fmt]}" for fmt in formats}
        for path in sorted(out.iterdir()):
            if path.suffix in suffixes and path not in expected:
                report.append(f"orphan: {path} (no chain '{path.stem}')")
    return report


__all__ += ["BREAKER_DIAGRAM", "render_all", "render_breaker", "write_atomically"]
