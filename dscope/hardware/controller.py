"""Camera controller: threads, supervisor/reconnect, fixture trigger, focus loop (issue 7).

The daemon talks to the camera only through :class:`CameraController`, built by
:func:`create_controller`.  Threads:

* **supervisor** -- waits for pylon's removal event (and polls
  ``IsCameraDeviceRemoved``); on removal it closes the device, calls
  ``on_fault(DScopeError("camera_removed"))`` and reopens with exponential
  backoff, re-applying every setting, then calls ``on_recovered(serial)``.
* **fixture** (``trigger_mode: hardware``) -- collects frames triggered on the
  input line and hands them to ``on_frame`` (kind ``hardware_trigger``).
  Waiting for the fixture is not a fault: only a failed buffer is reported
  (``on_grab_error``).
* **focus** (between :meth:`start_focus` and :meth:`stop_focus`) -- software-
  triggers preview frames at ``preview_fps``, measures the focus metric on the
  fiber region and calls ``on_focus(dict)``; with ``auto_capture.enabled`` the
  sharpest frame of a stable plateau at the peak goes to ``on_frame`` (kind
  ``focus_autocapture``).

Every camera call happens under one lock, so :meth:`trigger` and
:meth:`capture_calibration` may be called from any thread.  Callbacks are
invoked without the lock held.
"""

from __future__ import annotations

import itertools
import logging
from contextlib import contextmanager
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from dscope.config import Config
from dscope.errors import DScopeError
from dscope.hardware.base import Frame
from dscope.hardware.camera import BaslerCamera
from dscope.hardware.config import CameraConfig
from dscope.hardware.focus_tracker import FocusTracker
from dscope.inspection.focus import FocusMeasurement, measure_focus
from dscope.inspection.types import Ellipse, FiberGeometry

log = logging.getLogger("dscope.hardware.controller")

FrameCallback = Callable[[Frame], None]
FaultCallback = Callable[[DScopeError], None]


