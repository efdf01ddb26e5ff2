"""The durable request log and what reads it: one line per request over real requests,
threads + asyncio tasks + processes appending to one file, kill -9 mid-load, rotation,
failing sinks, the schema, and `torq-fallback stats`."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jsonschema
import pytest
from helpers import ROOT, Scripted, chains_dir, run_cli

from engine import LLMManager, ProviderError
from engine.telemetry.jsonl import line_schema
from engine.telemetry.read import read_log
from engine.tools.simulator import Behaviour, Script, Simulator, fake_key


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_request_over_real_http(tmp_path, monkeypatch):
    log = tmp_path / "log" / "torq.jsonl"
    script = {"deepseek": [Behaviour("rate_limit")], "openai": [Behaviour("answer", text="4")]}
    with Simulator(Script(script, cycle=True)) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TORQ_TELEMETRY_PATH", str(log))
        with LLMManager() as manager:
            for _ in range(3):
                manager.generate_response("What is 2+2?")
            manager.chat([{"role": "user", "content": "hi"}], tags={"team": "qa"})
    lines = lines_of(log)
    assert len(lines) == 4
    schema = line_schema()
    for line in lines:
        jsonschema.validate(line, schema)
        assert line["chain"] == "direct" and line["final_state"] == "succeeded"
        assert [a["error_code"] for a in line["attempts"]] == ["429", None]
        assert line["fallback_reason"] == "provider_error:429"
        assert "prompt" not in line and "answer" not in line  # no text unless asked
    assert lines[-1]["tags"] == {"team": "qa"}
    text = log.read_text()
    assert "What is 2+2" not in text and fake_key("deepseek") not in text


def test_text_is_kept_only_when_asked(tmp_path):
    log = tmp_path / "t.jsonl"
    manager = LLMManager(config={"providers": {"claude": Scripted("four")},
                                 "telemetry": {"path": str(log), "include_text": True}})  # fmt: skip
    manager.generate_response("2+2?", provider="claude")
    manager.close()
    (line,) = lines_of(log)
    assert (line["prompt"], line["answer"]) == ("2+2?", "four")


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, threading
    sys.path.insert(0, {root!r})
    from engine import LLMManager

    class Fast:
        def generate_response(self, *, prompt, timeout):
            return "ok"

    m = LLMManager(config={{"providers": {{"claude": Fast()}},
                           "telemetry": {{"path": sys.argv[1]}}}})
    n = int(sys.argv[2])

    def thread_work():
        for _ in range(n):
            m.generate_response("hi", provider="claude")

    threads = [threading.Thread(target=thread_work) for _ in range(4)]
    for t in threads: t.start()

    async def tasks():
        await asyncio.gather(*(m.agenerate_response("hi", provider="claude") for _ in range(n)))

    asyncio.run(tasks())
    for t in threads: t.join()
    if sys.argv[3] == "hang":
        print("ready", flush=True)
        while True:
            m.generate_response("hi", provider="claude")
    m.close()
    """
)


def test_threads_tasks_and_processes_share_one_file_without_torn_lines(tmp_path):
    log = tmp_path / "shared.jsonl"
    script = _WRITER.format(root=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(log), "250", "done"]) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(120) == 0
    raw = log.read_text()
    assert raw.endswith("\n")
    lines = raw.splitlines()
    assert len(lines) == 2 * (4 * 250 + 250)  # every request, once
    for line in lines:
        json.loads(line)  # every line whole


def test_kill_9_mid_load_leaves_a_readable_file(tmp_path):
    log = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER.format(root=str(ROOT)), str(log), "50", "hang"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    with open(log, "ab") as handle:
        handle.write(b'{"v": 1, "ts": "2026-')  # as if torn mid-line
    read = read_log([log])
    assert len(read.lines) >= 250 and read.skipped == 1
    result = run_cli("stats", str(log))
    assert result.returncode == 0 and "1 torn or unreadable line(s) skipped" in result.stdout


def test_rotation_keeps_the_newest_files(tmp_path):
    log = tmp_path / "rot.jsonl"
    manager = LLMManager(config={"providers": {"claude": Scripted(*["ok"] * 400)},
                                 "telemetry": {"path": str(log), "max_bytes": 4096, "backups": 2}})  # fmt: skip
    for index in range(400):
        manager.generate_response("hi", provider="claude")
        if index % 50 == 0:
            manager.telemetry.flush()
    manager.close()
    files = sorted(
        p.name
        for p in tmp_path.iterdir()
        if p.name.startswith("rot.jsonl") and not p.name.endswith(".lock")
    )
    assert files == ["rot.jsonl", "rot.jsonl.1", "rot.jsonl.2"]
    for name in files:
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line)
    assert manager.telemetry.written == 400 and manager.telemetry.dropped == 0


def test_a_failing_sink_never_fails_a_request(caplog):
    class Broken:
        def handle(self, event):
            raise RuntimeError("disk on fire")

    manager = LLMManager(config={"providers": {"claude": Scripted(*["ok"] * 5)}})
    manager.add_sink(Broken())
    for _ in range(5):
        text, meta = manager.generate_response("hi", provider="claude")
        assert text == "ok" and meta.error is None
    assert manager._executor.sinks.failures == 15  # started, attempt, finished x 5
    assert len([r for r in caplog.records if "telemetry sink" in r.getMessage()]) == 1


