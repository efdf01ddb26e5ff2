"""The request log never hurts a request: wherever TORQ_TELEMETRY_PATH points (a
directory, a place nothing can be created, a FIFO, /dev/full, a symlink, a file-size
limit), construction, requests, close() and exit go on; the problem is warned once and
lost lines are counted, in the file (for stats) and in Prometheus. Rotation by several
processes loses nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import PYTHON, ROOT, Scripted, run_cli

from engine import LLMManager
from engine.telemetry.read import read_log


def _manager(path, **telemetry) -> LLMManager:
    return LLMManager(
        config={
            "providers": {"claude": Scripted(*["ok"] * 500)},
            "telemetry": {"path": str(path), **telemetry},
        }
    )


def _places(tmp_path):
    folder = tmp_path / "a-directory"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "elsewhere.txt"
    target.write_text("not a log\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return {
        "directory": (folder, target),
        "uncreatable": ("/proc/torq-test/log.jsonl", target),
        "under-a-file": (blocker / "log.jsonl", target),
        "fifo": (fifo, target),
        "dev-full": ("/dev/full", target),
        "symlink": (link, target),
    }


@pytest.mark.parametrize(
    "place", ["directory", "uncreatable", "under-a-file", "fifo", "dev-full", "symlink"]
)
def test_a_log_that_cannot_be_written_never_fails_a_request(tmp_path, caplog, place):
    path, untouched = _places(tmp_path)[place]
    caplog.set_level(logging.WARNING, logger="engine.telemetry")
    manager = _manager(path)  # never raises, never blocks
    for _ in range(5):
        text, meta = manager.generate_response("hi", provider="claude")
        assert text == "ok" and meta.error is None
    manager.telemetry.flush()
    dropped = manager.telemetry.dropped
    manager.close()
    assert dropped == 5
    warnings = [r for r in caplog.records if r.name == "engine.telemetry"]
    assert len(warnings) == 1 and "dropped and counted" in warnings[0].getMessage()
    assert untouched.read_text() == "not a log\n"  # a symlink is never followed


_LIMITED = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, {root!r})
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
    from engine import LLMManager

    class Fast:
        def generate_response(self, *, prompt, timeout):
            return "ok"

    m = LLMManager(config={{"providers": {{"claude": Fast()}},
                           "telemetry": {{"path": sys.argv[1]}}}})
    for _ in range(300):
        assert m.generate_response("hi", provider="claude")[0] == "ok"
    m.telemetry.flush()
    print(json.dumps({{"written": m.telemetry.written, "dropped": m.telemetry.dropped}}))
    """
)


def test_a_file_size_limit_drops_lines_and_exit_does_not_hang(tmp_path):
    path = tmp_path / "limited.jsonl"
    result = subprocess.run(
        [PYTHON, "-c", _LIMITED.format(root=str(ROOT)), str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["written"] + counts["dropped"] == 300 and counts["dropped"] > 0
    assert "dropped and counted" in result.stderr
    assert path.stat().st_size <= 8192


def test_dropped_lines_are_noted_in_the_log_for_stats(tmp_path):
    path = tmp_path / "small-queue.jsonl"
    manager = _manager(path, max_bytes=1 << 30)
    manager.telemetry._queue.maxsize = 1  # a writer that cannot keep up
    for _ in range(300):
        manager.generate_response("hi", provider="claude")
    manager.telemetry._queue.maxsize = 0
    manager.generate_response("hi", provider="claude")  # the next line notes the loss
    manager.telemetry.flush()
    dropped, written = manager.telemetry.dropped, manager.telemetry.written
    manager.close()
    assert dropped > 0 and dropped + written == 301
    read = read_log([path])
    assert read.dropped == dropped and len(read.lines) == written
    result = run_cli("stats", str(path))
    assert f"({dropped} request(s) not logged" in result.stdout


def test_prometheus_shows_the_dropped_lines(tmp_path):
    prometheus = pytest.importorskip("prometheus_client")
    registry = prometheus.CollectorRegistry()
    manager = _manager(tmp_path / "a-directory-" / "..")  # not a regular file
    manager.enable_prometheus(registry)
    manager.generate_response("hi", provider="claude")
    manager.telemetry.flush()
    manager.close()
    assert registry.get_sample_value("torq_log_lines_dropped") == 1.0


_ROTATOR = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from engine import LLMManager

    class Fast:
        def generate_response(self, *, prompt, timeout):
            return "ok"

    m = LLMManager(config={{"providers": {{"claude": Fast()}},
                           "telemetry": {{"path": sys.argv[1], "max_bytes": 1024,
                                          "backups": 10000}}}})
    for _ in range(int(sys.argv[2])):
        m.generate_response("hi", provider="claude")
        time.sleep(0.001)  # small batches: many rotations, racing the other processes
    m.close()
    print(m.telemetry.dropped)
    """
)


def test_several_processes_rotating_one_log_lose_no_line(tmp_path):
    path = tmp_path / "shared.jsonl"
    per_process = 400
    command = [PYTHON, "-c", _ROTATOR.format(root=str(ROOT)), str(path), str(per_process)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    workers = [subprocess.Popen(command, **pipes) for _ in range(3)]
    dropped = 0
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        dropped += int(out)
    files = sorted(tmp_path.glob("shared.jsonl*"))
    files = [f for f in files if not f.name.endswith(".lock")]
    read = read_log(files)
    assert len(files) >= 3  # it rotated
    assert dropped == 0 and read.skipped == 0
    assert len(read.lines) == 3 * per_process


def test_python_ignores_sigxfsz_so_a_size_limit_is_an_error_not_a_kill():
    # What the file-size test relies on: CPython ignores SIGXFSZ at start-up.
    script = "import signal; print(signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "True"