def backoff_delays(initial_s: float, max_s: float, factor: float) -> Iterator[float]:
    """Reconnect waits: ``initial_s``, then multiplied by ``factor`` up to ``max_s``, forever.

    Examples
    --------
    >>> list(itertools.islice(backoff_delays(0.5, 3.0, 2.0), 5))
    [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    d = initial_s
    while True:
        yield min(d, max_s)
        d = min(d * factor, max_s)


def parse_camera_spec(spec: str) -> tuple[bool, str | None, str | None]:
    """``"emulated[:FOLDER]" | "basler[:SERIAL]"`` -> ``(emulated, folder, serial)``.

    Examples
    --------
    >>> parse_camera_spec("emulated:/data/imgs")
    (True, '/data/imgs', None)
    >>> parse_camera_spec("basler:40123456")
    (False, None, '40123456')
    """
    kind, _, arg = (spec or "").partition(":")
    kind = kind.strip().lower()
    if kind == "emulated":
        return True, (arg or None), None
    if kind == "basler":
        return False, None, (arg.strip() or None)
    raise DScopeError(
        "bad_argument", f"camera spec {spec!r}: use 'emulated', 'emulated:FOLDER', 'basler' or 'basler:SERIAL'"
    )


def _scale_geometry(g: FiberGeometry, factor: float) -> FiberGeometry:
    """Geometry found on an image downscaled by ``factor`` (<1) mapped back to full resolution."""
    inv = 1.0 / factor
    ell = None
    if g.cladding_ellipse is not None:
        e = g.cladding_ellipse
        ell = Ellipse(
            ((e.center_px[0] + 0.5) * inv - 0.5, (e.center_px[1] + 0.5) * inv - 0.5),
            e.semi_major_px * inv,
            e.semi_minor_px * inv,
            e.angle_deg,
        )
    return FiberGeometry(
        center_px=((g.center_px[0] + 0.5) * inv - 0.5, (g.center_px[1] + 0.5) * inv - 0.5),
        cladding_radius_px=g.cladding_radius_px * inv,
        cladding_ellipse=ell,
        quality=g.quality,
        method=g.method,
    )


class CameraController:
    """Owns one camera and its threads; see the module docstring.

    Attributes
    ----------
    serial : str
        Serial number of the open (or requested) camera.
    connected : bool
        True while the camera is open and usable.
    """

    def __init__(
        self,
        config: Config,
        *,
        emulated: bool,
        image_source: str | None,
        serial: str | None,
        on_frame: FrameCallback,
        on_fault: FaultCallback,
        on_recovered: Callable[[str], None],
        on_focus: Callable[[dict], None],
        on_grab_error: FaultCallback | None = None,
    ):
        self.config = config
        self.cam_config: CameraConfig = config.camera
        self._on_frame = on_frame
        self._on_fault = on_fault
        self._on_recovered = on_recovered
        self._on_focus = on_focus
        self._on_grab_error = on_grab_error
        self._removal_event = threading.Event()
        self.camera = BaslerCamera(
            self.cam_config,
            serial=serial,
            emulated=emulated,
            image_source=image_source,
            on_removed=self._removal_event.set,
        )
        self._lock = threading.RLock()
        self._pending = 0  # threads waiting for the camera: the fixture loop yields to them
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._focus_stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._focus_thread: threading.Thread | None = None
        self._connected = False
        self._started = False
        self._down_code = "camera_unavailable"
        self._sequence = itertools.count(1)
        self.tracker = FocusTracker(self.cam_config.auto_capture, self.cam_config.focus.peak_window_s)
        self._roi_geometry: FiberGeometry | None = None
        self._roi_source = "center"
        self._focus_peak_source: str | None = None
        self.reconnects = 0
        self.reconnect_attempts = 0
        self.last_error: dict | None = None
        self.last_focus: dict | None = None

    # ------------------------------------------------------------------ state
    @property
    def serial(self) -> str:
        return self.camera.serial

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def focusing(self) -> bool:
        return self._focus_thread is not None and self._focus_thread.is_alive()

    def status(self) -> dict:
        """Snapshot for the daemon's status reply."""
        return {
            "serial": self.serial,
            "model": self.camera.model,
            "emulated": self.camera.emulated,
            "connected": self._connected,
            "trigger_mode": self.cam_config.trigger_mode,
            "focusing": self.focusing,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "skipped_nodes": list(self.camera.skipped_nodes),
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the camera, apply the settings and start the supervisor (and fixture) threads.

        Raises
        ------
        DScopeError
            ``config_invalid`` / ``file_not_found`` at once; ``camera_unavailable``
            only when ``reconnect.open_retry_on_start`` is false (otherwise the
            fault is reported through ``on_fault`` and the supervisor keeps trying).
        """
        if self._started:
            return
        self._stop.clear()
        try:
            self._open()
        except DScopeError as exc:
            if exc.code in ("config_invalid", "file_not_found") or not self.cam_config.reconnect.open_retry_on_start:
                raise
            self.last_error = exc.to_dict()
            self._down_code = "camera_unavailable"
            log.warning("camera not available at start (%s); will keep retrying", exc)
            self._call(self._on_fault, exc)
        self._started = True
        self._spawn("supervisor", self._supervise)
        if self.cam_config.trigger_mode == "hardware":
            self._spawn("fixture", self._fixture_loop)

    def stop(self) -> None:
        """Stop every thread and close the camera (idempotent)."""
        self._stop.set()
        self.stop_focus()
        for t in list(self._threads.values()):
            if t is not threading.current_thread():
                t.join(timeout=max(5.0, 3 * self.cam_config.grab_timeout_s))
        self._threads.clear()
        with self._camera():
            self.camera.close()
            self._connected = False
        self._started = False

    def _spawn(self, name: str, target) -> None:
        t = threading.Thread(target=target, name=f"camera-{name}", daemon=True)
        self._threads[name] = t
        t.start()

    def _open(self) -> None:
        with self._camera():
            self._removal_event.clear()
            self.camera.open()
            self.camera.start_grabbing()
            self._connected = True
            self.last_error = None

    @contextmanager
    def _camera(self):
        """The camera lock, announced so the fixture loop (which re-locks continuously) yields to us."""
        with self._pending_lock:
            self._pending += 1
        try:
            self._lock.acquire()
        finally:
            with self._pending_lock:
                self._pending -= 1
        try:
            yield
        finally:
            self._lock.release()

    @staticmethod
    def _call(cb, *args) -> None:
        if cb is None:
            return
        try:
            cb(*args)
        except Exception:  # a faulty callback must not kill a camera thread
            log.exception("camera callback %r failed", getattr(cb, "__name__", cb))

    # ------------------------------------------------------------------ supervisor
    def _supervise(self) -> None:
        rc = self.cam_config.reconnect
        while not self._stop.is_set():
            if self._connected:
                self._removal_event.wait(rc.removal_poll_s)
                if self._stop.is_set():
                    break
                removed = self._removal_event.is_set()
                if not removed and self._lock.acquire(blocking=False):
                    # Poll only when no other thread is inside pylon (see BaslerCamera.removed).
                    try:
                        removed = self._connected and self.camera.removed
                    finally:
                        self._lock.release()
                if not removed:
                    self._check_unplug_file()
                if removed:
                    self._handle_removal()
            else:
                self._reconnect()

    def _check_unplug_file(self) -> None:
        """Emulator demo/test hook (``camera.emulator.unplug_file``): fire pylon's removal callback."""
        path = self.cam_config.emulator.unplug_file
        if not (path and self.camera.emulated and Path(path).exists()):
            return
        try:
            Path(path).unlink()
        except OSError:
            pass
        log.warning("emulator unplug file %s found: simulating device removal", path)
        try:
            self.simulate_removal()
        except DScopeError as exc:
            log.warning("simulated removal failed: %s", exc)

    def _handle_removal(self) -> None:
        with self._camera():
            if not self._connected:
                return
            self._connected = False
            self._down_code = "camera_removed"
            serial = self.serial
            self.camera.close()
        err = DScopeError("camera_removed", f"camera {serial} was disconnected", serial=serial)
        self.last_error = err.to_dict()
        log.error("camera %s removed; reconnecting", serial)
        self._call(self._on_fault, err)

    def _reconnect(self) -> None:
        rc = self.cam_config.reconnect
        for delay in backoff_delays(rc.initial_backoff_s, rc.max_backoff_s, rc.factor):
            if self._stop.wait(delay):
                return
            self.reconnect_attempts += 1
            try:
                self._open()
            except DScopeError as exc:
                self.last_error = exc.to_dict()
                log.warning("camera reopen attempt %d failed: %s (next in <= %.1f s)", self.reconnect_attempts, exc, delay)
                continue
            self.reconnects += 1
            log.info("camera %s reopened after %d attempt(s)", self.serial, self.reconnect_attempts)
            self._call(self._on_recovered, self.serial)
            return

    def _down_error(self) -> DScopeError:
        if self._down_code == "camera_removed":
            return DScopeError("camera_removed", f"camera {self.serial} is disconnected; reconnecting")
        return DScopeError("camera_unavailable", f"camera {self.serial or '(none)'} is not available")

    # ------------------------------------------------------------------ frames
    def _finish(self, frame: Frame) -> Frame:
        """Sequence number, focus metric and out-of-focus warning of a captured frame."""
        frame.sequence = next(self._sequence)
        if frame.kind == "preview":
            return frame
        try:
            m = measure_focus(frame.image, self.cam_config.focus.measure, self._roi_geometry)
        except DScopeError as exc:
            frame.warnings.append(f"focus metric unavailable: {exc.message}")
            return frame
        frame.focus_metric, frame.focus_metric_name = m.value, m.metric_name
        f = self.cam_config.focus
        peak = self.tracker.last_peak
        if peak and f.warn_below_peak_fraction > 0 and self._focus_peak_source == m.roi_source:
            if m.value < f.warn_below_peak_fraction * peak:
                frame.warnings.append(
                    f"out of focus: focus metric {m.value:.4g} ({m.metric_name}) is {m.value / peak:.0%} of the "
                    f"last focus peak {peak:.4g} (warn below {f.warn_below_peak_fraction:.0%})"
                )
        if f.warn_below_metric > 0 and m.value < f.warn_below_metric:
            frame.warnings.append(
                f"out of focus: focus metric {m.value:.4g} ({m.metric_name}) is below {f.warn_below_metric:.4g}"
            )
        return frame

    def _deliver(self, frames: list[Frame]) -> None:
        for fr in frames:
            self._call(self._on_frame, self._finish(fr))

    def _grab(
        self,
        kind: str,
        timeout_s: float | None,
        retries: int,
        exposure_us: float | None = None,
        restore_source: bool = True,
    ) -> Frame:
        stale: list[Frame] = []
        timeout = float(timeout_s) if timeout_s is not None else self.cam_config.grab_timeout_s
        if timeout <= 0:
            raise DScopeError("bad_argument", f"timeout_s must be > 0 (got {timeout_s})")
        try:
            with self._camera():
                if not self._connected:
                    raise self._down_error()
                try:
                    if exposure_us is not None:
                        self.camera.set_exposure(exposure_us)
                    try:
                        return self.camera.grab_software(
                            timeout, retries, kind, on_stale=stale.append, restore_source=restore_source
                        )
                    finally:
                        if exposure_us is not None and not self.camera.removed:
                            self.camera.set_exposure(self.cam_config.exposure_us)
                except DScopeError as exc:
                    if exc.code == "camera_removed":
                        self._removal_event.set()
                    raise
        finally:
            if stale:
                self._deliver(stale)

    def trigger(self, timeout_s: float | None = None) -> Frame:
        """Software trigger: one frame (kind ``trigger``).

        ``timeout_s`` is the wait per attempt (default ``camera.grab_timeout_s``);
        ``camera.grab_retries`` more attempts follow a timeout or a failed buffer.

        Raises
        ------
        DScopeError
            ``grab_timeout``, ``grab_failed``, ``camera_removed`` or ``camera_unavailable``.
        """
        return self._finish(self._grab("trigger", timeout_s, self.cam_config.grab_retries))

    def capture_calibration(self, timeout_s: float | None = None) -> Frame:
        """One frame of a calibration target (kind ``calibration``; ``calibration_exposure_us`` if set)."""
        return self._finish(
            self._grab(
                "calibration", timeout_s, self.cam_config.grab_retries, exposure_us=self.cam_config.calibration_exposure_us
            )
        )

    def save_settings(self, path: str) -> str:
        """Save the camera's whole node map as ``.pfs`` (pylon FeaturePersistence)."""
        with self._camera():
            if not self._connected:
                raise self._down_error()
            return self.camera.save_pfs(path)

    def read_settings(self) -> dict:
        """Current values of the configured camera nodes (read back from the device)."""
        with self._camera():
            if not self._connected:
                raise self._down_error()
            return self.camera.read_settings()

    def camera_node_value(self, name: str):
        """Value of any device node (None when the model lacks it)."""
        with self._camera():
            if not self._connected:
                raise self._down_error()
            return self.camera.get(name)

    def simulate_removal(self) -> None:
        """Emulator only: fire pylon's device-removal callback (tests, demo)."""
        with self._camera():
            if not self._connected:
                raise self._down_error()
            self.camera.simulate_removal()

    def force_failed_buffers(self, count: int) -> None:
        """Emulator only: the next ``count`` buffers arrive failed (tests)."""
        with self._camera():
            if not self._connected:
                raise self._down_error()
            self.camera.start_grabbing()
            self.camera.force_failed_buffers(count)

    # ------------------------------------------------------------------ fixture (hardware trigger)
    def _fixture_loop(self) -> None:
        c = self.cam_config
        while not self._stop.is_set():
            if not self._connected or self.focusing:
                self._stop.wait(c.hardware_poll_s)
                continue
            frame = None
            while self._pending and not self._stop.is_set():
                time.sleep(0.002)  # a trigger/focus/status call is waiting for the camera: let it in
            try:
                with self._lock:
                    if not self._connected:
                        continue
                    self.camera.set_trigger_source(c.trigger_source)
                    self.camera.start_grabbing()
                    frame = self.camera.retrieve(c.hardware_poll_s, "hardware_trigger")
            except DScopeError as exc:
                if exc.code == "camera_removed" or self.camera.removal_reported:
                    self._removal_event.set()
                    self._stop.wait(c.hardware_poll_s)
                    continue
                log.warning("fixture frame lost: %s", exc)
                self._call(self._on_grab_error, exc)
                continue
            if frame is not None:
                self._deliver([frame])

    # ------------------------------------------------------------------ focus
    def start_focus(self) -> None:
        """Start the preview loop publishing ``on_focus`` at ``preview_fps`` (idempotent)."""
        if self.focusing:
            return
        if not self._started:
            raise DScopeError("camera_unavailable", "the camera controller is not started")
        self.tracker.reset()
        self._focus_stop.clear()
        self._focus_thread = threading.Thread(target=self._focus_loop, name="camera-focus", daemon=True)
        self._focus_thread.start()

    def stop_focus(self) -> None:
        """Stop the preview loop (idempotent); the session's peak stays the out-of-focus reference."""
        self._focus_stop.set()
        t = self._focus_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=max(5.0, 3 * self.cam_config.grab_timeout_s))
        self._focus_thread = None

    def _locate_roi(self, image: np.ndarray) -> None:
        """Find the fiber on a downscaled copy; keep the last good region when it fails."""
        f = self.cam_config.focus
        try:
            from dscope.inspection.localize import localize_fiber
        except ImportError:  # pragma: no cover - the localization module is part of the package
            return
        img = image
        if img.dtype != np.uint8:
            img = cv2.convertScaleAbs(img, alpha=255.0 / float(np.iinfo(img.dtype).max))
        h, w = img.shape[:2]
        factor = min(1.0, f.localize_max_side_px / float(max(h, w)))
        small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        try:
            params = self.config.profile(f.localization_profile).localization
            g = localize_fiber(small, params)
        except DScopeError:
            return
        except Exception:  # localization is best effort here: the metric falls back to the last region
            log.exception("fiber localization failed during focusing")
            return
        self._roi_geometry = _scale_geometry(g, factor) if factor < 1.0 else g

    def _focus_loop(self) -> None:
        c = self.cam_config
        period = 1.0 / c.preview_fps
        next_t = time.monotonic()
        n = 0
        while not (self._focus_stop.is_set() or self._stop.is_set()):
            now = time.monotonic()
            if now < next_t:
                self._focus_stop.wait(next_t - now)
                continue
            next_t += period
            if next_t < now:  # fell behind (slow grab): keep the rate, skip the missed ticks
                next_t = now + period
            if not self._connected:
                continue
            try:
                # stays on the software source while focusing (the fixture loop pauses meanwhile)
                frame = self._grab("preview", c.grab_timeout_s, 0, restore_source=False)
            except DScopeError as exc:
                self._call(self._on_focus, {"metric": None, "error": exc.to_dict(), "time": time.time()})
                continue
            frame.sequence = next(self._sequence)
            if n % c.focus.roi_refresh_frames == 0 or self._roi_geometry is None:
                self._locate_roi(frame.image)
            n += 1
            try:
                m: FocusMeasurement = measure_focus(frame.image, c.focus.measure, self._roi_geometry)
            except DScopeError as exc:
                self._call(self._on_focus, {"metric": None, "error": exc.to_dict(), "time": time.time()})
                continue
            if m.roi_source != self._focus_peak_source:
                self.tracker.reset()  # metrics of different regions are not comparable
                self._focus_peak_source = m.roi_source
            frame.focus_metric, frame.focus_metric_name = m.value, m.metric_name
            upd = self.tracker.update(m.value, time.monotonic(), frame)
            msg = {
                "metric": m.value,
                "metric_name": m.metric_name,
                "peak": upd.peak,
                "relative": upd.relative,
                "stable": upd.stable,
                "frame_id": frame.frame_id,
                "sequence": frame.sequence,
                "serial": frame.serial,
                "roi_px": list(m.roi_xywh),
                "roi_source": m.roi_source,
                "auto_capture": upd.capture is not None,
                "time": frame.host_time_s,
            }
            self.last_focus = msg
            self._call(self._on_focus, msg)
            if upd.capture is not None:
                cap = upd.capture
                captured = Frame(
                    image=cap.image,
                    frame_id=cap.frame_id,
                    serial=cap.serial,
                    host_time_s=cap.host_time_s,
                    camera_timestamp=cap.camera_timestamp,
                    kind="focus_autocapture",
                    focus_metric=cap.focus_metric,
                    focus_metric_name=cap.focus_metric_name,
                )
                captured.sequence = next(self._sequence)
                self._call(self._on_frame, captured)


