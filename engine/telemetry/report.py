"""``torq-fallback stats --html report.html``: a self-contained report with charts.

Charts are drawn with matplotlib (``pip install 'torq-fallback[report]'``) and embedded as
inline SVG: the file opens offline, with no script and no CDN. Three charts:

- latency percentiles (p50, p95, p99) of each provider's attempts over time;
- outcomes by error code, per provider (how often each provider failed, and how);
- the fallback rate of each chain over time.

Then the same tables as ``stats``.
"""

from __future__ import annotations

import html
import io
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engine.telemetry.stats import percentile, stats

__all__ = ["html_report"]

_BUCKETS = 12  # time buckets per chart
_SERIES = 8  # providers (or chains) drawn one by one; the rest are summed as "other"


def _label(text: str) -> str:
    """Text shown as it is: matplotlib would read ``$...$`` as mathematics."""
    return text.replace("$", r"\$")


def _top(counts: dict[str, int]) -> tuple[list[str], set[str]]:
    """The busiest names (drawn one by one) and the rest (drawn as "other")."""
    ordered = sorted(counts, key=lambda n: (-counts[n], n))
    return sorted(ordered[:_SERIES]), set(ordered[_SERIES:])


def _time_axis(axes: Any, centers: Sequence[datetime]) -> None:
    """Clock times people read ("14:05:30", "14:05", "11-28 14:05"), by the log's span."""
    from matplotlib.dates import DateFormatter

    span = (max(centers) - min(centers)).total_seconds() if centers else 0.0
    pattern = "%H:%M:%S" if span < 600 else "%H:%M" if span < 86_400 else "%m-%d %H:%M"
    axes.xaxis.set_major_formatter(DateFormatter(pattern, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)")


def _legend(axes: Any) -> None:
    """A legend beside the plot, one entry a line, whatever the number of series."""
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _bucketed(lines: Sequence[dict[str, Any]]) -> tuple[list[datetime], list[int]]:
    times = [datetime.fromisoformat(line["ts"]).timestamp() for line in lines]
    if not times:
        return [], []
    first, last = min(times), max(times)
    width = (last - first) / _BUCKETS or 1.0
    index = [min(int((t - first) / width), _BUCKETS - 1) for t in times]
    edges = [datetime.fromtimestamp(first + (i + 0.5) * width, UTC) for i in range(_BUCKETS)]
    return edges, index


def html_report(lines: Sequence[dict[str, Any]], title: str = "torq-fallback report") -> str:
    """The report for log ``lines``, as one HTML document."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    plt: Any = pyplot  # plotted from plain lists: matplotlib's array types do not help here

    plt.rcParams["svg.fonttype"] = "none"  # text stays text
    centers, index = _bucketed(lines)
    charts: list[tuple[str, str]] = []

    # 1. latency percentiles per provider over time
    tried: dict[str, int] = defaultdict(int)
    for line in lines:
        for attempt in line["attempts"]:
            if attempt.get("status") != "skipped":
                tried[str(attempt["provider"])] += 1
    shown, others = _top(tried)
    latencies: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in range(_BUCKETS)])
    for line, bucket in zip(lines, index, strict=True):
        for attempt in line["attempts"]:
            if attempt.get("status") != "skipped":
                name = str(attempt["provider"])
                latencies["other" if name in others else name][bucket].append(
                    float(attempt.get("latency_ms") or 0)
                )
    figure, axes = plt.subplots(figsize=(9, 3.6))
    for provider in [*shown, *(["other"] if others else [])]:
        buckets = latencies[provider]
        for share, style in ((0.5, "-"), (0.95, "--"), (0.99, ":")):
            points = [(c, percentile(b, share)) for c, b in zip(centers, buckets, strict=True) if b]
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], style,
                          label=_label(f"{provider} p{int(share * 100)}"))  # fmt: skip
    axes.set_ylabel("attempt latency (ms)")
    _legend(axes)
    _time_axis(axes, centers)
    figure.autofmt_xdate()
    charts.append(("Latency percentiles per provider over time", _svg(figure)))
    plt.close(figure)

    # 2. outcomes by error code, per provider (the busiest providers and codes)
    report = stats(lines)
    providers = sorted(shown) if shown else sorted(report["providers"])[:_SERIES]
    code_counts: dict[str, int] = defaultdict(int)
    for p in providers:
        for code, n in report["providers"][p]["top_error_codes"]:
            code_counts[code] += n
    codes, _ = _top(code_counts)
    figure, axes = plt.subplots(figsize=(9, 3.6))
    bottoms = [0] * len(providers)
    successes = [
        round((report["providers"][p]["success_rate"] or 0)
              * (report["providers"][p]["attempts"] - report["providers"][p]["skipped"]))
        for p in providers
    ]  # fmt: skip
    names = [_label(p) for p in providers]
    axes.bar(names, successes, label="success", color="#2e7d32")
    bottoms = successes[:]
    for code in codes:
        counts = [dict(report["providers"][p]["top_error_codes"]).get(code, 0) for p in providers]
        axes.bar(names, counts, bottom=bottoms, label=_label(code))
        bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
    axes.set_ylabel("attempts")
    axes.tick_params(axis="x", labelrotation=30)
    _legend(axes)
    charts.append(("Outcomes by error code, per provider", _svg(figure)))
    plt.close(figure)

    # 3. fallback rate per chain over time
    figure, axes = plt.subplots(figsize=(9, 3.6))
    requests: dict[str, int] = defaultdict(int)
    for line in lines:
        requests[str(line["chain"])] += 1
    chains, other_chains = _top(requests)
    by_chain: dict[str, list[list[bool]]] = defaultdict(lambda: [[] for _ in range(_BUCKETS)])
    for line, bucket in zip(lines, index, strict=True):
        name = str(line["chain"])
        by_chain["other" if name in other_chains else name][bucket].append(
            bool(line.get("fallback_used"))
        )
    for chain, flags in [(c, by_chain[c]) for c in [*chains, *(["other"] if other_chains else [])]]:
        rates = [(c, 100 * sum(b) / len(b)) for c, b in zip(centers, flags, strict=True) if b]
        axes.plot([r[0] for r in rates], [r[1] for r in rates], "o-", label=_label(chain))
    axes.set_ylabel("requests that fell back (%)")
    axes.set_ylim(0, 100)
    _legend(axes)
    _time_axis(axes, centers)
    figure.autofmt_xdate()
    charts.append(("Fallback rate per chain over time", _svg(figure)))
    plt.close(figure)

    rows = []
    for name, c in report["chains"].items():
        lat = c["latency_ms"]
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{c['requests']}</td>"
            f"<td>{c['success_rate']:.1%}</td><td>{c['fallback_rate']:.1%}</td>"
            f"<td>{lat['p50']}</td><td>{lat['p95']}</td><td>{lat['p99']}</td>"
            f"<td>{c['tokens_total']}</td><td>${c['cost_usd']:.4f}</td></tr>"
        )
    sections = "".join(
        f'<section class="chart"><h2>{html.escape(name)}</h2>{svg}</section>'
        for name, svg in charts
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "svg{max-width:100%;height:auto}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(lines)} requests</p>{sections}"
        "<h2>Chains</h2><table><tr><th>chain</th><th>requests</th><th>answered</th>"
        "<th>fell back</th><th>p50 ms (whole request)</th><th>p95 ms</th><th>p99 ms</th>"
        "<th>tokens</th>"
        f"<th>cost</th></tr>{''.join(rows)}</table></body></html>\n"
    )
