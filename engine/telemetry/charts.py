"""The report's charts, drawn with matplotlib as inline SVG: requests over time, each
provider's outcomes, attempt latency per provider over time, and each chain's fallback rate.

Colours say what an outcome is, the same in every chart and in the diagrams: success green,
a step skipped without a call (breaker open, quota used up, window too small) grey and
hatched, retryable failures orange, timeouts purple, non-retryable failures red; shades of
a family tell its codes apart. Legends sit under their chart in type as large as the axes'.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from engine.telemetry.stats import percentile

__all__ = ["BUCKETS", "Outcome", "charts", "outcome_of"]

BUCKETS: Final = 12  # time buckets per chart
_SERIES: Final = 8  # providers (or chains) drawn one by one; the rest are summed as "other"
_TYPE: Final = 10  # points: axes labels and legends alike

#: Shades per kind of outcome, darkest first (the most frequent code gets the first).
_FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "success": ("#2e7d32",),
    "skipped": ("#757575", "#9e9e9e", "#bdbdbd", "#616161"),
    "retryable": ("#ef6c00", "#ffa726", "#e65100", "#ffcc80", "#f57c00"),
    "timeout": ("#6a1b9a", "#ab47bc", "#4a148c", "#ce93d8"),
    "non_retryable": ("#c62828", "#ef5350", "#8e0000", "#ef9a9a"),
}
_KINDS: Final = tuple(_FAMILIES)
_ANSWERED: Final = "#2e7d32"
_FELL_BACK: Final = "#f9a825"
_FAILED: Final = "#c62828"


class Outcome(tuple[str, str]):
    """An attempt's outcome as the report groups it: (kind, label), kind one of success,
    skipped, retryable, timeout, non_retryable."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        """success, skipped, retryable, timeout or non_retryable."""
        return self[0]

    @property
    def label(self) -> str:
        """What the legend says: ``success``, ``skipped: circuit_open``, ``provider_error:503``."""
        return self[1]


def outcome_of(attempt: dict[str, Any]) -> Outcome:
    """The kind and label of one logged attempt."""
    status = attempt.get("status")
    if status == "success":
        return Outcome(("success", "success"))
    code = str(attempt.get("error_code") or attempt.get("error_category") or "unknown")
    if status == "skipped":
        return Outcome(("skipped", f"skipped: {code}"))
    kind = str(attempt.get("category") or "")
    if kind not in _FAMILIES or kind == "success":
        kind = "timeout" if attempt.get("error_category") == "timeout" else "retryable"
    category = attempt.get("error_category")
    return Outcome((kind, f"{category}:{code}" if category and category != code else code))


def _gid(text: str) -> str:
    """An SVG id from a label (names from a log are any text)."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", text)


def _label(text: str) -> str:
    """Text shown as it is: matplotlib would read ``$...$`` as mathematics."""
    return text.replace("$", r"\$")


def _top(counts: dict[str, int]) -> tuple[list[str], set[str]]:
    """The busiest names (drawn one by one) and the rest (drawn as "other")."""
    ordered = sorted(counts, key=lambda n: (-counts[n], n))
    return sorted(ordered[:_SERIES]), set(ordered[_SERIES:])


def _bucketed(lines: Sequence[dict[str, Any]]) -> tuple[list[datetime], list[int]]:
    times = [datetime.fromisoformat(line["ts"]).timestamp() for line in lines]
    if not times:
        return [], []
    first, last = min(times), max(times)
    width = (last - first) / BUCKETS or 1.0
    index = [min(int((t - first) / width), BUCKETS - 1) for t in times]
    edges = [datetime.fromtimestamp(first + (i + 0.5) * width, UTC) for i in range(BUCKETS)]
    return edges, index


