"""Basler camera over pypylon (issue 7).

:class:`BaslerCamera` is a thin, single-threaded wrapper of a pylon
``InstantCamera``: open by serial (or the first device), apply the settings of
the ``camera`` config section, save/load the node map as a ``.pfs`` file,
grab frames on a software trigger or collect frames of a hardware trigger,
and notice device removal.  Threads, reconnection and focus live in
:mod:`dscope.hardware.controller`, which serialises every call with a lock.

pylon's camera emulator (device class ``BaslerCamEmu``) is enabled by the
``PYLON_CAMEMU`` environment variable, which pylon reads when its transport
layer factory is first created; :func:`import_pylon` sets it before that
happens when an emulated camera is asked for.

Fault semantics
---------------
* no frame within the timeout -> ``grab_timeout`` (never ``camera_removed``:
  removal is only reported when pylon says the device is gone);
* a buffer that arrived incomplete or failed -> ``grab_failed``;
* pylon's removal callback or ``IsCameraDeviceRemoved`` -> ``camera_removed``;
* no device / cannot open -> ``camera_unavailable``;
* a configured value the camera refuses -> ``config_invalid``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dscope.errors import DScopeError
from dscope.hardware.base import Frame
from dscope.hardware.config import CameraConfig

log = logging.getLogger("dscope.hardware.camera")

#: Device class of pylon's emulator.
EMULATOR_DEVICE_CLASS = "BaslerCamEmu"

_pylon_mod = None
_genicam_mod = None
_import_lock = threading.Lock()


def import_pylon(emulator_devices: int | None = None):
    """Import pypylon (lazily) and return ``(pylon, genicam)``.

    When ``emulator_devices`` is given and ``PYLON_CAMEMU`` is not set yet,
    it is set first so the emulator's transport layer offers that many devices.
    """
    global _pylon_mod, _genicam_mod
    with _import_lock:
        if emulator_devices and not os.environ.get("PYLON_CAMEMU"):
            os.environ["PYLON_CAMEMU"] = str(int(emulator_devices))
        if _pylon_mod is None:
            try:
                from pypylon import genicam, pylon
            except ImportError as exc:  # pragma: no cover - pypylon is a dependency
                raise DScopeError("camera_unavailable", f"pypylon is not installed: {exc}") from None
            _pylon_mod, _genicam_mod = pylon, genicam
    return _pylon_mod, _genicam_mod


@dataclass(frozen=True)
class DeviceDescription:
    """One enumerated camera."""

    serial: str
    model: str
    device_class: str
    friendly_name: str

    @property
    def emulated(self) -> bool:
        return self.device_class == EMULATOR_DEVICE_CLASS


def enumerate_devices(emulated: bool | None = None, emulator_devices: int | None = None) -> list[DeviceDescription]:
    """Cameras pylon can see; ``emulated`` True/False keeps only emulator/real devices."""
    pylon, genicam = import_pylon(emulator_devices)
    try:
        infos = pylon.TlFactory.GetInstance().EnumerateDevices()
    except genicam.GenericException as exc:
        raise DScopeError("camera_unavailable", f"pylon device enumeration failed: {exc}") from None
    out = [
        DeviceDescription(i.GetSerialNumber(), i.GetModelName(), i.GetDeviceClass(), i.GetFriendlyName()) for i in infos
    ]
    if emulated is not None:
        out = [d for d in out if d.emulated == emulated]
    return out


_handler_cls = None
_open_cameras: "weakref.WeakSet[BaslerCamera]" = weakref.WeakSet()


def _removal_handler_class():
    """pylon ConfigurationEventHandler subclass (built once, after pypylon is imported)."""
    global _handler_cls
    if _handler_cls is None:
        pylon, _ = import_pylon()

        class RemovalHandler(pylon.ConfigurationEventHandler):
            def __init__(self, event: threading.Event, callback: Callable[[], None] | None):
                super().__init__()
                self.event, self.callback = event, callback

            def OnCameraDeviceRemoved(self, camera):  # noqa: N802 - pylon's name
                self.event.set()
                if self.callback is not None:
                    try:
                        self.callback()
                    except Exception:  # pragma: no cover - never let an exception into pylon's thread
                        log.exception("camera removal callback failed")

        _handler_cls = RemovalHandler
    return _handler_cls


@atexit.register
def _close_open_cameras() -> None:
    """Close cameras still open at exit: pylon objects must not be torn down by the garbage collector."""
    for cam in list(_open_cameras):
        try:
            cam.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


def _ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000.0)))


class BaslerCamera:
    """One Basler camera (real or emulated) driven through pypylon.

    Not thread-safe: the caller serialises calls (the controller holds a lock).
    ``on_removed`` is called from a pylon thread when the device disappears;
    it must return quickly.

    Parameters
    ----------
    config : CameraConfig
        The ``camera`` section.
    serial : str, optional
        Serial number to open; None = ``config.serial`` or the first device.
    emulated : bool
        Use pylon's emulator (only ``BaslerCamEmu`` devices are considered).
    image_source : str, optional
        Emulator only: an image file or folder the emulator serves (in name
        order, cycling) instead of its test pattern.
    on_removed : callable, optional
        Called with no argument when pylon reports the device removed.
    """

    def __init__(
        self,
        config: CameraConfig,
        *,
        serial: str | None = None,
        emulated: bool = False,
        image_source: str | None = None,
        on_removed: Callable[[], None] | None = None,
    ):
        self.config = config
        self.requested_serial = serial or config.serial
        self.emulated = emulated
        self.image_source = image_source
        self._on_removed = on_removed
        self._cam = None
        self._handler = None
        self._removed = threading.Event()
        self.serial: str = self.requested_serial or ""
        self.model: str = ""
        self.skipped_nodes: list[str] = []
        self.active_trigger_source: str | None = None
        self.pylon, self.genicam = import_pylon(config.emulator.device_count if emulated else None)

    # ------------------------------------------------------------------ open / close
    @property
    def is_open(self) -> bool:
        return self._cam is not None and self._cam.IsOpen()

    @property
    def removal_reported(self) -> bool:
        """True once pylon's removal callback fired (no pylon call: safe without the lock)."""
        return self._removed.is_set()

    @property
    def removed(self) -> bool:
        """True once pylon reported the device removed (callback, or polled now).

        Polls ``IsCameraDeviceRemoved``: call it only from the thread that owns
        the camera (the controller's lock); pylon calls from two threads at
        once can deadlock on the GIL.
        """
        if self._removed.is_set():
            return True
        if self._cam is not None:
            try:
                if self._cam.IsCameraDeviceRemoved():
                    self._removed.set()
                    return True
            except self.genicam.GenericException:  # pragma: no cover - defensive
                return False
        return False

    def _select_device(self):
        pylon, genicam = self.pylon, self.genicam
        try:
            factory = pylon.TlFactory.GetInstance()
            if self.emulated:  # only the emulator's transport layer: no network discovery
                tl = factory.CreateTl(EMULATOR_DEVICE_CLASS)
                infos = list(tl.EnumerateDevices()) if tl is not None else []
            else:
                infos = list(factory.EnumerateDevices())
        except genicam.GenericException as exc:
            raise DScopeError("camera_unavailable", f"pylon device enumeration failed: {exc}") from None
        if self.emulated:
            infos = [i for i in infos if i.GetDeviceClass() == EMULATOR_DEVICE_CLASS]
            if not infos:
                raise DScopeError(
                    "camera_unavailable",
                    "no pylon emulator device: PYLON_CAMEMU must be set before pypylon is first used",
                )
        elif not self.requested_serial:
            real = [i for i in infos if i.GetDeviceClass() != EMULATOR_DEVICE_CLASS]
            infos = real
        if self.requested_serial:
            match = [i for i in infos if i.GetSerialNumber() == self.requested_serial]
            if not match:
                seen = ", ".join(i.GetSerialNumber() for i in infos) or "none"
                raise DScopeError(
                    "camera_unavailable", f"no camera with serial {self.requested_serial!r} (found: {seen})"
                )
            return match[0]
        if not infos:
            raise DScopeError("camera_unavailable", "no Basler camera found")
        return infos[0]

    def open(self) -> None:
        """Find, open and configure the camera (``pfs_file`` first, then the explicit settings).

        Raises
        ------
        DScopeError
            ``camera_unavailable`` (no device / cannot open), ``config_invalid``
            (a value the camera refuses, unreadable .pfs), ``file_not_found``
            (emulator image source missing).
        """
        pylon, genicam = self.pylon, self.genicam
        if self.image_source is not None and not Path(self.image_source).exists():
            raise DScopeError("file_not_found", f"emulator image source {self.image_source} does not exist")
        self.close()
        self._removed.clear()
        info = self._select_device()
        try:
            cam = pylon.InstantCamera(pylon.TlFactory.GetInstance().CreateDevice(info))
        except genicam.GenericException as exc:
            raise DScopeError("camera_unavailable", f"cannot create camera {info.GetSerialNumber()}: {exc}") from None
        handler = _removal_handler_class()(self._removed, self._on_removed)
        try:
            # Replace the default continuous-acquisition configuration: the trigger is set up below.
            cam.RegisterConfiguration(handler, pylon.RegistrationMode_ReplaceAll, pylon.Cleanup_None)
            cam.MaxNumBuffer.Value = self.config.buffer_count
            cam.Open()
        except genicam.GenericException as exc:
            try:
                cam.DestroyDevice()
            except genicam.GenericException:  # pragma: no cover - defensive
                pass
            raise DScopeError("camera_unavailable", f"cannot open camera {info.GetSerialNumber()}: {exc}") from None
        self._cam, self._handler = cam, handler
        _open_cameras.add(self)
        self.serial = info.GetSerialNumber()
        self.model = info.GetModelName()
        try:
            if self.config.pfs_file:
                self.load_pfs(self.config.pfs_file)
            self.apply_settings()
        except BaseException:
            self.close()
            raise
        log.info("camera opened serial=%s model=%s emulated=%s", self.serial, self.model, self.emulated)

    def close(self) -> None:
        """Stop grabbing, close and destroy the device (safe to call repeatedly, also after removal)."""
        cam, self._cam = self._cam, None
        if cam is None:
            return
        _open_cameras.discard(self)
        handler, self._handler = self._handler, None
        for step in ("StopGrabbing", "Close", "DeregisterConfiguration", "DestroyDevice"):
            try:
                if step == "DeregisterConfiguration":
                    if handler is not None:
                        cam.DeregisterConfiguration(handler)
                else:
                    getattr(cam, step)()
            except self.genicam.GenericException as exc:
                log.debug("camera close: %s failed: %s", step, exc)
        # The C++ camera must go before the Python handler it points to.
        del cam
        del handler
        self.active_trigger_source = None

    def _require_open(self):
        if self._cam is None:
            raise DScopeError("camera_unavailable", "the camera is not open")
        if self.removed:
            raise DScopeError("camera_removed", f"camera {self.serial} was disconnected")
        return self._cam

    # ------------------------------------------------------------------ nodes
    def node(self, name: str):
        """Raw GenICam node of the device node map, or None when the model lacks it."""
        cam = self._require_open()
        try:
            n = cam.GetNodeMap().GetNode(name)
        except self.genicam.GenericException:
            return None
        if n is None or not self.genicam.IsAvailable(n):
            return None
        return n

    def set_node(self, name: str, value, *, required: bool = False) -> bool:
        """Set a node; a node the model lacks is skipped with a warning (or refused when required)."""
        genicam = self.genicam
        n = self.node(name)
        if n is None or not genicam.IsWritable(n):
            if required:
                raise DScopeError("config_invalid", f"camera {self.serial} has no writable {name} node")
            if name not in self.skipped_nodes:
                self.skipped_nodes.append(name)
            log.warning("camera %s: node %s missing or not writable; skipped", self.serial, name)
            return False
        try:
            if hasattr(n, "Symbolics"):
                if str(value) not in list(n.Symbolics):
                    raise DScopeError(
                        "config_invalid",
                        f"camera {self.serial}: {name}={value!r} not supported (choose one of {list(n.Symbolics)})",
                    )
                n.Value = str(value)
            elif isinstance(value, float) and hasattr(n, "Min") and hasattr(n, "Max"):
                lo, hi = float(n.Min), float(n.Max)
                if not lo <= value <= hi:
                    raise DScopeError(
                        "config_invalid", f"camera {self.serial}: {name}={value} outside the camera's range [{lo}, {hi}]"
                    )
                n.Value = value
            else:
                n.Value = value
        except genicam.GenericException as exc:
            raise DScopeError("config_invalid", f"camera {self.serial}: cannot set {name}={value!r}: {exc}") from None
        return True

    def get(self, name: str):
        """Value of a node, or None when the model lacks it."""
        n = self.node(name)
        if n is None or not self.genicam.IsReadable(n):
            return None
        try:
            return n.Value
        except self.genicam.GenericException:  # pragma: no cover - defensive
            return None

    def apply_settings(self, *, exposure_us: float | None = None) -> None:
        """Apply the config: pixel format, manual exposure/gain, gamma, trigger, emulator source.

        Must run while not grabbing (PixelFormat and the emulator's file name are
        locked during acquisition); grabbing is stopped first.
        """
        cam = self._require_open()
        self._stop_grabbing()
        c = self.config
        self.set_node("PixelFormat", c.pixel_format, required=True)
        self.set_node("ExposureAuto", "Off")
        if not self.set_node("ExposureTime", float(exposure_us or c.exposure_us)):
            self.set_node("ExposureTimeAbs", float(exposure_us or c.exposure_us))
        self.set_node("GainAuto", "Off")
        self.set_node("Gain", float(c.gain_db))
        if self.node("GammaEnable") is not None:
            self.set_node("GammaEnable", True)
        if self.node("GammaSelector") is not None:
            self.set_node("GammaSelector", "User")
        self.set_node("Gamma", float(c.gamma))
        self.set_node("AcquisitionMode", "Continuous")
        self.set_node("TriggerSelector", "FrameStart")
        self.set_node("TriggerMode", "On", required=True)
        self.set_node("TriggerActivation", c.trigger_activation)
        self.set_trigger_source("Software" if c.trigger_mode == "software" else c.trigger_source)
        if self.emulated and self.image_source is not None:
            self.set_node("TestImageSelector", "Off", required=True)
            self.set_node("ImageFileMode", "On", required=True)
            self.set_node("ImageFilename", str(Path(self.image_source).resolve()), required=True)
        del cam

    def set_exposure(self, exposure_us: float) -> None:
        """Change the exposure time (allowed while grabbing on Basler cameras)."""
        if not self.set_node("ExposureTime", float(exposure_us)):
            self.set_node("ExposureTimeAbs", float(exposure_us))

    def read_settings(self) -> dict:
        """Current values of the nodes this module configures (None where the model lacks one)."""
        names = (
            "PixelFormat ExposureAuto ExposureTime GainAuto Gain Gamma TriggerSelector TriggerMode "
            "TriggerSource TriggerActivation Width Height"
        ).split()
        return {n: self.get(n) for n in names}

    # ------------------------------------------------------------------ .pfs
    def save_pfs(self, path: str | os.PathLike) -> str:
        """Save the whole device node map as a pylon feature persistence (``.pfs``) file."""
        cam = self._require_open()
        p = os.fspath(path)
        try:
            self.pylon.FeaturePersistence.Save(p, cam.GetNodeMap())
        except self.genicam.GenericException as exc:
            raise DScopeError("config_invalid", f"cannot save camera settings to {p}: {exc}") from None
        return p

    def load_pfs(self, path: str | os.PathLike, *, validate: bool = True) -> None:
        """Load a ``.pfs`` file into the device node map (grabbing is stopped first)."""
        cam = self._require_open()
        p = os.fspath(path)
        if not Path(p).is_file():
            raise DScopeError("file_not_found", f"camera settings file {p} does not exist")
        was_grabbing = cam.IsGrabbing()
        self._stop_grabbing()
        try:
            self.pylon.FeaturePersistence.Load(p, cam.GetNodeMap(), validate)
        except self.genicam.GenericException as exc:
            raise DScopeError("config_invalid", f"cannot load camera settings from {p}: {exc}") from None
        if was_grabbing:
            self.start_grabbing()

    # ------------------------------------------------------------------ grabbing
    def start_grabbing(self) -> None:
        cam = self._require_open()
        if not cam.IsGrabbing():
            try:
                cam.StartGrabbing(self.pylon.GrabStrategy_OneByOne)
            except self.genicam.GenericException as exc:
                raise self._fault(f"cannot start grabbing: {exc}", "camera_unavailable") from None

    def _stop_grabbing(self) -> None:
        if self._cam is not None and self._cam.IsGrabbing():
            try:
                self._cam.StopGrabbing()
            except self.genicam.GenericException as exc:  # pragma: no cover - defensive
                log.debug("StopGrabbing failed: %s", exc)

    def stop_grabbing(self) -> None:
        self._stop_grabbing()

    def restart_grabbing(self) -> None:
        """Stop and start acquisition: flushes queued and in-flight buffers (after a timeout)."""
        self._stop_grabbing()
        self.start_grabbing()

    @property
    def is_grabbing(self) -> bool:
        return self._cam is not None and self._cam.IsGrabbing()

    def set_trigger_source(self, source: str) -> None:
        """Select the FrameStart trigger source (``Software`` or an input line)."""
        if source == self.active_trigger_source:
            return
        cam = self._require_open()
        # Acquisition is restarted around the change: some devices (the emulator among them) read the
        # trigger configuration only when grabbing starts; restarting also flushes in-flight buffers.
        was_grabbing = cam.IsGrabbing()
        self._stop_grabbing()
        self.set_node("TriggerSource", source, required=True)
        self.active_trigger_source = source
        if was_grabbing:
            self.start_grabbing()

    def _fault(self, message: str, default_code: str) -> DScopeError:
        """The right error for a failure: removal wins over everything else."""
        if self.removed:
            return DScopeError("camera_removed", f"camera {self.serial} was disconnected ({message})")
        return DScopeError(default_code, f"camera {self.serial}: {message}")

    def retrieve(self, timeout_s: float, kind: str) -> Frame | None:
        """Wait up to ``timeout_s`` for the next buffer; None on timeout.

        Raises ``grab_failed`` for an incomplete/failed buffer and
        ``camera_removed`` when the device is gone.
        """
        cam = self._require_open()
        try:
            res = cam.RetrieveResult(_ms(timeout_s), self.pylon.TimeoutHandling_Return)
        except self.genicam.GenericException as exc:
            raise self._fault(f"RetrieveResult failed: {exc}", "grab_failed") from None
        if not res.IsValid():
            if self.removed:
                raise self._fault("no frame", "grab_timeout")
            return None
        try:
            if not res.GrabSucceeded():
                raise self._fault(
                    f"incomplete or failed buffer (error 0x{res.GetErrorCode() & 0xFFFFFFFF:08x}: "
                    f"{res.GetErrorDescription().strip()})",
                    "grab_failed",
                )
            host_t = time.time()
            ts = int(res.GetTimeStamp())
            image = res.GetArray()
            return Frame(
                image=image,
                frame_id=int(res.GetBlockID()),
                serial=self.serial,
                host_time_s=host_t,
                camera_timestamp=ts if ts else None,
                kind=kind,
            )
        finally:
            res.Release()

    def drain(self, kind: str) -> list[Frame]:
        """Collect buffers already waiting in the output queue (failed ones are dropped)."""
        out = []
        cam = self._require_open()
        while cam.GetGrabResultWaitObject().Wait(0):
            try:
                f = self.retrieve(0.001, kind)
            except DScopeError as exc:
                if exc.code == "camera_removed":
                    raise
                log.warning("dropped a failed queued buffer: %s", exc.message)
                continue
            if f is None:
                break
            out.append(f)
        return out

    def software_trigger(self) -> None:
        """Wait until the camera accepts a trigger, then fire the software trigger."""
        cam = self._require_open()
        try:
            ready = cam.WaitForFrameTriggerReady(
                _ms(self.config.trigger_ready_timeout_s), self.pylon.TimeoutHandling_Return
            )
            if not ready:
                raise self._fault(
                    f"not ready for a trigger within {self.config.trigger_ready_timeout_s} s", "grab_timeout"
                )
            cam.ExecuteSoftwareTrigger()
        except self.genicam.GenericException as exc:
            raise self._fault(f"software trigger failed: {exc}", "grab_failed") from None

    def grab_software(
        self,
        timeout_s: float,
        retries: int,
        kind: str = "trigger",
        on_stale: Callable[[Frame], None] | None = None,
        restore_source: bool = True,
    ) -> Frame:
        """One frame on a software trigger, with retries.

        Each attempt waits ``timeout_s`` for the frame.  A timeout or a
        failed buffer is retried ``retries`` times; after a timeout the
        acquisition is restarted so a late frame can never be taken for the
        next trigger's.  Buffers already queued before the trigger (e.g.
        fixture frames in hardware mode) go to ``on_stale`` (or are dropped).
        The trigger source is switched to ``Software`` for the grab and, with
        ``restore_source``, back to the previous source afterwards.

        Raises
        ------
        DScopeError
            ``grab_timeout`` / ``grab_failed`` after the last attempt (details
            hold ``attempts``), ``camera_removed`` at once when the device is gone.
        """
        last: DScopeError | None = None
        source_before = self.active_trigger_source
        for stale in self.drain(kind="hardware_trigger") if self.is_grabbing else []:
            if on_stale is not None:
                on_stale(stale)
        self.set_trigger_source("Software")
        try:
            for attempt in range(retries + 1):
                self.start_grabbing()
                for stale in self.drain(kind="hardware_trigger"):
                    if on_stale is not None:
                        on_stale(stale)
                    else:
                        log.info("dropped a stale frame %s before a software trigger", stale.frame_id)
                try:
                    self.software_trigger()
                    frame = self.retrieve(timeout_s, kind)
                except DScopeError as exc:
                    if exc.code == "camera_removed":
                        raise
                    last = exc
                    if exc.code == "grab_timeout":
                        self.restart_grabbing()
                    log.warning("grab attempt %d/%d failed: %s", attempt + 1, retries + 1, exc)
                    continue
                if frame is None:
                    last = DScopeError(
                        "grab_timeout", f"camera {self.serial}: no frame within {timeout_s:g} s after a software trigger"
                    )
                    log.warning("grab attempt %d/%d: %s", attempt + 1, retries + 1, last.message)
                    self.restart_grabbing()
                    continue
                return frame
        finally:
            if restore_source and source_before not in (None, "Software") and not self.removed:
                self.set_trigger_source(source_before)
        assert last is not None
        raise DScopeError(last.code, f"{last.message} (after {retries + 1} attempts)", attempts=retries + 1)

    # ------------------------------------------------------------------ emulator helpers
    def simulate_removal(self) -> None:
        """Emulator only: make pylon report this device as removed (``FirePnPCallback``)."""
        self._emulator_command("FirePnPCallback")

    def force_failed_buffers(self, count: int) -> None:
        """Emulator only: the next ``count`` buffers arrive failed (``ForceFailedBuffer``)."""
        self.set_node("ForceFailedBufferCount", int(count), required=True)
        self._emulator_command("ForceFailedBuffer")

    def _emulator_command(self, name: str) -> None:
        if not self.emulated:
            raise DScopeError("bad_argument", f"{name} exists only on the pylon emulator")
        n = self.node(name)
        if n is None:
            raise DScopeError("bad_argument", f"this emulator has no {name} command")
        n.Execute()
