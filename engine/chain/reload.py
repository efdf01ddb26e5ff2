"""Chains that change while the application runs.

`ChainReloader` reads the chains directory again on demand (``manager.reload()``) or,
when watching, whenever a chain file changes. Loading, validating and compiling happen off
the request path; the new chains then replace the running ones in one assignment, so
requests already running finish on the chain they started with. The config's and the
environment's overrides apply on top of reloaded chains as at start-up.

What the operator never wrote is never run:

- A file is applied only once it has stopped changing for ``settle`` seconds (an editor
  that saves in several writes is never caught halfway) and reads the same before and
  after it is read, and only if it validates; otherwise the mode keeps its last good
  chain, the problem is logged once with file:line and shown by ``chain_status()``.
- A mode whose file becomes unreadable (replaced by a FIFO, a device or a directory; its
  permissions gone) keeps its last good chain, and says so. Only a file that is really gone
  sends its mode to the ``default`` chain. A chains directory that cannot be read (removed,
  say) keeps every chain as it was.
- At most `MAX_CHAIN_FILES` chain files are read.

Watching costs next to nothing while nothing changes: each poll (every ``interval``
seconds) is one ``stat`` of the directory and one of each chain file; the directory is
listed again only when its own ``stat`` changes (a file added, removed or renamed).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from engine.chain.loader import CHAIN_SUFFIXES, MAX_CHAIN_FILES, NOT_CHAINS, check_file
from engine.chain.spec import Chain
from engine.errors import ChainConfigError
from engine.types.meta import iso_timestamp

__all__ = ["ChainReloader", "ReloadTarget"]


class _Compiled(Protocol):
    """A running compiled chain, as reload sees it: the chain it was compiled from."""

    @property
    def chain(self) -> Chain: ...


class ReloadTarget(Protocol):
    """What is reloaded: a set of running chains (the manager's
    `ChainSet`)."""

    chains_dir: Path

    @property
    def chains(self) -> Mapping[str, _Compiled]:
        """The running compiled chains by name (each with its ``.chain``)."""
        ...

    @property
    def file_chains(self) -> Mapping[str, Chain]:
        """The running chains that were read from the directory's files, by name."""
        ...

    def compile(self, chains: dict[str, Chain]) -> dict[str, Any]:
        """Compile ``chains`` as the running ones were (raises ``ChainConfigError``)."""
        ...

    def swap(self, chains: dict[str, Any]) -> None:
        """Run ``chains`` from now on."""
        ...


_log = logging.getLogger("engine.reload")

#: (kind, mtime_ns, size, inode) of a chain file; kind "file", "other" or "unreadable".
_Stat = tuple[str, int, int, int]


def _stat_of(path: Path) -> _Stat:
    try:
        info = os.stat(path)
    except OSError:
        return ("unreadable", 0, 0, 0)
    kind = "file" if stat.S_ISREG(info.st_mode) else "other"
    return (kind, info.st_mtime_ns, info.st_size, info.st_ino)


