"""The durable attempt log: one JSON line per request, appended by a background writer.

Requests never wait on the disk: `JsonlSink.handle` puts the finished request on a
bounded queue and returns; a writer thread formats and appends lines. Each batch of whole
lines is one ``write()`` on a file opened with ``O_APPEND``, so threads, event loops and
processes appending to one file never interleave or tear each other's lines. When the
queue is full the line is dropped and counted (``dropped``), never waited for.

The log can never hurt a request: see `JsonlSink` for what happens when the file
cannot be opened or written.

Rotation is by size: past ``max_bytes`` the file becomes ``.1`` (``.1`` becomes ``.2``, ...,
``backups`` kept) under an exclusive lock on ``PATH.lock``, and every writer notices the new
file before its next batch. Lines are flushed on `close` and at interpreter exit;
after ``kill -9`` at most what was still queued is lost, and a torn last line is reported
and skipped by the reader (`engine.telemetry.read`).

No prompt or answer text is kept unless ``include_text``; never a secret (the metadata has
none, and its messages are redacted at the source).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import stat
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Final

from engine.telemetry.events import Event, RequestFinished

__all__ = ["SCHEMA_VERSION", "JsonlSink", "line_for", "line_schema"]

#: The version of the line format (``v`` in every line).
SCHEMA_VERSION: Final = 1
_ATTEMPT_KEYS: Final = (
    "provider", "model", "status", "error_category", "error_code", "latency_ms", "timestamp",
    "tokens_in", "tokens_out", "tokens_total", "cost_usd_est", "category", "state", "retry",
    "next", "http_status", "retry_after_ms", "ttft_ms", "chunks", "truncated", "retry_in_ms",
    "retry_refused", "hedge",
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
            "status": {"enum": ["success", "failed", "skipped", "cancelled"]},
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
            "hedge": {"type": "integer", "minimum": 0,
                      "description": "A hedged attempt's copy: 0 the attempt, 1.. the copies "
                                     "sent after it."},
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
            "final_state": {"enum": ["succeeded", "exhausted", "aborted", "cancelled"]},
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
_log = logging.getLogger("engine.telemetry")
#: Seconds between tries to open the log again after it could not be written.
RETRY_SECONDS: Final = 5.0
#: Longest close() (and so interpreter exit) waits for queued lines to be written.
CLOSE_SECONDS: Final = 5.0


@atexit.register
def _flush_all() -> None:
    for sink in list(_OPEN):
        sink.close()


class JsonlSink:
    """Appends one line per finished request to ``path`` (see the module docstring).

    The log never fails, blocks or hangs a request, the sink's construction, ``close()``
    or interpreter exit: the file is opened by the writer thread, only if it is a regular
    file (never through a symlink, never a FIFO, a device or a directory); a file that
    cannot be opened or written (a read-only directory, a full disk, a file-size limit) is
    warned about once, its lines are dropped and counted (``dropped``; the next line that
    can be written is preceded by a ``{"dropped": N}`` line that ``stats`` reports), and it
    is tried again every `RETRY_SECONDS`.
    """

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
        #: Lines not written: the queue was full, or the file could not be written.
        self.dropped = 0
        self.written = 0
        self._unreported = 0  # dropped lines not yet noted in the file
        self._count_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._fd: int | None = None
        self._retry_at = 0.0
        self._warned: set[str] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="torq-telemetry", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:  # once per kind of problem, not once per line
            self._warned.add(kind)
            _log.warning(
                "request log %s: %s; its lines are dropped and counted", self.path, message
            )

    def _open(self) -> int | None:
        """The log file, opened for appending, or None (warned) when it cannot be."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: opening a FIFO must not wait for a reader (it is refused below).
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(self.path, flags | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            reason = "is a symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
            self._warn(f"open:{exc.errno}", f"cannot be opened ({reason})")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._warn("not_regular", "is not a regular file")
            return None
        return fd

    def handle(self, event: Event) -> None:
        """Queue a finished request's line (other events are not logged); never blocks."""
        if not isinstance(event, RequestFinished) or self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._count_lock:  # the writer reads and lowers the count too
                self.dropped += 1
                self._unreported += 1

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
                try:
                    self._write(events)
                except Exception as exc:  # the writer never dies: a line lost, counted
                    self._lost(len(events), "write", f"cannot be written ({exc})")
            for _ in batch:
                self._queue.task_done()
            if len(events) != len(batch):
                return

    def _lost(self, count: int, kind: str | None = None, message: str = "") -> None:
        with self._count_lock:
            self.dropped += count
            self._unreported += count
        if kind is not None:
            self._warn(kind, message)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _write(self, events: list[RequestFinished]) -> None:
        if self._fd is None:
            if time.monotonic() < self._retry_at:
                self._lost(len(events))  # already warned
                return
            self._fd = self._open()
            if self._fd is None:
                self._lost(len(events))  # _open warned
                return
        lines = [
            json.dumps(line_for(e, self.include_text), separators=(",", ":"), default=str)
            for e in events
        ]
        noted = self._unreported
        if noted:  # lines lost before: say so in the file, for stats
            note = {"v": SCHEMA_VERSION, "ts": events[0].field("timestamp"), "dropped": noted}
            lines.insert(0, json.dumps(note, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        self._follow_rotation()
        try:
            written = os.write(self._fd, data) if self._fd is not None else -1
        except OSError as exc:
            self._lost(len(events), f"write:{exc.errno}", exc.strerror or str(exc))
            return
        if written != len(data):  # a short write: the disk filled up mid-batch
            self._lost(len(events), "short", "was written only in part (disk full?)")
            return
        with self._count_lock:
            self._unreported -= noted
        self.written += len(events)
        if self._fd is not None and os.fstat(self._fd).st_size > self.max_bytes:
            self._rotate()

    def _follow_rotation(self) -> None:
        """Another process rotated the file: write to the new one."""
        try:
            current = os.stat(self.path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = -1
        if self._fd is not None and current != os.fstat(self._fd).st_ino:
            os.close(self._fd)
            self._fd = self._open()

    def _rotate(self) -> None:
        # Every step tolerates another process having done it first: rotation races between
        # processes move files, never lose them.
        with open(str(self.path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    if os.stat(self.path).st_size <= self.max_bytes:
                        return  # another process rotated it meanwhile
                except FileNotFoundError:
                    return
                for index in range(self.backups - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(f"{self.path}.{index}", f"{self.path}.{index + 1}")
                with contextlib.suppress(FileNotFoundError):
                    if self.backups > 0:
                        os.replace(self.path, f"{self.path}.1")
                    else:
                        os.unlink(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._open()

    def flush(self, timeout: float = CLOSE_SECONDS) -> None:
        """Wait (at most ``timeout`` seconds) until every queued line is written."""
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        """Write what is queued (waiting at most `CLOSE_SECONDS`), stop the writer,
        close the file (idempotent; never hangs)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=CLOSE_SECONDS)
        self._thread.join(CLOSE_SECONDS)
        if not self._thread.is_alive() and self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        _OPEN.discard(self)
