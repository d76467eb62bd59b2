"""Camera settings (issue 7): the ``camera`` section of ``config/config.json``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dscope.inspection.focus import FocusParams
from dscope.params import StrictModel


class ReconnectConfig(StrictModel):
    """How the supervisor notices a lost camera and reopens it."""

    initial_backoff_s: float = Field(0.5, gt=0, le=60, description="wait before the first reopen attempt")
    max_backoff_s: float = Field(30.0, gt=0, le=3600, description="the wait doubles (factor) up to this")
    factor: float = Field(2.0, ge=1.0, le=10.0, description="backoff growth per failed attempt")
    removal_poll_s: float = Field(
        0.5, gt=0, le=10, description="the supervisor also polls IsCameraDeviceRemoved at this period"
    )
    open_retry_on_start: bool = Field(
        True, description="if the camera cannot be opened at start, report a fault and keep retrying (else raise)"
    )

    @model_validator(mode="after")
    def _order(self):
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        return self


class FocusConfig(StrictModel):
    """Focus assistance: metric, region and out-of-focus warning."""

    measure: FocusParams = Field(default_factory=FocusParams)
    localization_profile: str = Field(
        "fast_scan", min_length=1, description="profile whose localization params find the fiber region"
    )
    localize_max_side_px: int = Field(
        640, ge=64, le=8192, description="frames are downscaled to this longest side before localizing"
    )
    roi_refresh_frames: int = Field(
        10, ge=1, le=10000, description="re-localize the fiber every this many preview frames (cached between)"
    )
    peak_window_s: float = Field(
        30.0, gt=0, le=3600, description="the focus peak is the maximum over this recent history"
    )
    warn_below_peak_fraction: float = Field(
        0.6, ge=0, le=1, description="a captured frame below this fraction of the last focus peak is flagged out of focus"
    )
    warn_below_metric: float = Field(
        0.0, ge=0, description="a captured frame below this absolute metric is flagged out of focus (0 = off)"
    )


class AutoCaptureConfig(StrictModel):
    """Capture automatically when the focus metric sits stably at its peak."""

    enabled: bool = False
    stable_frames: int = Field(3, ge=2, le=100, description="consecutive preview frames that must agree")
    tolerance_fraction: float = Field(
        0.1, gt=0, lt=1, description="they agree when (max - min) <= this * max and max >= (1 - this) * peak"
    )
    min_metric: float = Field(0.0, ge=0, description="never auto-capture below this metric (blank field of view)")


class EmulatorConfig(StrictModel):
    """pylon camera emulator (``--camera emulated[:FOLDER]``)."""

    device_count: int = Field(1, ge=1, le=16, description="PYLON_CAMEMU: number of emulated devices")
    default_image_folder: str | None = Field(
        None, description="images served when no FOLDER is given (null = the emulator's test pattern)"
    )
    unplug_file: str | None = Field(
        None,
        description="demo/test hook: when this file appears, the emulated camera is 'unplugged' (pylon removal "
        "callback fired) and the file deleted; null = off. Ignored for real cameras.",
    )


class CameraConfig(StrictModel):
    """Basler camera settings (``camera`` section)."""

    serial: str | None = Field(None, description="open this serial number; null = the first device")
    pixel_format: Literal["Mono8", "Mono10", "Mono12", "Mono16"] = "Mono8"
    exposure_us: float = Field(10000.0, gt=0, le=10_000_000, description="ExposureTime with ExposureAuto Off")
    gain_db: float = Field(0.0, ge=0, le=48, description="Gain with GainAuto Off")
    gamma: float = Field(1.0, gt=0, le=4, description="Gamma, where the node exists")
    trigger_mode: Literal["software", "hardware"] = Field(
        "software", description="software: frames on command only; hardware: also frames on the fixture input line"
    )
    trigger_source: str = Field(
        "Line1", min_length=1, pattern=r"^[A-Za-z0-9_]+$", description="TriggerSource of the fixture in hardware mode"
    )
    trigger_activation: Literal["RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh", "LevelLow"] = "RisingEdge"
    grab_timeout_s: float = Field(2.0, gt=0, le=120, description="wait for one frame after a software trigger")
    grab_retries: int = Field(2, ge=0, le=20, description="extra attempts after a timeout or an incomplete buffer")
    trigger_ready_timeout_s: float = Field(1.0, gt=0, le=60, description="WaitForFrameTriggerReady limit")
    hardware_poll_s: float = Field(0.2, gt=0, le=5, description="fixture loop: RetrieveResult slice")
    buffer_count: int = Field(8, ge=2, le=256, description="MaxNumBuffer of the stream grabber")
    pfs_file: str | None = Field(
        None, description=".pfs node map loaded on every open, before the explicit settings above are applied"
    )
    calibration_exposure_us: float | None = Field(
        None, gt=0, le=10_000_000, description="exposure for calibration captures (null = exposure_us)"
    )
    preview_fps: float = Field(5.0, gt=0, le=60, description="focus preview frames (and focus messages) per second")
    focus: FocusConfig = Field(default_factory=FocusConfig)
    auto_capture: AutoCaptureConfig = Field(default_factory=AutoCaptureConfig)
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)
    emulator: EmulatorConfig = Field(default_factory=EmulatorConfig)
