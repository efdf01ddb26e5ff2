"""Reading a log is reading untrusted input: bounded memory and work whatever a file holds
(a gzip bomb, a line of hundreds of megabytes, a flood of newlines), bad lines counted and
skipped, names shown as text, and charts that stay readable with thousands of providers."""

from __future__ import annotations

import gzip
import json
import subprocess
import textwrap

from helpers import PYTHON, ROOT, run_cli

GOOD = {
    "v": 1, "ts": "2026-01-01T12:00:00.000+00:00", "request_id": "r", "chain": "direct",
    "mode": "direct", "final_state": "succeeded", "provider": "p", "model": "m",
    "latency_ms": 5, "duration_ms": 5, "tokens_in": 1, "tokens_out": 1, "tokens_total": 2,
    "cost_usd_est": None, "fallback_used": False, "fallback_reason": None,
    "error_category": None, "tags": {},
    "attempts": [{"provider": "p", "model": "m", "status": "success", "error_category": None,
                  "error_code": None, "latency_ms": 5, "timestamp": "2026-01-01T12:00:00+00:00",
                  "tokens_in": 1, "tokens_out": 1, "tokens_total": 2, "cost_usd_est": None,
                  "state": "p"}],
}  # fmt: skip
GOOD_LINE = json.dumps(GOOD) + "\n"


def _read_in_a_child(path) -> dict:
    """read_log in a fresh interpreter: what it read, and its peak memory (MB)."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.telemetry.read import read_log
        read = read_log([{str(path)!r}])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"lines": len(read.lines), "skipped": read.skipped,
                          "cut": read.cut_files, "peak_mb": peak}}))
        """
    )
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _baseline_mb() -> float:
    script = (
        f"import resource, sys; sys.path.insert(0, {str(ROOT)!r}); import engine.telemetry.read; "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return float(subprocess.run([PYTHON, "-c", script], capture_output=True, text=True).stdout)


def test_a_gzip_bomb_reads_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    zeros = b"0" * (1024 * 1024)
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(GOOD_LINE.encode())
        for _ in range(400):  # 400 MB of one line, a few hundred KB on disk
            handle.write(zeros)
    assert path.stat().st_size < 2 * 1024 * 1024
    read = _read_in_a_child(path)
    assert (read["lines"], read["skipped"]) == (1, 1)
    assert read["peak_mb"] < _baseline_mb() + 40


def test_a_huge_line_is_skipped_without_being_held(tmp_path):
    path = tmp_path / "long.jsonl"
    with open(path, "w") as handle:
        handle.write(GOOD_LINE)
        handle.write('{"x": "' + "y" * (200 * 1024 * 1024) + '"}\n')
        handle.write(GOOD_LINE)
    read = _read_in_a_child(path)
    assert (read["lines"], read["skipped"]) == (2, 1)
    assert read["peak_mb"] < _baseline_mb() + 40


def test_a_flood_of_newlines_is_read_quickly_and_skipped(tmp_path):
    path = tmp_path / "newlines.jsonl"
    with open(path, "wb") as handle:
        handle.write(GOOD_LINE.encode())
        for _ in range(200):
            handle.write(b"\n" * (1024 * 1024))
        handle.write(GOOD_LINE.encode())
    read = _read_in_a_child(path)
    assert (read["lines"], read["skipped"]) == (2, 0)


def test_lines_of_the_wrong_shape_are_counted_and_skipped(tmp_path):
    bad = [
        GOOD_LINE.replace('"latency_ms": 5,', '"latency_ms": NaN,', 1),
        GOOD_LINE.replace('"tokens_total": 2,', '"tokens_total": Infinity,', 1),
        GOOD_LINE.replace('"latency_ms": 5,', '"latency_ms": "slow",', 1),
        GOOD_LINE.replace('"chain": "direct"', '"chain": ["direct"]', 1),
        GOOD_LINE.replace('"attempts": [{', '"attempts": [7, {', 1),
        GOOD_LINE.replace('"ts": "2026-01-01T12:00:00.000+00:00"', '"ts": "yesterday"', 1),
        GOOD_LINE.replace('"latency_ms": 5,', '"latency_ms": -3,', 1),
        '"just a string"\n',
        "[1, 2, 3]\n",
        "{" * 100_000 + "\n",
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD_LINE + "".join(bad) + GOOD_LINE)
    result = run_cli("stats", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 2 and report["skipped_lines"] == len(bad)
    text = run_cli("stats", str(path))
    assert text.returncode == 0 and "Traceback" not in text.stderr


def test_names_are_printed_as_text(tmp_path):
    line = json.loads(GOOD_LINE)
    line["chain"] = "evil\n\x1b[31mred"
    line["attempts"][0]["provider"] = "p\rq"
    path = tmp_path / "names.jsonl"
    path.write_text(json.dumps(line) + "\n")
    result = run_cli("stats", str(path))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "evil\\n\\x1b[31mred" in result.stdout


def test_ten_thousand_providers_make_a_readable_report(tmp_path):
    lines = []
    for i in range(10_000):
        line = json.loads(GOOD_LINE)
        line["ts"] = f"2026-01-01T12:{i // 600:02d}:{(i // 10) % 60:02d}.000+00:00"
        line["attempts"][0]["provider"] = f"provider-{i}"
        line["chain"] = f"chain-{i % 50}"
        lines.append(json.dumps(line))
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report.html"
    result = run_cli("stats", str(path), "--html", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert ">other<" in page
    assert page.count("provider-") < 200  # the busiest few by name, then "other"
