"""Diagrams of chains (and of one run's path through a chain), for review.

Drawn with transitions' diagram support: a ``GraphMachine`` built only for rendering, from
the same transitions (:func:`engine.machine.edges`) as the machine on the request path,
never that machine itself. Two outputs: Graphviz (DOT, and through Graphviz's ``dot``
program SVG and PNG) and Mermaid (``stateDiagram-v2``, for Markdown).

Every transition is its own edge, coloured by category, so two categories between the same
two steps stay apart; retry loops are dashed self-loops. The whole-chain deadline (any step
to ``exhausted``) is stated in the title rather than drawn from every step. The same chain
always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

import graphviz
from transitions.extensions import GraphMachine
from transitions.extensions.diagrams_graphviz import Graph as _GraphvizGraph
from transitions.extensions.diagrams_mermaid import Graph as _MermaidGraph

from .errors import TorqError
from .machine import Edge, edges
from .spec import ABORTED, EXHAUSTED, FINAL_STATES, SUCCEEDED, Chain, Step

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
#: Edge colour per category (the legend shows the same).
COLOURS: Final[Mapping[str, str]] = {
    "success": "#2e7d32",
    "retryable": "#ef6c00",
    "timeout": "#6a1b9a",
    "non_retryable": "#c62828",
}
_FINAL_STYLE: Final = {
    SUCCEEDED: {"shape": "doublecircle", "color": "#2e7d32", "fillcolor": "#e8f5e9"},
    EXHAUSTED: {"shape": "doubleoctagon", "color": "#616161", "fillcolor": "#f5f5f5"},
    ABORTED: {"shape": "octagon", "color": "#c62828", "fillcolor": "#ffebee"},
}
_TAKEN: Final = "#1565c0"


class DotMissingError(TorqError, RuntimeError):
    """SVG or PNG was asked for, but Graphviz's ``dot`` program is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "SVG and PNG need Graphviz's `dot` program, which is not installed. Install it "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
            "Windows: winget install graphviz), or ask for --format dot,mermaid, which "
            "need nothing."
        )


@dataclass(frozen=True)
class Highlight:
    """One run's path: the edges taken (source, category, dest), in order, and where it ended."""

    taken: tuple[tuple[str, str, str], ...]
    end: str

    @property
    def states(self) -> set[str]:
        """Every state the run was in."""
        visited = {src for src, _, _ in self.taken} | {dst for _, _, dst in self.taken}
        return visited | {self.end}


def highlight_from_attempts(attempts: Sequence[Mapping[str, Any]]) -> Highlight:
    """The path recorded in ``meta.provider_attempts``."""
    taken = tuple((str(a["state"]), str(a["category"]), str(a["next"])) for a in attempts)
    end = taken[-1][2] if taken else ""
    if end not in FINAL_STATES:  # the deadline ended the run before the next attempt
        end = EXHAUSTED
    return Highlight(taken, end)