class ChainReloader:
    """Reloads one manager's chains (see the module docstring)."""

    def __init__(self, target: ReloadTarget, interval: float = 0.5, settle: float = 0.25) -> None:
        self.target = target
        self.interval = interval
        self.settle = settle
        self.folder = Path(target.chains_dir)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        now = time.time()
        self._status: dict[str, dict[str, Any]] = {
            name: {"source": compiled.chain.source, "loaded_at": now, "last_error": None}
            for name, compiled in target.chains.items()
        }
        # Only the files' chains are reloaded; the others (built in memory) stay underneath.
        self._chains: dict[str, Chain] = dict(target.file_chains)
        self._files: dict[str, Path] = {}
        self._listed: tuple[int, int] | None = None
        listing = self._listing()
        if isinstance(listing, dict):
            self._files = {name: path for name, (path, _) in listing.items()}
        self._applied = self._fingerprint()
        self._pending: Any = None
        self._pending_since = 0.0

    # -- looking --------------------------------------------------------------------------

    def _listing(self) -> dict[str, tuple[Path, _Stat]] | str:
        """Every chain file of the directory (whatever its type), or why it cannot be read."""
        try:
            info = os.stat(self.folder)
            entries: dict[str, tuple[Path, _Stat]] = {}
            with os.scandir(self.folder) as scan:
                for entry in scan:
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix not in CHAIN_SUFFIXES or stem in NOT_CHAINS:
                        continue
                    if len(entries) >= MAX_CHAIN_FILES:
                        return f"holds more than {MAX_CHAIN_FILES} chain files"
                    path = Path(entry.path)
                    entries[stem] = (path, _stat_of(path))
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        self._listed = (info.st_mtime_ns, info.st_ino)
        return entries

    def _fingerprint(self) -> Any:
        """What a poll compares: the directory's stat and each known chain file's."""
        try:
            info = os.stat(self.folder)
            folder: Any = (info.st_mtime_ns, info.st_ino)
        except OSError as exc:
            folder = ("unreadable", exc.errno)
        return (folder, tuple(sorted((n, _stat_of(p)) for n, p in self._files.items())))

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per chain: source, loaded_at (ISO), last_error (None when the file is in use)."""
        with self._lock:
            return {
                name: {**entry, "loaded_at": iso_timestamp(entry["loaded_at"])}
                for name, entry in sorted(self._status.items())
            }

    def _error(self, name: str, message: str, source: str | None = None) -> None:
        entry = self._status.setdefault(
            name, {"source": source or name, "loaded_at": time.time(), "last_error": None}
        )
        if entry["last_error"] != message:  # each problem is logged once, not every poll
            _log.warning("chain reload: %s", message)
        entry["last_error"] = message

    # -- reloading ------------------------------------------------------------------------

    def reload(self) -> None:
        """Read every chain file again; apply the valid ones (see the module docstring)."""
        with self._lock:
            listing = self._listing()
            if isinstance(listing, str):
                self._error(
                    "*",
                    f"chains directory {self.folder} {listing}; every chain is kept as it was",
                    str(self.folder),
                )
                self._applied = self._fingerprint()
                return
            self._status.pop("*", None)
            self._files = {name: path for name, (path, _) in listing.items()}
            chains = dict(self._chains)
            now = time.time()
            for name in list(chains):
                if name in listing:
                    continue
                if name == "default":  # gone: the default is what every mode falls back on
                    self._error(name, "default.yaml was deleted; keeping the previous chain")
                    continue
                del chains[name]  # really gone: the mode runs the default chain
                self._status.pop(name, None)
            for name, (path, seen) in listing.items():
                chain = self._read(name, path, seen)
                if chain is None:
                    continue  # kept its previous chain (said why)
                previous = self._chains.get(name)
                if previous is None or chain.spec != previous.spec:
                    self._status[name] = {"source": str(path), "loaded_at": now, "last_error": None}
                else:
                    self._status.setdefault(
                        name, {"source": str(path), "loaded_at": now, "last_error": None}
                    )["last_error"] = None
                chains[name] = chain
            try:
                compiled = self.target.compile(chains)
            except ChainConfigError as exc:  # the overrides no longer fit the new chains
                self._error("*", str(exc))
                return
            finally:
                self._applied = self._fingerprint()
            self._chains = chains
            self.target.swap(compiled)

    def _read(self, name: str, path: Path, seen: _Stat) -> Chain | None:
        """The chain in ``path`` if it is a regular file that validates and did not change
        while it was read; else None (the mode keeps its chain, and the reason is shown)."""
        keep = "; keeping the previous chain" if name in self._chains else ""
        if seen[0] != "file":
            what = "cannot be read" if seen[0] == "unreadable" else "is not a regular file"
            self._error(name, f"{path} {what}{keep}", str(path))
            return None
        chain, problems = check_file(path)
        if _stat_of(path) != seen:  # written to while it was being read: not a whole file
            self._error(name, f"{path} changed while it was read{keep}", str(path))
            return None
        if chain is None:
            self._error(name, str(ChainConfigError(problems)) + keep, str(path))
            return None
        return chain

    # -- watching -------------------------------------------------------------------------

    def watch(self) -> None:
        """Start polling the chains directory (a daemon thread; `stop` ends it)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="torq-chain-reload", daemon=True)
        self._thread.start()

    def poll(self, now: float | None = None) -> bool:
        """One look at the directory: reload when something changed and has then stayed
        the same for ``settle`` seconds. Returns whether it reloaded."""
        now = time.monotonic() if now is None else now
        if self._listed is not None:
            try:
                info = os.stat(self.folder)
                if (info.st_mtime_ns, info.st_ino) != self._listed:
                    listing = self._listing()  # a file added, removed or renamed
                    if isinstance(listing, dict):
                        self._files = {name: path for name, (path, _) in listing.items()}
            except OSError:
                pass
        current = self._fingerprint()
        if current == self._applied:
            self._pending = None
            return False
        if current != self._pending:  # still changing: wait for it to settle
            self._pending, self._pending_since = current, now
            return False
        if now - self._pending_since < self.settle:
            return False
        self._pending = None
        self.reload()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # never let the watcher die: the next change is tried
                _log.exception("chain reload failed")

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
