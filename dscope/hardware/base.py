"""Camera-side data types shared by the hardware layer and the daemon."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

#: Values of :attr:`Frame.kind`.
FRAME_KINDS: tuple[str, ...] = ("trigger", "hardware_trigger", "preview", "calibration", "focus_autocapture")


@dataclass
class Frame:
    """One image from a camera.

    ``frame_id`` is the camera's frame counter (pylon's block id; it restarts
    when the camera is reopened); ``host_time_s`` the host's epoch time when
    the buffer arrived; ``camera_timestamp`` the device tick count when the
    model provides it (the emulator does not).  ``sequence`` counts the
    frames a controller delivered and never restarts, so ``(serial,
    frame_id, sequence)`` is unique for a daemon run.  ``focus_metric`` is
    the focus measure of the frame's fiber region and ``warnings`` holds
    notes for the result document (e.g. out of focus).
    """

    image: np.ndarray
    frame_id: int
    serial: str
    host_time_s: float
    camera_timestamp: int | None = None
    kind: str = "trigger"  # one of FRAME_KINDS
    sequence: int = 0
    focus_metric: float | None = None
    focus_metric_name: str | None = None
    warnings: list[str] = field(default_factory=list)

    def source(self) -> dict:
        """The ``source`` block of a verdict: ``{kind: camera, serial, frame_id, ...}``."""
        d = {
            "kind": "camera",
            "serial": self.serial,
            "frame_id": int(self.frame_id),
            "sequence": int(self.sequence),
            "capture": self.kind,
            "host_time_s": float(self.host_time_s),
        }
        if self.camera_timestamp is not None:
            d["camera_timestamp"] = int(self.camera_timestamp)
        if self.focus_metric is not None:
            d["focus_metric"] = float(self.focus_metric)
            d["focus_metric_name"] = self.focus_metric_name
        return d

    def file_stem(self) -> str:
        """A file-name stem unique per daemon run: ``cam_<serial>_<sequence>_f<frame_id>``."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.serial) or "camera"
        return f"cam_{safe}_{self.sequence:06d}_f{self.frame_id}"


def save_frame_png(frame: Frame, path: str | os.PathLike) -> str:
    """Write the raw frame losslessly (PNG; 8 or 16 bit as captured) and return the path.

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    p = os.fspath(path)
    ok = cv2.imwrite(p, np.ascontiguousarray(frame.image), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not write {p}")
    return p
