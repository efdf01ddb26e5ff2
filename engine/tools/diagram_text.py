"""What a chain's diagram says, whatever its format: the title, each step's lines, each edge's
label and colour, the legend, the path a run took and the traffic a log saw; every name from
a chain file kept text (never markup) for DOT and Mermaid."""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from engine.chain.spec import ABORTED, EXHAUSTED, FINAL_STATES, SUCCEEDED, Chain, Step
from engine.core.machine import Edge, edges
from engine.errors import TorqError

__all__ = ["COLOURS", "LEGEND_NOTES", "Highlight", "Traffic", "highlight_from_attempts"]


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
    pause = (
        f"\nafter a rate limit (429): a pause of {chain.rate_limit_pause:g} s before the next step"
        if chain.rate_limit_pause
        else ""
    )
    aliases = chain.spec.aliases
    named = f"\ngateway clients may call it: {', '.join(map(_visible, aliases))}" if aliases else ""
    return (
        f"chain '{chain.name}'{about}\n"
        f"deadline {chain.deadline:g} s for the whole chain "
        f"(when it passes, any step goes to exhausted); a stream cut mid-way: {cut}{pause}{named}"
    )


@functools.lru_cache(maxsize=32)
def _default_models(folder: str) -> dict[str, str]:
    """Each provider's default model: the built-ins, with the chain's providers.yaml."""
    from engine.providers.settings import BUILTIN_SETTINGS, load_providers_file

    try:
        settings = load_providers_file(Path(folder)) if folder else dict(BUILTIN_SETTINGS)
    except TorqError:
        settings = dict(BUILTIN_SETTINGS)
    return {name: s.model for name, s in settings.items()}


def _pool_lines(step: Step, defaults: dict[str, str]) -> list[str]:
    lines = [f"pool ({step.strategy}" + (f", slow start {step.slow_start:g} s)" if step.slow_start
                                          else ")")]  # fmt: skip
    total = sum(m.weight for m in step.pool)
    for member in step.pool:
        model = member.model or defaults.get(member.provider) or "its default model"
        share = f"weight {member.weight:g} ({member.weight / total:.0%})"
        lines.append(f"• {member.provider}: {model}" + (
            f", {share}" if step.strategy == "weighted" else ""))  # fmt: skip
    return lines


def _step_lines(step: Step, source: str = "") -> list[str]:
    lines = [step.id]
    folder = str(Path(source).parent) if source and Path(source).is_file() else ""
    defaults = _default_models(folder)
    if step.pool:
        lines += _pool_lines(step, defaults)
    else:
        if step.provider != step.id:
            lines.append(f"provider: {step.provider}")
        default = defaults.get(step.provider)
        model = step.model or (f"{default} (its default)" if default else "the provider's default")
        lines.append(f"model: {model}")
    retries = f"retries: {step.retries}"
    if step.retries:
        retries += " (timeouts too)" if step.retry_timeouts else " (not timeouts)"
        retries += ", to another member" if step.pool else ""
    lines.append(f"timeout: {step.timeout:g} s, {retries}")
    if step.first_token_timeout is not None or step.idle_timeout is not None:
        first = step.first_token_timeout or step.timeout
        idle = step.idle_timeout or step.timeout
        lines.append(f"stream: first token ≤{first:g} s, gaps ≤{idle:g} s")
    rules = step.accept.rules()
    if rules:
        lines.append("accepts: " + ", ".join(rules))
    if step.hedge is not None:
        target = "another member" if step.pool else "the same provider"
        lines.append(f"hedged: {step.hedge.describe()}, to {target}")
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
        from engine.telemetry.stats import percentile

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


def _taken_index(highlight: Highlight | None) -> dict[tuple[str, str, str], list[int]]:
    index: dict[tuple[str, str, str], list[int]] = {}
    for number, key in enumerate(highlight.taken if highlight else (), 1):
        index.setdefault(key, []).append(number)
    return index


#: What else an edge of a category carries, besides the usual failures (the key's notes).
LEGEND_NOTES: Final[Mapping[str, str]] = {
    "retryable": "also a step skipped without a call (circuit_open, quota_exhausted, "
    "context_too_small), a full line (overloaded) and an answer the accept rules turn "
    "down (answer_rejected)",
    "timeout": "also no free slot in time (queue_timeout)",
}

_WRAP: Final = 100  # characters per line of the header: the chain, not the text, sets the width


def _header_html(chain: Chain, path: bool = False) -> str:
    """The diagram's header, an HTML-like DOT label above the chain: the title, then a
    one-line key of the edge colours and short notes. A header, not a node, so the key
    never takes a rank of its own beside the steps (the chain is the picture)."""
    title, *more = _title(chain).split("\n")
    rows = [f'<tr><td align="center"><font point-size="14"><b>{_html_line(title)}</b>'
            "</font></td></tr>"]  # fmt: skip
    for line in more:
        rows.extend(
            f'<tr><td align="center">{_html_line(part)}</td></tr>' for part in _wrapped(line)
        )
    key = "  ".join(
        f'<font color="{colour}">━━ {name}{"*" if name in LEGEND_NOTES else ""}</font>'
        for name, colour in COLOURS.items()
    )
    key += "  ╌╌ retry on the same step"
    if path:
        key += f'  <font color="{_TAKEN}"><b>━━</b> path taken (#attempt)</font>'
    rows.append(f'<tr><td align="center">{key}</td></tr>')
    notes = "; ".join(f"*{name}: {note}" for name, note in LEGEND_NOTES.items())
    rows.extend(
        f'<tr><td align="center"><font point-size="9" color="#555555">{html.escape(part)}'
        "</font></td></tr>"
        for part in _wrapped(notes, _WRAP * 3 // 2)  # smaller type: longer lines
    )
    return '<<table border="0" cellborder="0" cellspacing="1">' + "".join(rows) + "</table>>"


def _wrapped(line: str, width: int = _WRAP) -> list[str]:
    import textwrap

    return textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""]


def _html_line(text: str) -> str:
    """A line of an HTML-like DOT label: visible, with markup characters escaped."""
    return html.escape(_visible(text), quote=True)
