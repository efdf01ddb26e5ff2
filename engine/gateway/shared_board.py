"""The dashboard of a whole deployment: with health shared through Redis, every worker
(every process serving the gateway, on every host) publishes its aggregate once a second
into one Redis hash, and whichever worker a page is connected to merges them all.

A worker's entry carries the time it was written; entries older than `STALE` seconds (a
worker that stopped or cannot reach Redis) are left out and removed. Publishing runs on a
thread of its own, never on a request; reading is one ``HGETALL``, off the event loop. The
tail each worker publishes holds what the page shows of a request: its path and attempt
records (messages already redacted by the engine), never what was asked or answered.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from engine.gateway.board import Board

__all__ = ["STALE", "SharedBoard", "shared_board"]

#: Seconds between two publications of a worker's aggregate.
INTERVAL: Final = 1.0
#: A worker's entry older than this is gone (5 missed publications).
STALE: Final = 5.0
_PUBLISHED_TAIL: Final = 50
#: A worker's entry is read only up to this size (its tail of 50 requests is far below).
MAX_ENTRY: Final = 8 * 1024 * 1024
_log = logging.getLogger("torq.gateway")


class SharedBoard:
    """One worker's side: publish ``board`` under this process's id, read everyone's."""

    def __init__(
        self,
        board: Board,
        url: str,
        namespace: str,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL,
        publish: bool = True,
    ) -> None:
        import redis

        self.board = board
        # Beside the health records, not among them: a listing of ``namespace:*`` reads
        # every key there as a health record.
        self.key = f"{namespace}/dashboard"
        self.worker = f"{os.uname().nodename}:{os.getpid()}"
        self._clock = clock
        self._interval = interval
        self._client = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._stopped = False
        board.on_close = self.stop  # the manager's close stops the publisher too
        #: False for a process that only shows the deployment (``torq-fallback dashboard``).
        self.publishing = publish

    def start(self) -> None:
        """Publish once a second until `stop` (a daemon thread)."""
        if self._thread is None and self.publishing:
            self._thread = threading.Thread(target=self._run, name="torq-dashboard", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop publishing and take this worker's entry out (once; later calls do nothing)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            if self.publishing:
                self._client.hdel(self.key, self.worker)
        except Exception as exc:  # Redis away at shutdown: its entry goes stale by itself
            _log.info("dashboard: could not remove this worker's entry (%s)", type(exc).__name__)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.publish()
            self._stop.wait(self._interval)

    def publish(self) -> None:
        """Fold what came in and write this worker's aggregate."""
        self.board.fold()
        export = self.board.export(tail=_PUBLISHED_TAIL)
        try:
            self._client.hset(self.key, self.worker, json.dumps(export, separators=(",", ":")))
            self._client.pexpire(self.key, int(STALE * 12 * 1000))
            if self._failing:
                _log.warning("dashboard: publishing to Redis again")
            self._failing = False
        except Exception as exc:  # logged once per outage; the page says which workers it sees
            if not self._failing:
                _log.warning("dashboard: cannot publish to Redis (%s)", type(exc).__name__)
            self._failing = True

    def exports(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every live worker's aggregate, and the workers' names (blocking: call it off the
        event loop). This worker's own is read from its board, whatever Redis says."""
        now = self._clock()
        found: list[dict[str, Any]] = []
        workers: list[str] = []
        if self.publishing:
            self.board.fold()
            found.append(self.board.export())
            workers.append(self.worker)
        try:
            entries = self._client.hgetall(self.key)
        except Exception:  # Redis away: this worker's own view, and the page says so
            return found, workers
        stale = []
        for worker, raw in sorted((str(k), str(v)) for k, v in entries.items()):
            if worker == self.worker:
                continue
            try:
                if len(raw) > MAX_ENTRY:
                    raise ValueError("larger than any worker writes")
                export = json.loads(raw)
                fresh = now - float(export["at"]) <= STALE
            except (ValueError, KeyError, TypeError):
                fresh = False
            if not fresh:
                stale.append(worker)
                continue
            found.append(export)
            workers.append(worker)
        if stale:
            try:
                self._client.hdel(self.key, *stale)
            except Exception as exc:
                _log.info("dashboard: stale entries stay until expiry (%s)", type(exc).__name__)
        return found, workers


def shared_board(manager: Any, board: Board, publish: bool = True) -> SharedBoard | None:
    """The deployment's board when ``manager``'s health lives in Redis (else None)."""
    from engine.health.redis_store import RedisHealthStore

    store = manager.health.store
    if not isinstance(store, RedisHealthStore):
        return None
    return SharedBoard(board, store.url, store.namespace, publish=publish)
