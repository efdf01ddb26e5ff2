"""``torq-fallback stats --html report.html``: the page an on-call engineer opens first.

One self-contained HTML file (no script, no CDN; the charts are inline SVG drawn with
matplotlib, ``pip install 'torq-fallback[report]'``), in the order questions come:

1. what the page covers: the time range, the files, the lines skipped;
2. the headline figures: requests, answered, fell back, failed, p95, cost;
3. what needs attention: providers failing or skipped, chains with failed requests;
4. the providers table, then requests over time, each provider's outcomes and latency;
5. the chains table with the paths requests took, and each chain's fallback rate.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.telemetry.charts import charts, outcome_of
from engine.telemetry.stats import percentile, request_ms, stats

__all__ = ["html_report"]

_PATHS = 5  # paths shown per chain
_ROWS = 25  # providers, chains and sentences shown by name; the rest are counted in a line
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;"
    "color:#212121}h1{margin-bottom:0}.covers{color:#555;margin-top:.3em}"
    ".cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}"
    ".card b{display:block;font-size:1.6em}.bad b{color:#c62828}.warn b{color:#e65100}"
    ".attention li{margin:.2em 0}.ok{color:#2e7d32}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.95em}"
    "td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child,td.text{text-align:left}th{background:#f5f5f5}"
    "section.chart svg{width:100%;height:auto}"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _covers(lines: Sequence[dict[str, Any]], files: Sequence[str], skipped: int,
            dropped: int) -> str:  # fmt: skip
    if lines:
        times = sorted(datetime.fromisoformat(line["ts"]) for line in lines)
        first, last = times[0], times[-1]
        when = (f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC "
                f"({_span((last - first).total_seconds())})")  # fmt: skip
    else:
        when = "no request in the files read"
    parts = [f"{len(lines)} requests {when}"]
    if files:
        parts.append("read from " + ", ".join(files))
    if skipped:
        parts.append(f"{skipped} unreadable lines skipped")
    if dropped:
        parts.append(f"{dropped} lines dropped by the writer")
    return f'<p class="covers">{_e("; ".join(parts))}</p>'


def _cards(lines: Sequence[dict[str, Any]]) -> str:
    failed = sum(line.get("final_state") != "succeeded" for line in lines)
    fell = sum(bool(line.get("fallback_used")) for line in lines)
    total = len(lines)
    p95 = percentile([request_ms(line) for line in lines], 0.95)
    cost = sum(float(line.get("cost_usd_est") or 0) for line in lines)
    cards = [
        ("requests", f"{total}", ""),
        ("answered", _pct((total - failed) / total if total else None), ""),
        ("fell back", _pct(fell / total if total else None), "warn" if fell else ""),
        ("failed", f"{failed}", "bad" if failed else ""),
        ("p95 request", f"{_ms(p95)} ms", ""),
        ("cost (estimated)", f"${cost:.4f}", ""),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card {kind}"><b>{_e(value)}</b>{_e(name)}</div>'
        for name, value, kind in cards
    ) + "</div>"  # fmt: skip


def _codes(counter: Counter[str], most: int = 3) -> str:
    return ", ".join(f"{code} x{n}" for code, n in counter.most_common(most))


def _attention(lines: Sequence[dict[str, Any]]) -> str:
    """Plain sentences about what is failing, worst first."""
    tried: dict[str, int] = defaultdict(int)
    failed: dict[str, Counter[str]] = defaultdict(Counter)
    skipped: dict[str, Counter[str]] = defaultdict(Counter)
    chain_requests: dict[str, int] = defaultdict(int)
    chain_failed: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        chain = str(line.get("chain"))
        chain_requests[chain] += 1
        if line.get("final_state") != "succeeded":
            chain_failed[chain][str(line.get("final_state"))] += 1
        for attempt in line["attempts"]:
            name, outcome = str(attempt.get("provider")), outcome_of(attempt)
            if outcome.kind == "skipped":
                skipped[name][outcome.label.removeprefix("skipped: ")] += 1
                continue
            tried[name] += 1
            if outcome.kind != "success":
                failed[name][outcome.label] += 1
    items: list[tuple[float, str]] = []
    for chain, ends in chain_failed.items():
        n = sum(ends.values())
        items.append((2 + n / chain_requests[chain], f"chain {chain}: {n} of "
                      f"{chain_requests[chain]} requests failed ({_codes(ends)})"))  # fmt: skip
    for name, codes in failed.items():
        n = sum(codes.values())
        items.append((1 + n / tried[name], f"{name}: {n} of {tried[name]} attempts failed "
                      f"({_codes(codes)})"))  # fmt: skip
    for name, reasons in skipped.items():
        n = sum(reasons.values())
        items.append((n / (n + tried[name]), f"{name}: skipped {n} times without a call "
                      f"({_codes(reasons)})"))  # fmt: skip
    if not items:
        return '<p class="attention ok">Nothing failed and nothing was skipped.</p>'
    items.sort(key=lambda item: -item[0])
    shown = "".join(f"<li>{_e(text)}</li>" for _, text in items[:_ROWS])
    more = f"<li>{len(items) - _ROWS:,} more</li>" if len(items) > _ROWS else ""
    return f'<ul class="attention">{shown}{more}</ul>'


def _providers_table(lines: Sequence[dict[str, Any]], report: dict[str, Any]) -> str:
    failures: dict[str, Counter[str]] = defaultdict(Counter)
    skips: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        for attempt in line["attempts"]:
            name, outcome = str(attempt.get("provider")), outcome_of(attempt)
            if outcome.kind == "skipped":
                skips[name][outcome.label.removeprefix("skipped: ")] += 1
            elif outcome.kind != "success":
                failures[name][outcome.label] += 1
    rows = []
    busiest = sorted(report["providers"].items(), key=lambda item: (-item[1]["attempts"], item[0]))
    for name, p in busiest[:_ROWS]:
        lat = p["latency_ms"]
        tried = p["attempts"] - p["skipped"]
        failed = sum(failures[name].values())
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{p['attempts']}</td><td>{tried - failed}</td>"
            f"<td>{failed}</td><td>{p['skipped']}</td><td>{_pct(p['success_rate'])}</td>"
            f"<td>{_ms(lat['p50'])}</td><td>{_ms(lat['p95'])}</td><td>{_ms(lat['p99'])}</td>"
            f'<td class="text">{_e(_codes(failures[name]) or "-")}</td>'
            f'<td class="text">{_e(_codes(skips[name]) or "-")}</td>'
            f"<td>{p['tokens_in'] + p['tokens_out']}</td><td>${p['cost_usd']:.4f}</td></tr>"
        )
    return (
        '<table id="providers"><tr><th>provider</th><th>attempts</th><th>succeeded</th>'
        "<th>failed</th><th>skipped</th><th>success rate</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>p99 ms</th><th>failures</th><th>skipped because</th><th>tokens</th><th>cost</th>"
        "</tr>" + "".join(rows) + _more(busiest[_ROWS:], "providers", "attempts", 13)
        + "</table>"
    )  # fmt: skip


def _more(rest: Sequence[tuple[str, dict[str, Any]]], what: str, count: str, columns: int) -> str:
    """The row that stands for the rows not shown (the least busy)."""
    if not rest:
        return ""
    total = sum(int(item[count]) for _, item in rest)
    return (f'<tr><td class="text" colspan="{columns}">{len(rest):,} more {what}, '
            f"{total:,} {count} in all (see stats --json)</td></tr>")  # fmt: skip


def _path(line: dict[str, Any]) -> str:
    """The steps a request went through and how each ended: ``deepseek (provider_error:503)
    -> claude (success) -> succeeded``."""
    steps = [
        f"{attempt.get('state')} ({outcome_of(attempt).label})"
        for attempt in line["attempts"]
        if not attempt.get("hedge")
    ]
    return " -> ".join([*steps, str(line.get("final_state"))])


def _chains_table(lines: Sequence[dict[str, Any]], report: dict[str, Any]) -> str:
    paths: dict[str, Counter[str]] = defaultdict(Counter)
    for line in lines:
        paths[str(line.get("chain"))][_path(line)] += 1
    rows = []
    busiest = sorted(report["chains"].items(), key=lambda item: (-item[1]["requests"], item[0]))
    for name, c in busiest[:_ROWS]:
        lat = c["latency_ms"]
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{c['requests']}</td><td>{_pct(c['success_rate'])}</td>"
            f"<td>{_pct(c['fallback_rate'])}</td><td>{_ms(lat['p50'])}</td>"
            f"<td>{_ms(lat['p95'])}</td><td>{_ms(lat['p99'])}</td><td>{c['tokens_total']}</td>"
            f"<td>${c['cost_usd']:.4f}</td></tr>"
        )
    table = (
        '<table id="chains"><tr><th>chain</th><th>requests</th><th>answered</th>'
        "<th>fell back</th><th>p50 ms (whole request)</th><th>p95 ms</th><th>p99 ms</th>"
        "<th>tokens</th><th>cost</th></tr>" + "".join(rows)
        + _more(busiest[_ROWS:], "chains", "requests", 9) + "</table>"
    )  # fmt: skip
    taken = []
    for name, counter in sorted(paths.items(), key=lambda kv: (-kv[1].total(), kv[0]))[:_ROWS]:
        total = sum(counter.values())
        for path, n in counter.most_common(_PATHS):
            taken.append(f'<tr><td>{_e(name)}</td><td class="text">{_e(path)}</td>'
                         f"<td>{n}</td><td>{n / total:.0%}</td></tr>")  # fmt: skip
    return table + (
        "<h3>Paths taken</h3>"
        '<table id="paths"><tr><th>chain</th><th>path (each step, and how it ended)</th>'
        "<th>requests</th><th>share</th></tr>" + "".join(taken) + "</table>"
    )


def html_report(
    lines: Sequence[dict[str, Any]],
    title: str = "torq-fallback report",
    *,
    files: Sequence[str] = (),
    skipped: int = 0,
    dropped: int = 0,
) -> str:
    """The report for log ``lines`` (read from ``files``, with ``skipped`` unreadable lines
    and ``dropped`` lines the writer could not write), as one HTML document."""
    report = stats(lines)
    drawn = {key: (name, svg) for key, name, svg in charts(lines)} if lines else {}

    def chart(key: str) -> str:
        if key not in drawn:
            return ""
        name, svg = drawn[key]
        return f'<section class="chart" id="chart-{key}"><h2>{_e(name)}</h2>{svg}</section>'

    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>{_covers(lines, files, skipped, dropped)}{_cards(lines)}"
        f"<h2>Needs attention</h2>{_attention(lines)}"
        f"<h2>Providers</h2>{_providers_table(lines, report)}"
        f"{chart('requests')}{chart('outcomes')}{chart('latency')}"
        f"<h2>Chains</h2>{_chains_table(lines, report)}{chart('fallback')}"
        "</body></html>\n"
    )
