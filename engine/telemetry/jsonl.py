"""The durable attempt log: one JSON line per request, appended by a background writer.

Requests never wait on the disk: :meth:`JsonlSink.handle` puts the finished request on a
bounded queue and returns; a writer thread formats and appends lines. Each batch of whole
lines is one ``write()`` on a file opened with ``O_APPEND``, so threads, event loops and
processes appending to one file never interleave or tear each other's lines. When the
queue is full the line is dropped and counted (``dropped``), never waited for.

Rotation is by size: past ``max_bytes`` the file becomes ``.1`` (``.1`` becomes ``.2``, ...,
``backups`` kept) under an exclusive lock on ``PATH.lock``, and every writer notices the new
file before its next batch. Lines are flushed on :meth:`close` and at interpreter exit;
after ``kill -9`` at most what was still queued is lost, and a torn last line is reported
and skipped by the reader (:mod:`engine.telemetry.read`).

No prompt or answer text is kept unless ``include_text``; never a secret (the metadata has
none, and its messages are redacted at the source).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import queue
import threading
import weakref
from pathlib import Path
from typing import Any, Final

from .events import Event, RequestFinished

__all__ = ["SCHEMA_VERSION", "JsonlSink", "line_for", "line_schema"]

#: The version of the line format (``v`` in every line).
SCHEMA_VERSION: Final = 1
_ATTEMPT_KEYS: Final = (
    "provider", "model", "status", "error_category", "error_code", "latency_ms", "timestamp",
    "tokens_in", "tokens_out", "tokens_total", "cost_usd_est", "category", "state", "retry",
    "next", "http_status", "retry_after_ms", "ttft_ms", "chunks", "truncated", "retry_in_ms",
    "retry_refused",
)  # fmt: skip
_STOP: Final = object()


def line_for(event: RequestFinished, include_text: bool = False) -> dict[str, Any]:
    """The log line of one finished request (see ``torq-fallback schema --telemetry``)."""
    meta = event.meta
    line: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "ts": event.field("timestamp"),
        "request_id": event.field("request_id"),
        "chain": event.chain,
        "mode": event.mode,
        "final_state": event.final_state,
        "provider": meta["provider"],
        "model": meta["model"],
        "latency_ms": meta["latency_ms"],
        "duration_ms": meta.get("duration_ms", 0),
        "tokens_in": meta["tokens_in"],
        "tokens_out": meta["tokens_out"],
        "tokens_total": meta["tokens_total"],
        "cost_usd_est": meta["cost_usd_est"],
        "fallback_used": meta["fallback_used"],
        "fallback_reason": meta["fallback_reason"],
        "error_category": meta["error_category"],
        "truncated": meta.get("truncated", False),
        "tags": meta.get("tags", {}),
        "attempts": [{k: a[k] for k in _ATTEMPT_KEYS if k in a} for a in meta["provider_attempts"]],
    }
    if include_text:
        line["prompt"] = event.prompt
        line["answer"] = event.answer
    return line


def line_schema() -> dict[str, Any]:
    """JSON Schema of a log line (``torq-fallback schema --telemetry``)."""
    nullable_str = {"type": ["string", "null"]}
    nullable_int = {"type": ["integer", "null"]}
    attempt = {
        "type": "object",
        "required": ["provider", "model", "status", "error_category", "error_code",
                     "latency_ms", "timestamp", "tokens_in", "tokens_out", "tokens_total",
                     "cost_usd_est"],
        "properties": {
            "provider": {"type": "string"},
            "model": nullable_str,
            "status": {"enum": ["success", "failed", "skipped"]},
            "error_category": nullable_str,
            "error_code": nullable_str,
            "latency_ms": {"type": "integer"},
            "timestamp": {"type": "string", "format": "date-time"},
            "tokens_in": {"type": "integer"},
            "tokens_out": {"type": "integer"},
            "tokens_total": {"type": "integer"},
            "cost_usd_est": {"type": ["number", "null"]},
            "category": {"type": "string"},
            "state": {"type": "string"},
            "retry": {"type": "integer"},
            "next": {"type": "string"},
            "http_status": nullable_int,
        },
    }  # fmt: skip
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "torq-fallback request log line",
        "description": "One line per request in the JSONL log (format version 1).",
        "type": "object",
        "required": ["v", "ts", "request_id", "chain", "mode", "final_state", "provider",
                     "model", "latency_ms", "tokens_in", "tokens_out", "tokens_total",
                     "cost_usd_est", "fallback_reason", "tags", "attempts"],
        "properties": {
            "v": {"const": SCHEMA_VERSION},
            "ts": {"type": "string", "format": "date-time"},
            "request_id": {"type": "string"},
            "chain": {"type": "string"},
            "mode": {"type": "string"},
            "final_state": {"enum": ["succeeded", "exhausted", "aborted"]},
            "provider": nullable_str,
            "model": nullable_str,
            "latency_ms": {"type": "integer"},
            "duration_ms": {"type": "integer", "description": "The whole call (every attempt,"
                            " backoff and wait); lines written before it was added lack it."},
            "tokens_in": {"type": "integer"},
            "tokens_out": {"type": "integer"},
            "tokens_total": {"type": "integer"},
            "cost_usd_est": {"type": ["number", "null"]},
            "fallback_used": {"type": "boolean"},
            "fallback_reason": nullable_str,
            "error_category": nullable_str,
            "truncated": {"type": "boolean"},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "attempts": {"type": "array", "minItems": 1, "items": attempt},
            "prompt": nullable_str,
            "answer": nullable_str,
        },
    }  # fmt: skip


_OPEN: weakref.WeakSet[JsonlSink] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for sink in list(_OPEN):
        sink.close()


class JsonlSink:
    """Appends one line per finished request to ``path`` (see the module docstring)."""

    #: Only finished requests make lines: the engine builds no other event for this sink.
    events = (RequestFinished,)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 50 * 1024 * 1024,
        backups: int = 5,
        include_text: bool = False,
        queue_size: int = 65536,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.include_text = include_text
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="torq-telemetry", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handle(self, event: Event) -> None:
        """Queue a finished request's line (other events are not logged); never blocks."""
        if not isinstance(event, RequestFinished) or self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 512:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [e for e in batch if e is not _STOP]
            if events:
                self._write(events)
            for _ in batch:
                self._queue.task_done()
            if len(events) != len(batch):
                return

    def _write(self, events: list[RequestFinished]) -> None:
        data = "".join(
            json.dumps(line_for(e, self.include_text), separators=(",", ":"), default=str) + "\n"
            for e in events
        ).encode()
        self._follow_rotation()
        os.write(self._fd, data)  # one write of whole lines: O_APPEND keeps them whole
        self.written += len(events)
        if os.fstat(self._fd).st_size > self.max_bytes:
            self._rotate()

    def _follow_rotation(self) -> None:
        """Another process rotated the file: write to the new one."""
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = -1
        if current != os.fstat(self._fd).st_ino:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
        with open(str(self.path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_size <= self.max_bytes:
                    return  # another process rotated it meanwhile
                for index in range(self.backups - 1, 0, -1):
                    older = Path(f"{self.path}.{index}")
                    if older.exists():
                        older.replace(f"{self.path}.{index + 1}")
                if self.backups > 0:
                    self.path.replace(f"{self.path}.1")
                else:
                    self.path.unlink()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = self._open()

    def flush(self) -> None:
        """Wait until every queued line is written."""
        if not self._closed:
            self._queue.join()

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(10)
        os.close(self._fd)
        _OPEN.discard(self)
