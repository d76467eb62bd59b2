"""Camera-side data types shared by the hardware layer and the daemon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """One image from a camera.

    ``frame_id`` is the camera's frame counter; ``host_time_s`` the host's
    epoch time when the buffer arrived; ``camera_timestamp`` the device tick
    count when the model provides it (the emulator does not).
    """

    image: np.ndarray
    frame_id: int
    serial: str
    host_time_s: float
    camera_timestamp: int | None = None
    kind: str = "trigger"  # "trigger" | "hardware_trigger" | "preview" | "calibration"