def create_controller(
    spec: str,
    config: Config,
    *,
    on_frame: FrameCallback,
    on_fault: FaultCallback,
    on_recovered: Callable[[str], None],
    on_focus: Callable[[dict], None],
    on_grab_error: FaultCallback | None = None,
) -> CameraController:
    """Build (not start) the controller for ``spec``.

    Parameters
    ----------
    spec : str
        ``"emulated"`` (pylon emulator, test pattern or ``camera.emulator.default_image_folder``),
        ``"emulated:FOLDER"`` (the emulator serves FOLDER's images in name order, cycling),
        ``"basler"`` (``camera.serial`` or the first real camera) or ``"basler:SERIAL"``.
    config : Config
        Root configuration; ``config.camera`` is used.
    on_frame, on_fault, on_recovered, on_focus : callable
        See the module docstring.  ``on_grab_error`` (optional) receives fixture
        frames lost to failed buffers.

    Raises
    ------
    DScopeError
        ``bad_argument`` for a malformed spec, ``file_not_found`` for a missing FOLDER.

    Examples
    --------
    >>> from dscope.config import load_config
    >>> ctl = create_controller("emulated", load_config(), on_frame=print, on_fault=print,
    ...                         on_recovered=print, on_focus=print)  # doctest: +SKIP
    >>> ctl.start(); frame = ctl.trigger(2.0); ctl.stop()  # doctest: +SKIP
    """
    emulated, folder, serial = parse_camera_spec(spec)
    if emulated and folder is None:
        folder = config.camera.emulator.default_image_folder
    if folder is not None and not Path(folder).exists():
        raise DScopeError("file_not_found", f"emulator image folder {folder} does not exist")
    return CameraController(
        config,
        emulated=emulated,
        image_source=folder,
        serial=serial,
        on_frame=on_frame,
        on_fault=on_fault,
        on_recovered=on_recovered,
        on_focus=on_focus,
        on_grab_error=on_grab_error,
    )