def test_stats_reads_plain_rotated_and_gzipped_logs(tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, claude]\n"})
    log = tmp_path / "s.jsonl"
    boom = ProviderError("down", code="503")
    manager = LLMManager(config={
        "chains_dir": str(folder), "telemetry": {"path": str(log)},
        "providers": {"deepseek": Scripted(boom, "ok", boom, "ok"), "claude": Scripted(*["ok"] * 4)},
    })  # fmt: skip
    for _ in range(4):
        manager.generate_response("hi")
    manager.close()
    gz = tmp_path / "s.jsonl.1.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    result = run_cli("stats", str(log), str(gz), "--json")
    report = json.loads(result.stdout)
    assert report["requests"] == 8
    direct = report["chains"]["direct"]
    assert (direct["success_rate"], direct["fallback_rate"]) == (1.0, 0.5)
    assert dict((p, n) for p, n in direct["top_paths"]) == {
        "deepseek -> succeeded": 4, "deepseek -> claude -> succeeded": 4}  # fmt: skip
    assert report["providers"]["deepseek"]["top_error_codes"] == [["provider_error:503", 4]]
    text = run_cli("stats", str(log), "--chain", "direct").stdout
    assert "4 requests" in text and "50.0% fell back" in text


def test_schema_telemetry_is_published():
    result = run_cli("schema", "--telemetry")
    schema = json.loads(result.stdout)
    assert schema["title"] == "torq-fallback request log line"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("n", [200])
def test_async_bursts_drop_nothing(tmp_path, n):
    log = tmp_path / "burst.jsonl"
    manager = LLMManager(config={"providers": {"claude": Scripted(*["ok"] * n)},
                                 "telemetry": {"path": str(log)}})  # fmt: skip

    async def go():
        await asyncio.gather(
            *(manager.agenerate_response("hi", provider="claude") for _ in range(n))
        )
        await manager.aclose()

    asyncio.run(go())
    assert len(log.read_text().splitlines()) == n and manager.telemetry.dropped == 0
    threading.enumerate()


def test_opentelemetry_spans_follow_the_genai_conventions(monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    script = {"deepseek": [Behaviour("server_error")], "openai": [Behaviour("answer", text="4")]}
    with Simulator(Script(script)) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        with LLMManager() as manager:
            manager.enable_opentelemetry(provider)
            manager.generate_response("2+2?")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"chain direct", "chat deepseek-chat", "chat gpt-4.1-mini"}
    parent = spans["chain direct"]
    failed, answered = spans["chat deepseek-chat"], spans["chat gpt-4.1-mini"]
    for child in (failed, answered):
        assert child.parent.span_id == parent.context.span_id
        assert child.kind.name == "CLIENT"
        assert child.attributes["gen_ai.operation.name"] == "chat"
        assert child.attributes["server.address"] == "127.0.0.1"
        assert child.attributes["server.port"] == sim.port
    assert failed.attributes["error.type"] == "500" and failed.attributes["torq.next"] == "openai"
    assert failed.attributes["gen_ai.provider.name"] == "deepseek"
    assert answered.attributes["gen_ai.response.model"] == "gpt-4.1-mini"
    assert answered.attributes["gen_ai.usage.input_tokens"] == 12
    assert parent.attributes["torq.final_state"] == "succeeded"


def test_prometheus_metrics_with_bounded_labels():
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    boom = ProviderError("down", code="503")
    manager = LLMManager(
        config={"providers": {"deepseek": Scripted(*[boom] * 6), "openai": Scripted(*["ok"] * 6)}}
    )
    manager.enable_prometheus(registry)
    for _ in range(6):
        manager.generate_response("hi")
    text = generate_latest(registry).decode()
    assert 'torq_requests_total{chain="direct",final_state="succeeded"} 6.0' in text
    assert (
        'torq_attempts_total{category="retryable",chain="direct",code="503",provider="deepseek",status="failed"} 5.0'
        in text
    )
    assert 'code="circuit_open",provider="deepseek",status="skipped"} 1.0' in text
    assert 'torq_breaker_state{breaker="deepseek"} 2.0' in text
    assert "torq_attempt_latency_seconds_bucket" in text


def test_render_traffic_annotates_edges_and_steps_deterministically(tmp_path):
    folder = chains_dir(tmp_path, {"direct": "steps: [deepseek, claude]\n"})
    log = tmp_path / "t.jsonl"
    boom = ProviderError("down", code="503")
    manager = LLMManager(config={
        "chains_dir": str(folder), "telemetry": {"path": str(log)},
        "providers": {"deepseek": Scripted(boom, "ok", "ok", "ok"), "claude": Scripted("ok")},
    })  # fmt: skip
    for _ in range(4):
        manager.generate_response("hi")
    manager.close()
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = run_cli(
            "render",
            "--chains",
            str(folder),
            "--traffic",
            str(log),
            "--format",
            "dot",
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        outputs.append((out / "direct.dot").read_text())
    dot = outputs[0]
    assert outputs[0] == outputs[1]  # the same log, the same bytes
    assert 'deepseek -> succeeded [label="success  x3 (75%)"' in dot
    assert 'deepseek -> claude [label="retryable  x1 (25%)"' in dot
    assert "75% ok of 4, p95" in dot and "100% ok of 1" in dot
    assert "penwidth=6.00" in dot  # the busiest edge is the thickest