def _time_axis(axes: Any, centers: Sequence[datetime]) -> None:
    """Clock times people read ("14:05:30", "14:05", "11-28 14:05"), by the log's span."""
    from matplotlib.dates import DateFormatter

    span = (max(centers) - min(centers)).total_seconds() if centers else 0.0
    pattern = "%H:%M:%S" if span < 600 else "%H:%M" if span < 86_400 else "%m-%d %H:%M"
    axes.xaxis.set_major_formatter(DateFormatter(pattern, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)", fontsize=_TYPE)


def _legend(axes: Any, entries: int) -> None:
    """Under the chart, in the axes' type, in as many columns as fit."""
    if entries:
        axes.legend(fontsize=_TYPE, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                    ncol=min(entries, 4), frameon=False)  # fmt: skip


def _svg(plt: Any, figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _figure(plt: Any, height: float = 3.4) -> tuple[Any, Any]:
    figure, axes = plt.subplots(figsize=(10, height))
    axes.tick_params(labelsize=_TYPE - 1)
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def charts(lines: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(id, title, inline SVG) of every chart of ``lines``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    plt: Any = pyplot  # plotted from plain lists: matplotlib's array types do not help here
    plt.rcParams["svg.fonttype"] = "none"  # text stays text
    plt.rcParams["svg.hashsalt"] = "torq-fallback"  # the same log, the same bytes
    centers, index = _bucketed(lines)
    return [
        ("requests", "Requests over time", _requests(plt, lines, centers, index)),
        ("outcomes", "Outcomes of each provider's attempts", _outcomes(plt, lines)),
        ("latency", "Attempt latency per provider over time (p50 solid, p95 dashed, p99 dotted)",
         _latency(plt, lines, centers, index)),
        ("fallback", "Fallback rate per chain over time", _fallback(plt, lines, centers, index)),
    ]  # fmt: skip


def _requests(plt: Any, lines: Sequence[dict[str, Any]], centers: list[datetime],
              index: list[int]) -> str:  # fmt: skip
    counts = {name: [0] * BUCKETS for name in ("answered", "fell back", "failed")}
    for line, bucket in zip(lines, index, strict=True):
        if line.get("final_state") != "succeeded":
            counts["failed"][bucket] += 1
        elif line.get("fallback_used"):
            counts["fell back"][bucket] += 1
        else:
            counts["answered"][bucket] += 1
    figure, axes = _figure(plt, 3.0)
    width = (centers[1] - centers[0]).total_seconds() / 86_400 * 0.8 if len(centers) > 1 else 0.01
    bottom = [0] * len(centers)
    colours = {"answered": _ANSWERED, "fell back": _FELL_BACK, "failed": _FAILED}
    labels = {"answered": "answered by the first step", "fell back": "answered after a fallback",
              "failed": "failed (exhausted or aborted)"}  # fmt: skip
    for name, values in counts.items():
        axes.bar(centers, values, width=width, bottom=bottom, color=colours[name],
                 label=labels[name], gid=f"requests-{name.replace(' ', '_')}")  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_ylabel("requests", fontsize=_TYPE)
    _time_axis(axes, centers)
    _legend(axes, 3)
    return _svg(plt, figure)


def _outcomes(plt: Any, lines: Sequence[dict[str, Any]]) -> str:
    per: dict[str, dict[Outcome, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        for attempt in line["attempts"]:
            name = str(attempt.get("provider"))
            per[name][outcome_of(attempt)] += 1
            totals[name] += 1
    shown, others = _top(totals)
    if others:
        merged: dict[Outcome, int] = defaultdict(int)
        for name in others:
            for outcome, n in per[name].items():
                merged[outcome] += n
        per["other"] = merged
        shown.append("other")
    overall: dict[Outcome, int] = defaultdict(int)
    for name in shown:
        for outcome, n in per[name].items():
            overall[outcome] += n
    # Kinds in a fixed order (success first, skips next), codes by frequency within a kind.
    ordered = sorted(overall, key=lambda o: (_KINDS.index(o.kind), -overall[o], o.label))
    colour: dict[Outcome, str] = {}
    for kind in _KINDS:
        for shade, outcome in enumerate(o for o in ordered if o.kind == kind):
            colour[outcome] = _FAMILIES[kind][shade % len(_FAMILIES[kind])]
    figure, axes = _figure(plt, max(2.2, 0.55 * len(shown) + 1.4))
    names = [_label(n) for n in reversed(shown)]  # the first name on top
    left = [0] * len(shown)
    for outcome in ordered:
        values = [per[n].get(outcome, 0) for n in reversed(shown)]
        axes.barh(names, values, left=left, color=colour[outcome], label=_label(outcome.label),
                  hatch="//" if outcome.kind == "skipped" else None, edgecolor="white",
                  linewidth=0.5, gid=_gid(f"outcome-{outcome.label}"))  # fmt: skip
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_xlabel("attempts", fontsize=_TYPE)
    axes.tick_params(axis="y", labelsize=_TYPE)
    _legend(axes, len(ordered))
    return _svg(plt, figure)


def _latency(plt: Any, lines: Sequence[dict[str, Any]], centers: list[datetime],
             index: list[int]) -> str:  # fmt: skip
    tried: dict[str, int] = defaultdict(int)
    for line in lines:
        for attempt in line["attempts"]:
            if attempt.get("status") != "skipped":
                tried[str(attempt["provider"])] += 1
    shown, others = _top(tried)
    latencies: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in range(BUCKETS)])
    for line, bucket in zip(lines, index, strict=True):
        for attempt in line["attempts"]:
            if attempt.get("status") != "skipped":
                name = str(attempt["provider"])
                latencies["other" if name in others else name][bucket].append(
                    float(attempt.get("latency_ms") or 0)
                )
    figure, axes = _figure(plt)
    series = [*shown, *(["other"] if others else [])]
    palette = plt.get_cmap("tab10")
    for number, provider in enumerate(series):
        buckets = latencies[provider]
        for share, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
            points = [(c, percentile(b, share)) for c, b in zip(centers, buckets, strict=True) if b]
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], style,
                          color=palette(number % 10),
                          label=_label(provider) if share == 0.5 else None)  # fmt: skip
    axes.set_ylabel("attempt latency (ms)", fontsize=_TYPE)
    _time_axis(axes, centers)
    _legend(axes, len(series))
    return _svg(plt, figure)


def _fallback(plt: Any, lines: Sequence[dict[str, Any]], centers: list[datetime],
              index: list[int]) -> str:  # fmt: skip
    requests: dict[str, int] = defaultdict(int)
    for line in lines:
        requests[str(line["chain"])] += 1
    chains, other_chains = _top(requests)
    by_chain: dict[str, list[list[bool]]] = defaultdict(lambda: [[] for _ in range(BUCKETS)])
    for line, bucket in zip(lines, index, strict=True):
        name = str(line["chain"])
        by_chain["other" if name in other_chains else name][bucket].append(
            bool(line.get("fallback_used"))
        )
    figure, axes = _figure(plt, 3.0)
    series = [*chains, *(["other"] if other_chains else [])]
    for chain in series:
        flags = by_chain[chain]
        rates = [(c, 100 * sum(b) / len(b)) for c, b in zip(centers, flags, strict=True) if b]
        axes.plot([r[0] for r in rates], [r[1] for r in rates], "o-", label=_label(chain))
    axes.set_ylabel("requests that fell back (%)", fontsize=_TYPE)
    axes.set_ylim(0, 100)
    _time_axis(axes, centers)
    _legend(axes, len(series))
    return _svg(plt, figure)
