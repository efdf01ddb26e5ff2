"""Chains that change while the application runs.

:class:`ChainReloader` reads the chains directory again on demand (``manager.reload()``) or,
when watching, whenever a chain file changes (polled every ``interval`` seconds: a handful
of ``stat`` calls, cheaper than a file-watching dependency for a directory of a few files).
Loading, validating and compiling happen off the request path; the new chains then replace
the running ones in one assignment, so requests already running finish on the chain they
started with. A file that does not validate (an invalid edit, or a file saved halfway)
keeps its previous chain; its problems are logged once, with file:line, and shown by
``chain_status()``; the next complete write is applied. The config's and the environment's
overrides apply on top of reloaded chains as at start-up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from .errors import ChainConfigError
from .loader import chain_files, check_file
from .meta import iso_timestamp
from .spec import Chain

if TYPE_CHECKING:
    from .manager import LLMManager

__all__ = ["ChainReloader"]

_log = logging.getLogger("engine.reload")


class ChainReloader:
    """Reloads one manager's chains (see the module docstring)."""

    def __init__(self, manager: LLMManager, interval: float = 0.5) -> None:
        self.manager = manager
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fingerprint = self._scan()
        now = time.time()
        self._status: dict[str, dict[str, Any]] = {
            name: {"source": compiled.chain.source, "loaded_at": now, "last_error": None}
            for name, compiled in manager.chains.items()
        }
        self._chains: dict[str, Chain] = {n: c.chain for n, c in manager.chains.items()}

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for path in chain_files([self.manager.chains_dir]):
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.append((path.name, info.st_mtime_ns, info.st_size))
        return tuple(sorted(found))

    def status(self) -> dict[str, Any]:
        """Per chain: source, loaded_at (ISO), last_error (None when the file is in use)."""
        with self._lock:
            return {
                name: {**entry, "loaded_at": iso_timestamp(entry["loaded_at"])}
                for name, entry in sorted(self._status.items())
            }

    def reload(self) -> None:
        """Read every chain file again; apply the valid ones (see the module docstring)."""
        with self._lock:
            self._fingerprint = self._scan()
            files = {path.stem: path for path in chain_files([self.manager.chains_dir])}
            chains = dict(self._chains)
            now = time.time()
            for name in list(chains):
                if name not in files:  # deleted: the mode falls back to the default chain
                    if name == "default":
                        self._error(name, "default.yaml was deleted; keeping the previous chain")
                        continue
                    del chains[name]
                    self._status.pop(name, None)
            for name, path in files.items():
                chain, problems = check_file(path)
                if chain is None:
                    self._error(name, str(ChainConfigError(problems)), str(path))
                    continue
                if name not in self._chains or chain.spec != self._chains[name].spec:
                    self._status[name] = {"source": str(path), "loaded_at": now, "last_error": None}
                else:
                    self._status.setdefault(
                        name, {"source": str(path), "loaded_at": now, "last_error": None}
                    )["last_error"] = None
                chains[name] = chain
            try:
                compiled = self.manager._load_chains(chains)
            except ChainConfigError as exc:  # the overrides no longer fit the new chains
                self._error("*", str(exc))
                return
            self._chains = chains
            self.manager._swap_chains(compiled)

    def _error(self, name: str, message: str, source: str | None = None) -> None:
        entry = self._status.setdefault(
            name, {"source": source or name, "loaded_at": time.time(), "last_error": None}
        )
        if entry["last_error"] != message:  # each problem is logged once, not every poll
            _log.warning("chain reload: %s", message)
        entry["last_error"] = message

    def watch(self) -> None:
        """Start polling the chains directory (a daemon thread; :meth:`stop` ends it)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="torq-chain-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._scan() != self._fingerprint:
                try:
                    self.reload()
                except Exception:  # never let the watcher die: the next change is tried
                    _log.exception("chain reload failed")

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