def _visible(text: str) -> str:
    """Text from a chain file as it reads: control and line-separator characters shown as
    escapes (``\\n``), never acted on, so no name or description can end a statement of
    the diagram's language and start another."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _dot_text(text: str) -> str:
    """A line of a DOT label: visible, and a backslash is a backslash (DOT reads ``\\N``,
    ``\\G``, ``\\l`` as escapes)."""
    return _visible(text).replace("\\", "\\\\")


#: Characters that mean something inside a Mermaid label, written as its entity codes.
_MERMAID_CODES: Final = {c: f"#{ord(c)};" for c in '"#;<>&`{}[]|'}


def _mermaid_text(text: str) -> str:
    """A line of a Mermaid label: visible, with every character that could close the label
    or start markup written as an entity code (``#34;``)."""
    return "".join(_MERMAID_CODES.get(c, c) for c in _visible(text))


def _title(chain: Chain) -> str:
    about = f": {_visible(chain.description)}" if chain.description else ""
    cut = (
        "the next step answers from the start"
        if chain.on_midstream == "restart"
        else "the stream fails, marked truncated"
    )
    return (
        f"chain '{chain.name}'{about}\n"
        f"deadline {chain.deadline:g} s for the whole chain "
        f"(when it passes, any step goes to exhausted); a stream cut mid-way: {cut}"
    )


@functools.lru_cache(maxsize=32)
def _default_models(folder: str) -> dict[str, str]:
    """Each provider's default model: the built-ins, with the chain's providers.yaml."""
    from .providers.settings import BUILTIN_SETTINGS, load_providers_file

    try:
        settings = load_providers_file(Path(folder)) if folder else dict(BUILTIN_SETTINGS)
    except TorqError:
        settings = dict(BUILTIN_SETTINGS)
    return {name: s.model for name, s in settings.items()}


def _step_lines(step: Step, source: str = "") -> list[str]:
    lines = [step.id]
    if step.provider != step.id:
        lines.append(f"provider: {step.provider}")
    folder = str(Path(source).parent) if source and Path(source).is_file() else ""
    default = _default_models(folder).get(step.provider)
    model = step.model or (f"{default} (its default)" if default else "the provider's default")
    lines.append(f"model: {model}")
    retries = f"retries: {step.retries}"
    if step.retries:
        retries += " (timeouts too)" if step.retry_timeouts else " (not timeouts)"
    lines.append(f"timeout: {step.timeout:g} s, {retries}")
    if step.first_token_timeout is not None or step.idle_timeout is not None:
        first = step.first_token_timeout or step.timeout
        idle = step.idle_timeout or step.timeout
        lines.append(f"stream: first token ≤{first:g} s, gaps ≤{idle:g} s")
    return lines


def _edge_label(edge: Edge, step: Step) -> str:
    if edge.kind == "retry":
        return f"{edge.trigger}: retry (≤{step.retries}, transient, wait ≤{step.backoff_max:g} s)"
    return edge.trigger


@dataclass(frozen=True)
class _Drawn:
    """One edge as both renderers draw it."""

    source: str
    dest: str
    trigger: str
    retry: bool
    label: str
    taken: bool


def _drawn_edges(
    transitions: Sequence[Mapping[str, Any]], chain: Chain, highlight: Highlight | None
) -> list[_Drawn]:
    """transitions' markup of the render machine, labelled, with the run's attempts marked."""
    taken = _taken_index(highlight)
    out = []
    for t in transitions:
        src, dst, trigger = t["source"], t["dest"], t["trigger"]
        retry = src == dst
        label = _edge_label(
            Edge(trigger, src, dst, "retry" if retry else "route"), chain.by_id[src]
        )
        numbers = taken.get((src, trigger, dst))
        if numbers:
            label += "  [" + ", ".join(f"#{n}" for n in numbers) + "]"
        out.append(_Drawn(src, dst, trigger, retry, label, bool(numbers)))
    return out


def _drawn(chain: Chain) -> list[Edge]:
    # The deadline and a mid-stream cut apply to every step alike: the title says where they
    # lead instead of an edge from every step.
    return [e for e in edges(chain) if e.kind not in ("deadline", "cut")]


@dataclass(frozen=True)
class Traffic:
    """What a request log says went through a chain: how often each edge was taken, and
    each step's attempts, successes and p95 latency (``render --traffic``)."""

    edges: Mapping[tuple[str, str, str], int]
    steps: Mapping[str, tuple[int, int, float | None]]
    requests: int

    @classmethod
    def from_lines(cls, chain: str, lines: Sequence[Mapping[str, Any]]) -> Traffic:
        """The traffic of ``chain`` in JSONL log lines."""
        from .telemetry.stats import percentile

        edge_counts: dict[tuple[str, str, str], int] = {}
        attempts: dict[str, list[float]] = {}
        successes: dict[str, int] = {}
        requests = 0
        for line in lines:
            if line.get("chain") != chain:
                continue
            requests += 1
            for a in line["attempts"]:
                key = (str(a.get("state")), str(a.get("category")), str(a.get("next")))
                edge_counts[key] = edge_counts.get(key, 0) + 1
                step = str(a.get("state"))
                attempts.setdefault(step, []).append(float(a.get("latency_ms") or 0))
                successes[step] = successes.get(step, 0) + (a.get("status") == "success")
        steps = {
            step: (len(values), successes.get(step, 0), percentile(values, 0.95))
            for step, values in attempts.items()
        }
        return cls(edge_counts, steps, requests)


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


def _taken_index(highlight: Highlight | None) -> dict[tuple[str, str, str], list[int]]:
    index: dict[tuple[str, str, str], list[int]] = {}
    for number, key in enumerate(highlight.taken if highlight else (), 1):
        index.setdefault(key, []).append(number)
    return index


class _ChainDot(_GraphvizGraph):
    """transitions' Graphviz graph, drawing one edge per transition with our styling."""

    def get_graph(self, title: str | None = None, roi_state: Any = None) -> graphviz.Digraph:
        machine = cast(_RenderMachine, self.machine)
        chain, _highlight = machine.chain, machine.highlight
        graph = graphviz.Digraph(name=f"chain_{chain.name}")
        graph.attr(
            rankdir="LR",
            label=_title(chain),
            labelloc="t",
            fontname="Helvetica",
            fontsize="14",
            nodesep="0.5",
            ranksep="0.9",
        )
        graph.attr("node", fontname="Helvetica", fontsize="11", style="rounded,filled")
        graph.attr("edge", fontname="Helvetica", fontsize="10")
        graph.node("start", label="", shape="point", width="0.15", color="black")
        states, transitions = self._get_elements()
        self._add_nodes(states, graph)
        graph.edge("start", chain.steps[0].id, color="black")
        self._add_edges(transitions, graph)
        graph.node(
            "legend", label=_legend_html(_highlight is not None), shape="plaintext", style=""
        )
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


#: What else an edge of a category carries, besides the usual failures (legend notes).
LEGEND_NOTES: Final[Mapping[str, str]] = {
    "retryable": "also overloaded: the provider's line (max_queue) is full; and "
    "circuit_open: its breaker is open, the step is skipped without a call",
    "timeout": "also queue_timeout: no free slot (max_in_flight) in time",
}


def _legend_html(path: bool = False) -> str:
    rows = "".join(
        f'<tr><td align="left"><font color="{colour}">━━ {html.escape(name)}'
        + (f" <i>({html.escape(LEGEND_NOTES[name])})</i>" if name in LEGEND_NOTES else "")
        + "</font></td></tr>"
        for name, colour in COLOURS.items()
    )
    return (
        '<<table border="0" cellborder="0" cellspacing="2">'
        '<tr><td align="left"><b>legend</b></td></tr>'
        f"{rows}"
        '<tr><td align="left">╌╌ retry on the same step</td></tr>'
        + ('<tr><td align="left"><b>━━</b> path taken (#attempt)</td></tr>' if path else "")
        + "</table>>"
    )


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
    """The chain in ``fmt`` (svg, png, dot or mermaid). Raises :class:`DotMissingError`
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
    from .health.diagram import breaker_dot, breaker_mermaid

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
