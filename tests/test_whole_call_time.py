"""``duration_ms``: the whole call, from entry to return, beside the winning attempt's
``latency_ms``; in the metadata, the request log, ``stats`` (which still reads lines
written before it existed) and the HTML report's readable clock times."""

from __future__ import annotations

import json
import re

from helpers import FakeClock, Scripted, Takes, chains_dir, run_cli

from engine import ExecutionMode, GenerationMeta, LLMManager, ProviderError
from engine.telemetry.stats import stats


def test_duration_covers_every_attempt_and_wait_while_latency_is_the_winners(tmp_path):
    clock = FakeClock()
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, claude]\n"})
    boom = ProviderError("down", code="503")
    manager = LLMManager(
        config={
            "chains_dir": str(folder),
            "providers": {
                "deepseek": Scripted(Takes(1.5, boom), clock=clock),
                "claude": Scripted(Takes(0.25, "ok"), clock=clock),
            },
        },
        runtime=clock.runtime(),
    )
    text, meta = manager.generate_response("hi")
    assert text == "ok" and meta.fallback_used
    assert meta.latency_ms == 250
    assert meta.duration_ms == 1750 + round(sum(clock.sleeps) * 1000)
    again = GenerationMeta.from_dict(meta.to_dict())
    assert again.duration_ms == meta.duration_ms


def test_the_log_line_and_stats_use_the_whole_call(tmp_path):
    clock = FakeClock()
    log = tmp_path / "t.jsonl"
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, claude]\n"})
    boom = ProviderError("down", code="503")
    manager = LLMManager(
        config={
            "chains_dir": str(folder),
            "telemetry": {"path": str(log)},
            "providers": {
                "deepseek": Scripted(*[Takes(1.0, boom)] * 4, clock=clock),
                "claude": Scripted(*[Takes(0.002, "ok")] * 4, clock=clock),
            },
        },
        runtime=clock.runtime(),
    )
    for _ in range(4):
        manager.generate_response("hi", mode=ExecutionMode.DIRECT)
    manager.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert all(line["latency_ms"] == 2 and line["duration_ms"] >= 1002 for line in lines)
    chain = stats(lines)["chains"]["direct"]["latency_ms"]
    assert chain["p50"] >= 1002  # not the winner's 2 ms
    # A line written before duration_ms existed is read by its latency_ms.
    old = dict(lines[0])
    del old["duration_ms"]
    assert stats([old])["chains"]["direct"]["latency_ms"]["p50"] == 2
    result = run_cli("stats", str(log))
    assert result.returncode == 0, result.stderr
    assert re.search(r"direct: 4 requests.*latency p50 1\d{3} ms", result.stdout)


def test_the_report_shows_clock_times_and_escapes_markup(tmp_path):
    from engine.telemetry.report import html_report

    base = {
        "v": 1, "request_id": "r", "chain": "direct", "mode": "direct",
        "final_state": "succeeded", "provider": "p", "model": "m", "latency_ms": 5,
        "duration_ms": 5, "tokens_in": 0, "tokens_out": 0, "tokens_total": 0,
        "cost_usd_est": None, "fallback_used": False, "fallback_reason": None,
        "error_category": None, "tags": {},
    }  # fmt: skip
    lines = []
    for i in range(30):
        attempt = {"provider": f"$\\frac{{a$ {i}", "model": "m", "status": "success",
                   "error_category": None, "error_code": None, "latency_ms": 5 + i,
                   "timestamp": "2026-01-01T12:00:00+00:00", "tokens_in": 0,
                   "tokens_out": 0, "tokens_total": 0, "cost_usd_est": None, "state": "s"}  # fmt: skip
        lines.append({**base, "ts": f"2026-01-01T12:00:{i:02d}.000+00:00", "attempts": [attempt]})
    page = html_report(lines)
    assert re.search(r">12:00:\d\d<", page)  # a readable clock time on the axis
    assert ".000000" not in page
    assert ">other<" in page  # many providers: the busiest by name, the rest as "other"
    assert "$\\frac{a$" in page.replace("\\$", "$")  # shown as written, not as mathematics
