"""What the log says: per provider and per chain, requests, success and fallback rates,
latency percentiles, top error codes, tokens and cost, and the most frequent paths."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["percentile", "request_ms", "stats", "stats_text"]


def request_ms(line: dict[str, Any]) -> float:
    """How long a logged request took, whole: ``duration_ms`` (every attempt, backoff and
    wait), or, in lines written before it existed, ``latency_ms``."""
    value = line.get("duration_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(line.get("latency_ms") or 0)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return float(ordered[index])


def _latency(values: list[float]) -> dict[str, float | None]:
    return {f"p{p}": percentile(values, p / 100) for p in (50, 95, 99)}


def stats(lines: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates of log lines (``torq-fallback stats --json`` prints this)."""
    providers: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"attempts": 0, "successes": 0, "skipped": 0, "rejected": 0, "latencies": [],
                 "codes": Counter(), "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    )  # fmt: skip
    chains: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "succeeded": 0, "fallbacks": 0, "latencies": [],
                 "paths": Counter(), "codes": Counter(), "cost_usd": 0.0, "tokens_total": 0,
                 "hedged": 0, "hedge_wins": 0, "hedges": 0}
    )  # fmt: skip
    for line in lines:
        c = chains[str(line.get("chain"))]
        c["requests"] += 1
        c["succeeded"] += line.get("final_state") == "succeeded"
        c["fallbacks"] += bool(line.get("fallback_used"))
        c["latencies"].append(request_ms(line))
        c["tokens_total"] += int(line.get("tokens_total") or 0)
        c["cost_usd"] += float(line.get("cost_usd_est") or 0)
        copies = [a for a in line["attempts"] if a.get("hedge")]  # sent after the attempt
        if copies:
            c["hedged"] += 1
            c["hedges"] += len(copies)
            c["hedge_wins"] += any(a.get("status") == "success" for a in copies)
        path = " -> ".join(str(a.get("state")) for a in line["attempts"] if not a.get("hedge"))
        c["paths"][f"{path} -> {line.get('final_state')}"] += 1
        for attempt in line["attempts"]:
            p = providers[str(attempt.get("provider"))]
            p["attempts"] += 1
            p["successes"] += attempt.get("status") == "success"
            p["skipped"] += attempt.get("status") == "skipped"
            p["rejected"] += attempt.get("error_code") == "answer_rejected"
            if attempt.get("status") != "skipped":
                p["latencies"].append(float(attempt.get("latency_ms") or 0))
            if attempt.get("error_code"):
                code = f"{attempt.get('error_category')}:{attempt['error_code']}"
                p["codes"][code] += 1
                c["codes"][code] += 1
            p["tokens_in"] += int(attempt.get("tokens_in") or 0)
            p["tokens_out"] += int(attempt.get("tokens_out") or 0)
            p["cost_usd"] += float(attempt.get("cost_usd_est") or 0)
    out: dict[str, Any] = {"requests": len(lines), "providers": {}, "chains": {}}
    for name, p in sorted(providers.items()):
        tried = p["attempts"] - p["skipped"]
        out["providers"][name] = {
            "attempts": p["attempts"],
            "skipped": p["skipped"],
            # Answers that came back but did not count (accept rules): paid for, not used.
            "answers_rejected": p["rejected"],
            "success_rate": p["successes"] / tried if tried else None,
            "latency_ms": _latency(p["latencies"]),
            "top_error_codes": p["codes"].most_common(5),
            "tokens_in": p["tokens_in"],
            "tokens_out": p["tokens_out"],
            "cost_usd": round(p["cost_usd"], 6),
        }
    for name, c in sorted(chains.items()):
        out["chains"][name] = {
            "requests": c["requests"],
            "success_rate": c["succeeded"] / c["requests"],
            "fallback_rate": c["fallbacks"] / c["requests"],
            # Requests that sent a hedged copy, the copies sent, and the requests a copy won.
            "hedge_rate": c["hedged"] / c["requests"],
            "hedges_sent": c["hedges"],
            "hedge_wins": c["hedge_wins"],
            "latency_ms": _latency(c["latencies"]),
            "top_error_codes": c["codes"].most_common(5),
            "top_paths": c["paths"].most_common(5),
            "tokens_total": c["tokens_total"],
            "cost_usd": round(c["cost_usd"], 6),
        }
    return out


def _name(value: str) -> str:
    """A name from the log, printed as text: control characters shown as escapes."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def stats_text(report: dict[str, Any]) -> str:
    """The report as people read it."""
    lines = [f"{report['requests']} requests"]
    lines.append("chains:")
    for name, c in report["chains"].items():
        lat = c["latency_ms"]
        lines.append(
            f"  {_name(name)}: {c['requests']} requests, {_pct(c['success_rate'])} answered, "
            f"{_pct(c['fallback_rate'])} fell back; latency p50 {_ms(lat['p50'])}, "
            f"p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}; {c['tokens_total']} tokens, "
            f"${c['cost_usd']:.4f}"
            + (
                f"; {_pct(c['hedge_rate'])} hedged ({c['hedges_sent']} copies sent, "
                f"{c['hedge_wins']} won by a copy)"
                if c.get("hedges_sent")
                else ""
            )
        )
        for path, count in c["top_paths"]:
            lines.append(f"      {count:>6}  {_name(path)}")
        for code, count in c["top_error_codes"]:
            lines.append(f"      {count:>6}  {_name(code)}")
    lines.append("providers:")
    for name, p in report["providers"].items():
        lat = p["latency_ms"]
        codes = ", ".join(f"{_name(code)} x{n}" for code, n in p["top_error_codes"]) or "no errors"
        rejected = p.get("answers_rejected", 0)
        shown = f", {rejected} answers rejected" if rejected else ""
        lines.append(
            f"  {_name(name)}: {p['attempts']} attempts ({p['skipped']} skipped{shown}), "
            f"{_pct(p['success_rate'])} succeeded; latency p50 {_ms(lat['p50'])}, "
            f"p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}; {codes}"
        )
    return "\n".join(lines)
