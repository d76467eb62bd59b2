"""Hot folder: decide, from inotify events (watchdog), when a dropped file is complete.

A file becomes *ready* (and is handed out exactly once by :meth:`HotFolder.poll`)

* at once when it was written in place and closed (``FileClosedEvent``: close after write),
* at once when it was renamed inside the folder (``x.png.part`` -> ``x.png``),
* after a size/mtime stability check when it only appeared (moved in from another
  folder or hard-linked: inotify reports just a creation), when it was present
  at start-up, or when a writer opened it and never closed it
  (``open_file_timeout_s``); zero-byte files wait ``empty_file_settle_s``.

Hidden and temporary names (``ignore_patterns``) and non-image extensions are
ignored; sub-folders (``done/``, ``failed/``) are not watched.  The watchdog
observer thread only records events; the daemon's main thread calls
:meth:`poll` and, after moving a file out, :meth:`release`.
"""

from __future__ import annotations

import collections
import fnmatch
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from dscope.daemon.config import DaemonConfig
from dscope.errors import DScopeError


def is_ignored_name(name: str, patterns: Iterable[str]) -> bool:
    """True when ``name`` matches one of the fnmatch ``patterns`` (temporary / hidden files).

    Examples
    --------
    >>> is_ignored_name(".x.png", [".*"]), is_ignored_name("x.png", [".*", "*.tmp"])
    (True, False)
    """
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def check_inside(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> Path:
    """Resolve ``path`` and return it when it is a regular file inside one of ``roots``.

    Symlinks whose target lies outside, ``..`` tricks and non-files raise
    ``DScopeError('path_refused')``; a missing file raises ``file_not_found``.
    """
    raw = Path(path)
    if not raw.is_absolute():
        raise DScopeError("path_refused", f"{path}: only absolute paths are accepted")
    try:
        real = raw.resolve(strict=True)
    except FileNotFoundError:
        raise DScopeError("file_not_found", f"{path}: no such file") from None
    except (OSError, RuntimeError) as exc:
        raise DScopeError("path_refused", f"{path}: cannot resolve path: {exc}") from None
    for root in roots:
        r = Path(root).resolve()
        if real.is_relative_to(r):
            if not real.is_file():
                raise DScopeError("path_refused", f"{path}: not a regular file")
            return real
    raise DScopeError("path_refused", f"{path}: outside the allowed folders")


@dataclass
class _Pending:
    sig: tuple[int, int] | None = None
    stable_since: float = 0.0
    opens: int = 0


class _Handler(FileSystemEventHandler):
    def __init__(self, owner: "HotFolder"):
        self.owner = owner

    def on_any_event(self, event):  # runs in the observer thread
        if event.is_directory:
            return
        o = self.owner
        if isinstance(event, FileMovedEvent):
            o._forget(event.src_path)
            if Path(event.dest_path).parent == o.folder:
                o._mark_ready(event.dest_path)  # a rename is complete when it happens
        elif isinstance(event, FileClosedEvent):
            o._mark_ready(event.src_path)
        elif isinstance(event, FileCreatedEvent):
            o._add_pending(event.src_path)
        elif isinstance(event, FileOpenedEvent):
            o._add_pending(event.src_path, open_delta=1)
        elif isinstance(event, FileClosedNoWriteEvent):
            o._add_pending(event.src_path, open_delta=-1, create=False)
        elif isinstance(event, FileModifiedEvent):
            o._add_pending(event.src_path, create=False)
        elif isinstance(event, FileDeletedEvent):
            o._forget(event.src_path)


class HotFolder:
    """Watch ``folder`` and hand out complete files exactly once.

    Parameters
    ----------
    folder : path-like
        The hot folder (created when missing).
    cfg : DaemonConfig
        Stability timings, ignore patterns, ``done_dir``/``failed_dir`` names.
    image_extensions : iterable of str
        Lower-case extensions with dot (``config.io.image_extensions``).
    wake : callable, optional
        Called (from the observer thread) when something may be ready.
    on_ignored : callable, optional
        ``on_ignored(name, reason)`` once per ignored name.
    """

    def __init__(
        self,
        folder,
        cfg: DaemonConfig,
        image_extensions: Iterable[str],
        *,
        wake: Callable[[], None] | None = None,
        on_ignored: Callable[[str, str], None] | None = None,
    ):
        self.folder = Path(folder).absolute()
        self.cfg = cfg
        self.extensions = {e.lower() for e in image_extensions}
        self.done_dir = self.folder / cfg.done_dir
        self.failed_dir = self.folder / cfg.failed_dir
        self._wake = wake or (lambda: None)
        self._on_ignored = on_ignored
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._ready: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._claimed: set[str] = set()
        self._ignored_seen: set[str] = set()
        self._observer = None

    # ---- lifecycle ----
    def start(self) -> None:
        """Create the folders, start the inotify observer, then queue the files already there."""
        for d in (self.folder, self.done_dir, self.failed_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Handler(self), str(self.folder), recursive=False)
        self._observer.start()
        self.rescan()

    def rescan(self) -> None:
        """Queue (with a stability check) every file now in the folder that is neither claimed nor known."""
        try:
            with os.scandir(self.folder) as it:
                names = sorted(e.name for e in it if not e.is_dir(follow_symlinks=False))
        except OSError:
            return
        for name in names:
            with self._lock:
                known = name in self._pending or name in self._ready or name in self._claimed
            if not known:
                self._add_pending(str(self.folder / name))

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5.0)
            self._observer = None

    @property
    def alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    # ---- name filter ----
    def accepts(self, name: str) -> bool:
        if is_ignored_name(name, self.cfg.ignore_patterns):
            self._note_ignored(name, "temporary or hidden name")
            return False
        if Path(name).suffix.lower() not in self.extensions:
            self._note_ignored(name, "not an image extension")
            return False
        return True

    def _note_ignored(self, name: str, reason: str) -> None:
        if self._on_ignored is not None and name not in self._ignored_seen:
            if len(self._ignored_seen) < 10000:
                self._ignored_seen.add(name)
            self._on_ignored(name, reason)

    def _name(self, path: str) -> str | None:
        p = Path(path)
        if p.parent != self.folder:
            return None
        return p.name if self.accepts(p.name) else None

    # ---- observer thread ----
    def _add_pending(self, path: str, open_delta: int = 0, create: bool = True) -> None:
        name = self._name(path)
        if name is None:
            return
        with self._lock:
            if name in self._claimed or name in self._ready:
                return
            pend = self._pending.get(name)
            if pend is None:
                if not create and open_delta <= 0:
                    return
                pend = self._pending[name] = _Pending()
            pend.opens = max(0, pend.opens + open_delta)
            pend.sig = None  # re-check stability from now
        self._wake()

    def _mark_ready(self, path: str) -> None:
        name = self._name(path)
        if name is None:
            return
        with self._lock:
            self._pending.pop(name, None)
            if name in self._claimed:
                return
            self._ready[name] = None
        self._wake()

    def _forget(self, path: str) -> None:
        p = Path(path)
        if p.parent != self.folder:
            return
        with self._lock:
            self._pending.pop(p.name, None)
            self._ready.pop(p.name, None)

    # ---- main thread ----
    def poll(self, limit: int | None = None, now: float | None = None) -> list[Path]:
        """Files that became complete since the last call (each handed out once until :meth:`release`)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for name, pend in list(self._pending.items()):
                try:
                    st = os.lstat(self.folder / name)
                except FileNotFoundError:
                    del self._pending[name]
                    continue
                if stat.S_ISLNK(st.st_mode):  # refused by the daemon; no point waiting
                    del self._pending[name]
                    self._ready[name] = None
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if sig != pend.sig:
                    pend.sig, pend.stable_since = sig, now
                    continue
                need = self.cfg.stability_interval_s if pend.opens == 0 else self.cfg.open_file_timeout_s
                if st.st_size == 0:
                    need = max(need, self.cfg.empty_file_settle_s)
                if now - pend.stable_since >= need:
                    del self._pending[name]
                    self._ready[name] = None
            out = []
            while self._ready and (limit is None or len(out) < limit):
                name, _ = self._ready.popitem(last=False)
                self._claimed.add(name)
                out.append(self.folder / name)
        return out

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending) or bool(self._ready)

    def release(self, path) -> None:
        """The daemon is done with ``path`` (moved out or left for a later retry)."""
        with self._lock:
            self._claimed.discard(Path(path).name)

    def claimed(self) -> int:
        with self._lock:
            return len(self._claimed)


def unique_destination(folder: Path, stem: str, suffix: str) -> tuple[Path, Path]:
    """``(image_path, json_path)`` in ``folder`` with neither existing: ``stem``, ``stem-1``, ``stem-2``, ...

    The JSON is named ``<stem>.json``; a source already named ``.json`` is impossible (not an image).
    """
    n = 0
    while True:
        s = stem if n == 0 else f"{stem}-{n}"
        img, js = folder / f"{s}{suffix}", folder / f"{s}.json"
        if not img.exists() and not js.exists() and not img.is_symlink():
            return img, js
        n += 1


def move_no_clobber(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` without ever overwriting: hard link then unlink (rename fallback)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links: check-then-rename (single mover thread)
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet (``O_EXCL``), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
