"""The bench daemon: state machine + hot folder + workers + SQLite + ZeroMQ + systemd.

Threads and who owns what (one owner per resource):

============  ==========================================================
main          the loop: hot-folder intake, job queue, worker pool, SQLite
              store, file moves, heartbeats, systemd watchdog, signals
publisher     the XPUB socket (:class:`dscope.ipc.publisher.Publisher`)
control       the ROUTER socket (:class:`dscope.ipc.control.ControlServer`);
              its handler only validates and queues work for main
observer      watchdog's inotify thread; only records events
camera        camera commands (trigger, calibrate, focus) in a 1-thread executor
workers       inspection in ``spawn``-ed processes with a per-image deadline
============  ==========================================================

One image's path: detected complete -> queued -> dispatched to a worker
(state ``inspecting``) -> result (or ``timeout`` / ``worker_crashed`` ERROR)
-> state ``reporting`` -> stored in SQLite (committed) -> published on
``verdict`` -> moved to ``done/`` or ``failed/`` with ``<stem>.json`` beside
it -> row marked finalized -> ``idle`` when nothing else is in flight.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import signal
import socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from dscope import __version__
from dscope.config import Config, load_config
from dscope.daemon.config import DaemonConfig
from dscope.daemon.hotfolder import HotFolder, check_inside, move_no_clobber, unique_destination, write_new_file
from dscope.daemon.machine import BenchMachine
from dscope.daemon.sdnotify import Notifier
from dscope.daemon.store import ResultStore
from dscope.daemon.workers import WorkerPool, wait
from dscope.errors import DScopeError
from dscope.ipc.control import ControlServer
from dscope.ipc.envelope import json_default
from dscope.ipc.publisher import Publisher
from dscope.ipc.socket_thread import Waker


# --------------------------------------------------------------------------- logging
def configure_daemon_logging(level: str = "info"):
    """structlog: one JSON object per line on stderr (journald), numpy-safe; returns a logger."""
    import logging
    import sys

    import structlog

    try:  # the reporting engineer's shared setup, when present
        from dscope.reporting.logs import configure_logging  # type: ignore

        configure_logging(console_level=level, log_file=None, json_console=True)
        # our own state_changed events say it all; transitions also warns that the event
        # named "trigger" is not bound as a model method (we dispatch by name)
        logging.getLogger("transitions").setLevel(logging.ERROR)
        return structlog.get_logger("dscope.daemon")
    except Exception:  # not there (or incompatible): a local JSON setup below
        pass
    logging.getLogger("transitions").setLevel(logging.ERROR)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda obj, **kw: json.dumps(obj, default=json_default)),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("dscope.daemon")


# --------------------------------------------------------------------------- paths
def default_state_dir(environ: dict | None = None) -> Path:
    """``$STATE_DIRECTORY`` (systemd ``StateDirectory=``), else ``$XDG_STATE_HOME/dscope``, else ``~/.local/state/dscope``."""
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dscope"


@dataclass
class Job:
    """One image on its way through the daemon."""

    job_id: str
    kind: str  # "file" | "array"
    source: dict
    path: Path | None = None
    payload: Any = None
    sha256: str | None = None
    detected: float = field(default_factory=time.monotonic)
    dispatched: float | None = None
    reply_later: Callable[[dict], None] | None = None
    frame_png: Path | None = None


class Daemon:
    """The bench daemon.  Construct, then call :meth:`run` from the main thread.

    Parameters
    ----------
    config : Config
        Validated root configuration (its ``daemon`` section drives this class).
    config_path : str, optional
        File re-read on SIGHUP (None = the shipped default).
    hot_folder, pub_endpoint, control_endpoint, state_dir, camera : optional
        Command-line overrides of the ``daemon`` section.
    environ : dict, optional
        Environment for systemd variables (tests).
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        hot_folder: str | None = None,
        pub_endpoint: str | None = None,
        control_endpoint: str | None = None,
        state_dir: str | None = None,
        camera: str | None = None,
        environ: dict | None = None,
    ):
        overrides = {
            k: v
            for k, v in {
                "hot_folder": hot_folder,
                "pub_endpoint": pub_endpoint,
                "control_endpoint": control_endpoint,
                "state_dir": state_dir,
                "camera": camera,
            }.items()
            if v is not None
        }
        try:  # re-validate so command-line values get the same checks as the file
            dcfg = DaemonConfig.model_validate({**config.daemon.model_dump(), **overrides})
        except ValidationError as exc:
            why = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'daemon'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise DScopeError("bad_argument", f"daemon options: {why}") from None
        self.config = config
        self.dcfg = dcfg
        self._overrides = overrides
        self.config_path = config_path
        self.log = configure_daemon_logging(config.logging.console_level)
        self.daemon_id = dcfg.daemon_id or socket.gethostname()
        self.boot_time = time.time()
        self.state_dir = (Path(dcfg.state_dir) if dcfg.state_dir else default_state_dir(environ)).absolute()
        self.frames_dir = self.state_dir / dcfg.frames_dir
        self.notifier = Notifier(environ)
        self.waker = Waker()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._rescan = threading.Event()
        self._stopping = False
        self._inbox: collections.deque[Job] = collections.deque()  # jobs from other threads
        self._queue: collections.deque[Job] = collections.deque()  # main thread only
        self._inflight: dict[str, Job] = {}
        self._lock = threading.Lock()  # settings, last verdict, counters
        # what the operator chose (config or set_profile/set_fiber); None = the config's default,
        # which for the fiber type means "not chosen" (no nominal scale: see docs/architecture.md)
        # "calibration_path": a calibration measured by the ``calibrate`` command and applied (None = the config's)
        self._choice = {"profile": dcfg.profile, "fiber_type": dcfg.fiber_type, "core_um": None, "cladding_um": None,
                        "calibration_path": None}
        self._settings = self._build_settings(config, dcfg, self._choice)
        self._settings_key = 1
        self._last_verdict: dict | None = None
        self._last_calibration: dict | None = None
        self.counts: collections.Counter = collections.Counter()
        self.machine = BenchMachine(on_change=self._on_state_change)
        self.publisher: Publisher | None = None
        self.control: ControlServer | None = None
        self.hotfolder: HotFolder | None = None
        self.pool: WorkerPool | None = None
        self.store: ResultStore | None = None
        self.camera = None
        self._camera_exec: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_watchdog = 0.0
        self._last_status = 0.0
        self._last_rescan = time.monotonic()

    # ------------------------------------------------------------------ settings
    def _calibration_path(self, dcfg: DaemonConfig, applied: str | None = None) -> Path | None:
        """The calibration file to load: one applied by ``calibrate``, else ``daemon.calibration_file``."""
        if applied:
            p = Path(applied)
        elif not dcfg.calibration_file:
            return None
        else:
            p = Path(dcfg.calibration_file)
            p = p if p.is_absolute() else self.state_dir / p
        if not p.is_file():
            self.log.warning("calibration_missing", path=str(p), note="inspecting without a calibrated scale")
            return None
        return p

    def _build_settings(self, config: Config, dcfg: DaemonConfig, choice: dict):
        """Validated RunSettings from the operator's choices (raises DScopeError for bad values)."""
        from dscope.runner import RunSettings

        return RunSettings.create(
            config,
            profile=choice.get("profile"),
            fiber_type=choice.get("fiber_type"),
            core_um=choice.get("core_um"),
            cladding_um=choice.get("cladding_um"),
            calibration_path=self._calibration_path(dcfg, choice.get("calibration_path")),
        )

    def _calibration_target(self, config: Config, dcfg: DaemonConfig) -> Path:
        """Where ``calibrate`` writes: ``daemon.calibration_file``, else ``scale.calibration_file``; relative = state dir."""
        p = Path(dcfg.calibration_file or config.scale.calibration_file)
        return p if p.is_absolute() else self.state_dir / p

    def settings_summary(self) -> dict:
        s = self._settings
        return {
            "profile": s.profile,
            "fiber_type": s.fiber_spec.fiber_type,
            "core_um": s.fiber_spec.core_um,
            "cladding_um": s.fiber_spec.cladding_um,
            "rule_set": s.rule_set.name,
            "dims_source": s.fiber_spec.dims_source,
            "calibration_path": s.calibration_path,
        }

    # ------------------------------------------------------------------ state changes
    def _on_state_change(self, old, new, trigger, error) -> None:
        self.log.info("state_changed", old=old, new=new, trigger=trigger, error=error)
        if self.publisher is not None:
            self.publisher.publish("state", {"old": old, "new": new, "trigger": trigger, "error": error})

    # ------------------------------------------------------------------ lifecycle
    def _start(self) -> None:
        d = self.dcfg
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = ResultStore(self.state_dir / d.database_file, d.database_busy_timeout_s)
        self.pool = WorkerPool(
            d.workers,
            opencv_threads=self.config.batch.opencv_threads_per_worker,
            start_timeout_s=d.worker_start_timeout_s,
            on_event=lambda name, **kw: self.log.info(name, **kw),
        )
        self.pool.start()
        self.publisher = Publisher(
            d.pub_endpoint,
            self.daemon_id,
            sndhwm=d.pub_sndhwm,
            linger_ms=d.control_linger_ms,
            boot_time=self.boot_time,
            on_subscription=lambda topic, on: self.log.info(
                "subscription", topic=topic or "*", subscribed=on
            ),
        )
        self.publisher.start()
        self._recover_unpublished()
        if d.hot_folder:
            self.hotfolder = HotFolder(
                Path(d.hot_folder).absolute(),
                d,
                self.config.io.image_extensions,
                wake=self.waker.wake,
                on_ignored=lambda name, reason: self.log.info("hot_folder_ignored", name=name, reason=reason),
            )
            self.hotfolder.start()
        self._start_camera()
        # control last: a first answered "status" means the daemon is fully up
        self.control = ControlServer(
            d.control_endpoint,
            self._handle,
            max_bytes=d.control_max_bytes,
            linger_ms=d.control_linger_ms,
            on_error=lambda exc: self.log.exception("control_handler_failed", error=str(exc)),
        )
        self.control.start()
        self.log.info(
            "daemon_started",
            version=__version__,
            daemon_id=self.daemon_id,
            pid=os.getpid(),
            pub=d.pub_endpoint,
            control=d.control_endpoint,
            hot_folder=str(self.hotfolder.folder) if self.hotfolder else None,
            state_dir=str(self.state_dir),
            camera=d.camera,
            workers=d.workers,
            settings=self.settings_summary(),
        )
        self._on_state_change(None, self.machine.state, "start", None)
        self.notifier.ready(self._status_line())

    def _shutdown(self) -> None:
        self.notifier.stopping("stopping")
        self.log.info("daemon_stopping", pending=len(self._queue), inflight=len(self._inflight))
        if self.hotfolder is not None:
            self.hotfolder.stop()
        if self.camera is not None:
            try:
                self.camera.stop()
            except Exception as exc:  # camera errors must not prevent a clean exit
                self.log.warning("camera_stop_failed", error=str(exc))
        if self._camera_exec is not None:
            self._camera_exec.shutdown(wait=True, cancel_futures=True)
        if self.pool is not None:
            self.pool.stop()
        if self.control is not None:
            self.control.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if self.store is not None:
            self.store.close()
        self.log.info("daemon_stopped", verdicts=self.counts["verdicts"])

    def request_stop(self) -> None:
        """Finish the images in progress, then exit (signal-safe)."""
        self._stop.set()
        self.waker.wake()

    def request_reload(self) -> None:
        """Re-read the configuration file at the next loop turn (signal-safe)."""
        self._reload.set()
        self.waker.wake()

    def run(self, install_signals: bool = True) -> int:
        """Start everything, serve until SIGTERM/SIGINT/``shutdown``, and return the exit code (0)."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            signal.signal(signal.SIGINT, lambda *_: self.request_stop())
            signal.signal(signal.SIGHUP, lambda *_: self.request_reload())
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return 0

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        d = self.dcfg
        stop_deadline = None
        while True:
            now = time.monotonic()
            self.waker.drain()
            if self._reload.is_set():
                self._reload.clear()
                self._do_reload()
                d = self.dcfg
            if self._stop.is_set() and not self._stopping:
                self._stopping = True
                stop_deadline = now + d.shutdown_timeout_s
                self._drop_queued_hot_files()
            if self.hotfolder is not None and not self._stopping and (
                self._rescan.is_set() or now - self._last_rescan >= d.rescan_interval_s
            ):
                self._rescan.clear()
                self._last_rescan = now
                self.hotfolder.rescan()  # files whose inotify events were missed (queue overflow, ...)
            # intake
            while self._inbox:
                self._queue.append(self._inbox.popleft())
            if self.hotfolder is not None and not self._stopping:
                room = max(0, d.max_queue - len(self._queue))
                if room:
                    for path in self.hotfolder.poll(limit=room):
                        self._enqueue_hot_file(path)
            # dispatch + collect
            self._dispatch()
            for fin in self.pool.collect():
                job = self._inflight.pop(fin.job_id, None)
                if job is not None:
                    self._complete(job, fin.doc, fin.error)
            self._dispatch()
            self._periodic(time.monotonic())
            if self._stopping:
                if not self._inflight and not self._queue:
                    break
                if time.monotonic() > stop_deadline:
                    self.log.warning("shutdown_timeout", inflight=len(self._inflight), queued=len(self._queue))
                    break
            timeout = d.loop_tick_s
            nd = self.pool.next_deadline()
            if nd is not None:
                timeout = max(0.0, min(timeout, nd - time.monotonic()))
            wait([*self.pool.wait_objects(), self.waker], timeout=timeout)

    def _periodic(self, now: float) -> None:
        d = self.dcfg
        if now - self.publisher.last_publish_time >= d.heartbeat_interval_s:
            self.publisher.publish("heartbeat", self._heartbeat())
        wd = self.notifier.watchdog_interval_s
        if wd and now - self._last_watchdog >= wd and self._threads_alive():
            self._last_watchdog = now
            self.notifier.watchdog()
        if now - self._last_status >= d.heartbeat_interval_s:
            self._last_status = now
            self.notifier.status(self._status_line())

    def _threads_alive(self) -> bool:
        ok = self.publisher.alive and self.control.alive
        if self.hotfolder is not None:
            ok = ok and self.hotfolder.alive
        return ok

    def _status_line(self) -> str:
        return (
            f"{self.machine.state}; {self.counts['verdicts']} verdicts; "
            f"queue {len(self._queue)}; in flight {len(self._inflight)}"
        )

    def _heartbeat(self) -> dict:
        return {
            "state": self.machine.state,
            "uptime_s": round(time.time() - self.boot_time, 3),
            "queued": len(self._queue),
            "inflight": len(self._inflight),
            "verdicts": self.counts["verdicts"],
            "workers_idle": self.pool.idle() if self.pool else 0,
        }

    def _drop_queued_hot_files(self) -> None:
        """On shutdown, hot-folder files not yet started stay in the folder for the next start."""
        keep = collections.deque()
        for job in self._queue:
            if job.source.get("kind") == "hot_folder":
                self.hotfolder.release(job.path)
            else:
                keep.append(job)
        self._queue = keep

    def _dispatch(self) -> None:
        while self._queue and self.pool.idle():
            job = self._queue.popleft()
            with self._lock:
                settings, key = self._settings, self._settings_key
            if not self.pool.submit(job.job_id, job.kind, job.payload, settings, key, self.dcfg.image_timeout_s):
                self._queue.appendleft(job)
                return
            job.dispatched = time.monotonic()
            self._inflight[job.job_id] = job
            self.machine.try_fire("inspect")  # idle/reporting -> inspecting; other states keep serving

    # ------------------------------------------------------------------ intake
    def _enqueue_hot_file(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.hotfolder.release(path)
            return
        source = {"kind": "hot_folder", "path": str(path)}
        if not stat.S_ISREG(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            job = Job(uuid.uuid4().hex, "file", source, path=path, payload=str(path))
            self._complete(job, None, DScopeError("path_refused", f"{path.name}: {what}; only regular files are inspected"))
            return
        try:
            import hashlib

            with open(path, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            sha = None  # the worker reports the read error
        if sha is not None:
            try:
                stored = self.store.unfinalized_for(sha, str(path))
            except DScopeError as exc:
                self.log.error("store_lookup_failed", error=exc.message, path=str(path))
                stored = None
            if stored is not None:  # verdict stored before a crash: finish the job, do not repeat it
                self.log.info("recovered_stored_verdict", path=str(path), verdict_id=stored["verdict_id"])
                job = Job(stored["verdict_id"], "file", stored["source"], path=path, sha256=sha)
                self._finalize(job, stored["verdict_id"], stored["result"], publish=not stored["published"], recovered=True)
                return
        self._queue.append(Job(uuid.uuid4().hex, "file", source, path=path, payload=str(path), sha256=sha))

    def _recover_unpublished(self) -> None:
        for row in self.store.unpublished():
            payload = self._verdict_payload(row["verdict_id"], row["result"], row["source"], None, recovered=True)
            self.publisher.publish("verdict", payload)
            self.store.mark_published(row["verdict_id"])
            self.log.info("recovered_unpublished_verdict", verdict_id=row["verdict_id"])

    # ------------------------------------------------------------------ completion
    def _error_doc(self, job: Job, error: DScopeError) -> dict:
        from dscope.reporting.document import error_document

        info = {
            "path": str(job.path) if job.path else (str(job.frame_png) if job.frame_png else None),
            "filename": job.path.name if job.path else None,
            "sha256": job.sha256,
            "width": None,
            "height": None,
        }
        return error_document(error, self._settings, info, {})

    def _verdict_payload(self, verdict_id, doc, source, stored_as, recovered=False, timings=None) -> dict:
        return {
            "verdict_id": verdict_id,
            "status": doc.get("status"),
            "source": source,
            "stored_as": stored_as,
            "recovered": recovered,
            "daemon_timings_s": timings or {},
            "result": doc,
        }

    def _complete(self, job: Job, doc: dict | None, error: DScopeError | None) -> None:
        if doc is None:
            doc = self._error_doc(job, error or DScopeError("internal_error", "no result"))
        camera_warnings = job.source.get("warnings") if job.source.get("kind") == "camera" else None
        if camera_warnings and isinstance(doc.get("warnings"), list):  # e.g. out of focus (camera controller)
            doc["warnings"] = doc["warnings"] + [w for w in camera_warnings if w not in doc["warnings"]]
        reporting = self.machine.try_fire("report")
        try:
            self._finalize(job, job.job_id, doc, publish=True)
        finally:
            if reporting:
                if self._inflight or self._queue:
                    self.machine.try_fire("inspect")
                else:
                    self.machine.try_fire("finish")

    def _destination(self, job: Job, doc: dict) -> tuple[Path | None, Path | None]:
        if job.source.get("kind") == "hot_folder":
            folder = self.hotfolder.failed_dir if doc.get("status") == "ERROR" else self.hotfolder.done_dir
            folder.mkdir(parents=True, exist_ok=True)  # someone may have removed it
            return unique_destination(folder, job.path.stem, job.path.suffix)
        if job.source.get("kind") == "camera" and job.frame_png is not None:
            return job.frame_png, job.frame_png.with_suffix(".json")
        return None, None

    def _finalize(self, job: Job, verdict_id: str, doc: dict, *, publish: bool, recovered: bool = False) -> None:
        """Store (unless recovered) -> move/write JSON -> publish -> mark finalized -> reply.

        Files are in place before the verdict goes out, so a client that receives it finds the
        image and its JSON where ``stored_as`` says."""
        now = time.monotonic()
        timings = {"detected_to_done": round(now - job.detected, 6)}
        if job.dispatched is not None:
            timings["queued"] = round(job.dispatched - job.detected, 6)
            timings["inspect"] = round(now - job.dispatched, 6)
        kind = job.source.get("kind")
        if not recovered:
            try:
                self.store.insert(verdict_id, doc, job.source, self.daemon_id, sha256=job.sha256)
            except DScopeError as exc:
                self.log.error("store_failed", error=exc.message, path=str(job.path))
                self.machine.try_fire("fail", exc.to_dict())
                if kind == "hot_folder":
                    self.hotfolder.release(job.path)  # stays in the folder; retried after reset
                if job.reply_later:
                    job.reply_later({"ok": False, "error": {"code": exc.code, "message": exc.message}})
                return
        try:
            img_dst, json_dst = self._destination(job, doc)
        except OSError as exc:
            img_dst = json_dst = None
            self.log.error("destination_failed", error=str(exc))
        final_path = None
        finalized = False
        try:
            if kind == "hot_folder":
                if img_dst is None:  # keep the row unfinalized: a rescan retries the move, never re-inspects
                    raise OSError("no destination folder")
                move_no_clobber(job.path, img_dst)
                final_path = str(img_dst)
            if json_dst is not None:
                write_new_file(json_dst, (json.dumps(doc, indent=2, default=json_default) + "\n").encode())
            if kind == "camera":
                final_path = str(img_dst) if img_dst else None
        except OSError as exc:
            self.log.error("finalize_failed", path=str(job.path), error=str(exc))
        else:
            finalized = True
        finally:
            if kind == "hot_folder":
                self.hotfolder.release(job.path)
        payload = self._verdict_payload(
            verdict_id, doc, job.source, str(img_dst) if img_dst else None, recovered=recovered, timings=timings
        )
        with self._lock:  # status() sees the counters and last verdict of everything published
            seq = self.publisher.publish("verdict", payload) if publish else None
            self._last_verdict = {"seq": seq, **payload}
            self.counts["verdicts"] += 1
            self.counts[str(doc.get("status"))] += 1
        if publish:
            try:
                self.store.mark_published(verdict_id)
            except DScopeError as exc:  # worst case after a restart: published once more, flagged recovered
                self.log.error("store_mark_failed", error=exc.message, verdict_id=verdict_id)
        self.log.info(
            "verdict",
            verdict_id=verdict_id,
            status=doc.get("status"),
            error=(doc.get("error") or {}).get("code"),
            source=job.source,
            stored_as=str(img_dst) if img_dst else None,
            seq=seq,
            recovered=recovered,
            **timings,
        )
        if finalized:
            try:
                self.store.mark_finalized(verdict_id, final_path)
            except DScopeError as exc:
                self.log.error("store_mark_failed", error=exc.message, verdict_id=verdict_id)
        if job.reply_later:
            job.reply_later({"ok": True, "verdict": {"seq": seq, **payload}})

    # ------------------------------------------------------------------ reload
    def _do_reload(self) -> None:
        self.notifier.reloading()
        try:
            cfg = load_config(self.config_path)
            dcfg = DaemonConfig.model_validate({**cfg.daemon.model_dump(), **self._overrides})
            choice = dict(self._choice)
            if dcfg.calibration_file != self.dcfg.calibration_file:
                choice["calibration_path"] = None  # the operator pointed the config at another calibration
            if choice["profile"] not in cfg.profiles:
                choice["profile"] = dcfg.profile  # the chosen profile is gone from the new file
            settings = self._build_settings(cfg, dcfg, choice)
        except Exception as exc:
            msg = getattr(exc, "message", str(exc))
            self.log.error("reload_failed", error=msg, config=self.config_path)
            self.notifier.ready(f"reload failed, old configuration kept: {msg}"[:200])
            return
        restart_keys = ("pub_endpoint", "control_endpoint", "state_dir", "hot_folder", "workers", "camera",
                        "database_file", "frames_dir", "done_dir", "failed_dir", "daemon_id")
        changed = [k for k in restart_keys if getattr(dcfg, k) != getattr(self.dcfg, k)]
        if changed:
            self.log.warning("reload_needs_restart", keys=changed)
            dcfg = dcfg.model_copy(update={k: getattr(self.dcfg, k) for k in changed})
        with self._lock:
            self.config = cfg
            self.dcfg = dcfg
            self._choice = choice
            self._settings = settings
            self._settings_key += 1
        if self.hotfolder is not None:
            self.hotfolder.cfg = dcfg
        self.log.info("config_reloaded", config=cfg.source_path, settings=self.settings_summary())
        self.notifier.ready(self._status_line())

    # ------------------------------------------------------------------ control (control thread)
    def status(self) -> dict:
        with self._lock:
            last = self._last_verdict
            counts = dict(self.counts)
        return {
            "daemon_id": self.daemon_id,
            "version": __version__,
            "pid": os.getpid(),
            "boot_time": self.boot_time,
            "uptime_s": round(time.time() - self.boot_time, 3),
            "state": self.machine.state,
            "error": self.machine.error,
            "allowed": self.machine.allowed(),
            "settings": self.settings_summary(),
            "queued": len(self._queue) + len(self._inbox),
            "inflight": len(self._inflight),
            "counts": counts,
            "stopping": self._stop.is_set(),
            "hot_folder": str(self.hotfolder.folder) if self.hotfolder else None,
            "state_dir": str(self.state_dir),
            "pub": self.dcfg.pub_endpoint,
            "camera": {"spec": self.dcfg.camera, "serial": getattr(self.camera, "serial", None),
                       "connected": getattr(self.camera, "connected", None)} if self.dcfg.camera != "none" else None,
            "seq": self.publisher.counter.current() if self.publisher else {},
            "last_verdict": last,
            "last_calibration": self._last_calibration,
        }

    def _handle(self, cmd: str, args: dict, reply_later: Callable[[dict], None]) -> dict | None:
        if cmd == "status":
            return {"ok": True, **self.status()}
        if cmd == "shutdown":
            self.log.info("shutdown_requested")
            self.request_stop()
            return {"ok": True, "stopping": True}
        if cmd == "reset":
            self.machine.fire("reset")
            self._rescan.set()  # files left behind by a store failure are retried
            self.waker.wake()
            return {"ok": True, "state": self.machine.state}
        if cmd == "set_profile":
            return self._set_settings(profile=args["profile"])
        if cmd == "set_fiber":
            return self._set_settings(
                fiber_type=args["type"], core_um=args.get("core_um"), cladding_um=args.get("cladding_um")
            )
        if cmd == "inspect":
            return self._cmd_inspect(args, reply_later)
        if cmd in ("trigger", "calibrate", "focus_start", "focus_stop"):
            return self._cmd_camera(cmd, args, reply_later)
        raise DScopeError("unknown_command", f"unknown command {cmd!r}")  # pragma: no cover - validated before

    def _set_settings(self, **changes) -> dict:
        with self._lock:
            choice = {**self._choice, **changes}
            settings = self._build_settings(self.config, self.dcfg, choice)  # raises DScopeError for bad values
            self._choice = choice
            self._settings = settings
            self._settings_key += 1
        summary = self.settings_summary()
        self.log.info("settings_changed", **summary)
        return {"ok": True, "settings": summary}

    def _check_accepting(self) -> None:
        if self._stop.is_set():
            raise DScopeError("invalid_state", "the daemon is shutting down")
        if len(self._queue) + len(self._inbox) >= self.dcfg.max_queue:
            raise DScopeError("invalid_state", f"queue full ({self.dcfg.max_queue} images)")

    def _cmd_inspect(self, args: dict, reply_later) -> dict | None:
        self._check_accepting()
        roots = list(self.dcfg.request_roots)
        if self.hotfolder is not None:
            roots.append(str(self.hotfolder.folder))
        if not roots:
            raise DScopeError("path_refused", "no hot folder and no daemon.request_roots configured")
        real = check_inside(args["path"], roots)
        if self.hotfolder is not None and real.parent == self.hotfolder.folder.resolve():
            raise DScopeError("path_refused", f"{args['path']}: files in the hot folder itself are processed automatically")
        import hashlib

        try:
            with open(real, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise DScopeError("file_not_found", f"{real}: cannot read: {exc.strerror}") from None
        job = Job(uuid.uuid4().hex, "file", {"kind": "request", "path": str(real)}, path=real, payload=str(real), sha256=sha)
        if args.get("wait"):
            job.reply_later = reply_later
        self._inbox.append(job)
        self.waker.wake()
        return None if args.get("wait") else {"ok": True, "job_id": job.job_id, "path": str(real)}

    # ------------------------------------------------------------------ camera hook
    def _start_camera(self) -> None:
        spec = self.dcfg.camera
        if spec == "none":
            return
        self._camera_exec = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dscope-camera")
        try:
            from dscope.hardware.controller import create_controller

            self.camera = create_controller(
                spec,
                self.config,
                on_frame=self._on_frame,
                on_fault=self._on_camera_fault,
                on_recovered=self._on_camera_recovered,
                on_focus=lambda payload: self.publisher.publish("focus", dict(payload)),
            )
            self.camera.start()
            self.log.info("camera_started", spec=spec, serial=getattr(self.camera, "serial", None))
        except ImportError as exc:
            self._on_camera_fault(DScopeError("camera_unavailable", f"camera support not installed: {exc}"))
        except DScopeError as exc:
            self._on_camera_fault(exc)
        except Exception as exc:  # a driver error must not stop the hot folder from being served
            self._on_camera_fault(DScopeError("camera_unavailable", f"{type(exc).__name__}: {exc}"))

    def _on_camera_fault(self, exc: DScopeError) -> None:
        self.log.error("camera_fault", code=exc.code, message=exc.message)
        self.machine.try_fire("fail", {"code": exc.code, "message": exc.message})

    def _on_camera_recovered(self, message: str) -> None:
        self.log.info("camera_recovered", message=message)
        self.machine.try_fire("recovered")

    def _on_frame(self, frame, reply_later=None) -> None:
        """A camera frame (hardware trigger or software ``trigger``): same path as a hot-folder image."""
        source = {"kind": "camera", "serial": frame.serial, "frame_id": int(frame.frame_id),
                  "host_time_s": frame.host_time_s, "frame_kind": frame.kind}
        for attr in ("focus_metric", "focus_metric_name", "warnings"):  # set by the camera controller when known
            if getattr(frame, attr, None) is not None:
                source[attr] = getattr(frame, attr)
        try:
            png = self._save_frame(frame, self.frames_dir)
        except (OSError, DScopeError) as exc:
            self.log.error("frame_save_failed", error=str(exc))
            png = None
        info = {"path": str(png) if png else None, "filename": png.name if png else None, "sha256": None}
        job = Job(uuid.uuid4().hex, "array", source, payload=(frame.image, info), frame_png=png, reply_later=reply_later)
        self._inbox.append(job)
        self.waker.wake()

    # ------------------------------------------------------------------ calibration (camera thread)
    def _calibrate(self, args: dict, reply_later, timeout_s: float) -> None:
        """``calibrate``: capture -> measure -> write calibration.json + history -> apply -> publish -> reply.

        Runs in the camera thread (never the control or main thread).  Camera errors move to
        ``fault`` (published on ``state``); a target without a usable lattice / fiber replies
        ``calibration_failed`` and returns to ``idle``.
        """
        from dscope.calibration_io import write_calibration
        from dscope.inspection.calibration import calibrate_dot_grid, calibrate_reference_fiber

        try:
            frame = self.camera.capture_calibration(timeout_s)
        except DScopeError as exc:  # any camera error while calibrating: fault, error published
            self._on_camera_fault(exc)
            reply_later({"ok": False, "error": {"code": exc.code, "message": exc.message}})
            return
        with self._lock:
            config, dcfg, profile = self.config, self.dcfg, self._settings.profile
        target = self._calibration_target(config, dcfg)
        source = {"kind": "camera", "serial": frame.serial, "frame_id": int(frame.frame_id),
                  "host_time_s": frame.host_time_s, "frame_kind": frame.kind}
        if "dot_spacing_um" in args:
            method, request = "dot_grid", {"dot_spacing_um": float(args["dot_spacing_um"])}
        else:
            method, request = "reference_fiber", {"cladding_um": float(args["cladding_um"])}
        base = {"method": method, **request, "source": source, "calibration_file": str(target)}
        t0 = time.monotonic()
        try:
            try:  # the raw target beside calibration.json, so every history row can be re-measured
                png = self._save_png(frame.image, target.parent,
                                     f"{target.stem}_{self._frame_stem(frame)}")
            except (OSError, DScopeError) as exc:
                self.log.error("calibration_frame_save_failed", error=str(exc))
                png = None
            base["frame_path"] = str(png) if png else None
            if method == "dot_grid":
                result = calibrate_dot_grid(frame.image, request["dot_spacing_um"], config.calibration)
            else:
                result = calibrate_reference_fiber(frame.image, request["cladding_um"],
                                                   config.profile(profile).localization)
            doc = write_calibration(result, target, image_path=png)
            applied = False
            if args.get("apply", True):
                with self._lock:
                    choice = {**self._choice, "calibration_path": str(target)}
                    settings = self._build_settings(config, dcfg, choice)  # re-reads and validates the file
                    self._choice, self._settings = choice, settings
                    self._settings_key += 1
                applied = True
        except DScopeError as exc:  # calibration_failed (no lattice / fiber, cannot write), calibration_invalid
            err = {"code": exc.code, "message": exc.message}
            self.log.warning("calibration_failed", **base, error=err)
            with self._lock:
                self._last_calibration = {"ok": False, **base, "error": err}
            self.publisher.publish("calibration", {"ok": False, **base, "error": err})
            self.machine.try_fire("abort")
            reply_later({"ok": False, "error": err, **base})
            return
        except Exception as exc:  # a bug in the measurement: report it, back to idle (the camera is fine)
            self.log.exception("calibration_crashed", **base)
            err = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
            self.publisher.publish("calibration", {"ok": False, **base, "error": err})
            self.machine.try_fire("abort")
            reply_later({"ok": False, "error": err, **base})
            return
        payload = {
            "ok": True,
            **base,
            "um_per_px": doc["um_per_px"],
            "uncertainty_um_per_px": doc["uncertainty_um_per_px"],
            "n_dots": doc["n_dots"],
            "history_csv": doc["history_csv"],
            "timestamp": doc["timestamp"],
            "applied": applied,
            "compute_s": round(time.monotonic() - t0, 6),
            "details": doc.get("details", {}),
        }
        with self._lock:
            self._last_calibration = payload
        self.log.info("calibrated", **{k: v for k, v in payload.items() if k != "details"})
        if applied:
            self.log.info("settings_changed", **self.settings_summary())
        self.publisher.publish("calibration", payload)
        self.machine.try_fire("calibrated")
        reply_later({**payload, "settings": self.settings_summary()})

    @staticmethod
    def _frame_stem(frame) -> str:
        stamp = datetime.fromtimestamp(frame.host_time_s, tz=timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        safe_serial = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(frame.serial))
        return f"{safe_serial}_{int(frame.frame_id)}_{stamp}"

    def _save_png(self, image, folder: Path, stem: str) -> Path:
        """Write ``image`` losslessly as ``folder/stem.png`` (a taken name gets a suffix; never overwrites)."""
        import cv2

        folder.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise DScopeError("grab_failed", "frame could not be encoded as PNG")
        img, _ = unique_destination(folder, stem, ".png")
        write_new_file(img, buf.tobytes())
        return img

    def _save_frame(self, frame, folder: Path) -> Path:
        """Save the raw frame losslessly (PNG, 8 or 16 bit) under ``folder/YYYYMMDD/``; never overwrites."""
        import cv2

        day = datetime.fromtimestamp(frame.host_time_s, tz=timezone.utc).strftime("%Y%m%d")
        d = folder / day
        d.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(frame.host_time_s, tz=timezone.utc).strftime("%H%M%S%f")
        safe_serial = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(frame.serial))
        ok, buf = cv2.imencode(".png", frame.image)
        if not ok:
            raise DScopeError("grab_failed", "frame could not be encoded as PNG")
        img, _ = unique_destination(d, f"{safe_serial}_{int(frame.frame_id)}_{stamp}", ".png")
        write_new_file(img, buf.tobytes())
        return img

    def _cmd_camera(self, cmd: str, args: dict, reply_later) -> dict | None:
        if self.camera is None:
            raise DScopeError("camera_unavailable", "no camera configured (start the daemon with --camera)")
        if cmd in ("trigger", "calibrate"):
            self._check_accepting()
        self.machine.fire(cmd)  # invalid_state reply when not allowed now
        self._camera_exec.submit(self._camera_task, cmd, args, reply_later)
        return None

    def _camera_task(self, cmd: str, args: dict, reply_later) -> None:  # camera thread
        timeout_s = self.dcfg.camera_timeout_s
        try:
            if cmd == "trigger":
                frame = self.camera.trigger(timeout_s)
                self.machine.try_fire("captured")
                wait_verdict = bool(args.get("wait"))
                self._on_frame(frame, reply_later if wait_verdict else None)
                if not wait_verdict:
                    reply_later({"ok": True, "serial": frame.serial, "frame_id": int(frame.frame_id)})
            elif cmd == "calibrate":
                self._calibrate(args, reply_later, timeout_s)
            elif cmd == "focus_start":
                self.camera.start_focus()
                reply_later({"ok": True, "state": self.machine.state})
            elif cmd == "focus_stop":
                self.camera.stop_focus()
                reply_later({"ok": True, "state": self.machine.state})
        except DScopeError as exc:
            if exc.code in ("camera_removed", "camera_unavailable"):
                self._on_camera_fault(exc)
            elif not self.machine.try_fire("abort") and cmd == "focus_start":
                self.machine.try_fire("focus_stop")
            reply_later({"ok": False, "error": {"code": exc.code, "message": exc.message}})
        except Exception as exc:  # a camera-driver bug: report, fault, keep serving the hot folder
            self.log.exception("camera_task_failed", cmd=cmd)
            err = DScopeError("internal_error", f"{type(exc).__name__}: {exc}")
            self._on_camera_fault(err)
            reply_later({"ok": False, "error": {"code": err.code, "message": err.message}})


__all__ = ["Daemon", "Job", "default_state_dir", "configure_daemon_logging"]
