"""Inspection in worker processes, with a per-image timeout.

Each worker is a ``spawn``-ed process (never ``fork``: the daemon has ZeroMQ
and watchdog threads) connected by its own pipe.  The pool is driven by the
daemon's main thread: :meth:`WorkerPool.submit` hands a job to an idle worker,
:meth:`WorkerPool.collect` returns finished jobs.  A job that exceeds its
deadline has its worker killed and comes back as an error ``timeout``; a
worker that dies comes back as ``worker_crashed``.  Either way the worker is
replaced and the daemon's loop never waits on an image.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from dscope.errors import DScopeError

_READY = "__ready__"


def _worker_main(conn: Connection, opencv_threads: int, preload: bool) -> None:  # runs in the child process
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import cv2

    cv2.setNumThreads(opencv_threads)
    if preload:  # import the pipeline before announcing readiness, so no image pays for it
        import dscope.runner  # noqa: F401

    settings_cache: dict[int, object] = {}
    conn.send((_READY, None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, kind, payload, settings_key, settings = msg
        if settings_key not in settings_cache:  # the pool sends settings only when their key changes
            settings_cache.clear()
            settings_cache[settings_key] = settings
        settings = settings_cache[settings_key]
        try:
            if kind == "file":
                from dscope.runner import inspect_file

                doc = inspect_file(payload, settings)
            elif kind == "array":
                from dscope.runner import inspect_array

                image, info = payload
                doc = inspect_array(image, settings, image_info=info)
            elif kind == "call":  # in-process callers only (tests, tools): payload = (function, args)
                func, fargs = payload
                doc = func(*fargs)
            else:
                raise ValueError(f"unknown job kind {kind!r}")
            conn.send((job_id, doc, None))
            del doc
        except Exception as exc:  # inspect_* never raise for bad images: this is a bug; report it
            conn.send((job_id, None, {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc(limit=5)}))


@dataclass
class _Worker:
    index: int
    process: mp.Process
    conn: Connection
    ready: bool = False
    started_at: float = 0.0
    job_id: str | None = None
    deadline: float = 0.0
    timeout_s: float = 0.0
    settings_key: int | None = None


@dataclass
class Finished:
    """One job leaving the pool: a result document, or an error (code, message) when there is none."""

    job_id: str
    doc: dict | None
    error: DScopeError | None = None
    worker: int = -1
    extra: dict = field(default_factory=dict)


class WorkerPool:
    """A fixed number of inspection processes.

    Parameters
    ----------
    n_workers : int
        Processes to keep running.
    opencv_threads : int
        ``cv2.setNumThreads`` in each worker.
    start_timeout_s : float
        A worker that has not finished importing within this time is replaced.
    on_event : callable, optional
        ``on_event(name, **fields)`` for logging (worker_started, worker_killed, ...).
    preload : bool
        Import :mod:`dscope.runner` before a worker reports ready (the daemon does).

    Jobs are ``(kind, payload)``: ``"file"`` (path), ``"array"`` (``(image, image_info)``)
    or ``"call"`` (``(picklable function, args)``, for in-process callers such as tests).
    """

    def __init__(
        self, n_workers: int, *, opencv_threads: int, start_timeout_s: float, on_event=None, preload: bool = True
    ):
        self.n_workers = n_workers
        self.preload = preload
        self.opencv_threads = opencv_threads
        self.start_timeout_s = start_timeout_s
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._on_event = on_event or (lambda name, **kw: None)
        self.restarts = 0

    def start(self) -> None:
        self._workers = [self._spawn(i) for i in range(self.n_workers)]

    def _spawn(self, index: int) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self.opencv_threads, self.preload), name=f"dscope-worker-{index}", daemon=True
        )
        proc.start()
        child.close()
        self._on_event("worker_started", worker=index, pid=proc.pid)
        return _Worker(index, proc, parent, started_at=time.monotonic())

    def _replace(self, w: _Worker) -> None:
        try:
            if w.process.is_alive():
                w.process.kill()
            w.process.join(5.0)
        finally:
            w.conn.close()
        self.restarts += 1
        self._workers[w.index] = self._spawn(w.index)

    # ---- queries ----
    def idle(self) -> int:
        return sum(1 for w in self._workers if w.ready and w.job_id is None)

    def busy(self) -> int:
        return sum(1 for w in self._workers if w.job_id is not None)

    def wait_objects(self) -> list:
        objs = []
        for w in self._workers:
            objs.append(w.conn)
            objs.append(w.process.sentinel)
        return objs

    def next_deadline(self) -> float | None:
        ds = [w.deadline for w in self._workers if w.job_id is not None]
        ds += [w.started_at + self.start_timeout_s for w in self._workers if not w.ready]
        return min(ds) if ds else None

    # ---- main thread ----
    def submit(self, job_id: str, kind: str, payload, settings, settings_key: int, timeout_s: float) -> bool:
        """Hand the job to an idle worker; False when none is idle."""
        for w in self._workers:
            if w.ready and w.job_id is None:
                send_settings = settings if w.settings_key != settings_key else None
                try:
                    w.conn.send((job_id, kind, payload, settings_key, send_settings))
                except (OSError, BrokenPipeError):
                    continue  # collect() will notice the dead worker
                w.settings_key = settings_key
                w.job_id = job_id
                w.deadline = time.monotonic() + timeout_s
                w.timeout_s = timeout_s
                return True
        return False

    def collect(self, now: float | None = None) -> list[Finished]:
        """Finished, timed-out and crashed jobs (workers are replaced as needed)."""
        now = time.monotonic() if now is None else now
        out: list[Finished] = []
        for w in list(self._workers):
            died = False
            try:
                while w.conn.poll():
                    job_id, doc, err = w.conn.recv()
                    if job_id == _READY:
                        w.ready = True
                        self._on_event("worker_ready", worker=w.index, pid=w.process.pid,
                                       start_s=round(now - w.started_at, 3))
                        continue
                    if job_id != w.job_id:  # pragma: no cover - protocol guard
                        continue
                    w.job_id = None
                    error = None
                    if err is not None:
                        error = DScopeError(err["code"], err["message"])
                        self._on_event("worker_error", worker=w.index, traceback=err.get("traceback"))
                    out.append(Finished(job_id, doc, error, w.index))
            except (EOFError, OSError):
                died = True
            if died or not w.process.is_alive():
                w.process.join(1.0)
                code = w.process.exitcode
                if w.job_id is not None:
                    out.append(Finished(w.job_id, None, DScopeError(
                        "worker_crashed", f"the worker process died (exit code {code}) while inspecting"), w.index))
                self._on_event("worker_died", worker=w.index, exitcode=code, job=w.job_id)
                w.job_id = None
                self._replace(w)
            elif w.job_id is not None and now >= w.deadline:
                job, limit = w.job_id, w.timeout_s
                w.job_id = None
                self._on_event("worker_killed", worker=w.index, pid=w.process.pid, job=job)
                self._replace(w)
                err = DScopeError("timeout", f"inspection exceeded the per-image limit of {limit:g} s; worker killed")
                out.append(Finished(job, None, err, w.index))
            elif not w.ready and now - w.started_at > self.start_timeout_s:
                self._on_event("worker_start_timeout", worker=w.index, pid=w.process.pid)
                self._replace(w)
        return out

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask workers to exit (after their current job), then kill the ones still running."""
        for w in self._workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + timeout_s
        for w in self._workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(2.0)
            w.conn.close()
        self._workers = []


__all__ = ["WorkerPool", "Finished", "wait"]
