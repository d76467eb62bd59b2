"""Bench daemon settings (issue 6): the ``daemon`` section of ``config/config.json``.

Every number the daemon uses (endpoints, timeouts, intervals, queue limits,
hot-folder filters) is validated here.  Command-line options of
``dscope daemon`` override the endpoint, folder and camera keys.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from dscope.params import StrictModel

_TCP_RE = re.compile(r"^tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+|\*)$")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def endpoint_is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``/``inproc://`` endpoints and TCP endpoints bound to a loopback address.

    Examples
    --------
    >>> endpoint_is_loopback("tcp://127.0.0.1:5555"), endpoint_is_loopback("tcp://*:5555")
    (True, False)
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = _TCP_RE.match(endpoint)
    if not m:
        return False
    host = m.group("host")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, allow_remote: bool) -> str:
    """Validate a ZeroMQ bind endpoint; raise ``ValueError`` with a readable reason."""
    if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(f"endpoint {endpoint!r} must start with tcp://, ipc:// or inproc://")
    if endpoint.startswith("tcp://") and not _TCP_RE.match(endpoint):
        raise ValueError(f"endpoint {endpoint!r} must look like tcp://HOST:PORT")
    if not allow_remote and not endpoint_is_loopback(endpoint):
        raise ValueError(
            f"endpoint {endpoint!r} is not a loopback address; set daemon.allow_remote_endpoints to bind it"
        )
    return endpoint


class DaemonConfig(StrictModel):
    """The ``daemon`` section: bench service, hot folder, ZeroMQ, SQLite, systemd."""

    daemon_id: str | None = Field(
        default=None, description="Name carried by every message; null = the host name."
    )
    pub_endpoint: str = Field(default="tcp://127.0.0.1:5555", description="PUB (XPUB) bind endpoint.")
    control_endpoint: str = Field(default="tcp://127.0.0.1:5556", description="Control (ROUTER) bind endpoint.")
    allow_remote_endpoints: bool = Field(
        default=False, description="Allow binding non-loopback TCP addresses (control has no authentication)."
    )
    state_dir: str | None = Field(
        default=None,
        description="Database and camera frames; null = $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/dscope.",
    )
    hot_folder: str | None = Field(default=None, description="Watched folder; null = no hot folder.")
    request_roots: list[str] = Field(
        default_factory=list, description="Extra folders whose files the control command 'inspect' may read."
    )
    camera: str = Field(default="none", description="none | emulated[:FOLDER] | basler[:SERIAL]")
    profile: str | None = Field(default=None, description="Initial processing profile; null = default_profile.")
    fiber_type: str | None = Field(default=None, description="Initial fiber type; null = default_fiber_type.")
    calibration_file: str | None = Field(
        default=None,
        description="Scale calibration (dscope calibrate output); relative = inside the state dir; null = none.",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Inspection worker processes.")
    image_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="Per-image limit; then ERROR timeout.")
    worker_start_timeout_s: float = Field(default=60.0, gt=0, le=600, description="Limit for a worker to import.")
    max_queue: int = Field(default=10000, ge=1, description="Queued images beyond this are refused (control) / deferred.")
    loop_tick_s: float = Field(default=0.05, gt=0, le=1, description="Longest sleep of the main loop.")
    heartbeat_interval_s: float = Field(
        default=2.0, gt=0, le=60, description="Heartbeat after this long without any other message."
    )
    pub_sndhwm: int = Field(default=10000, ge=1, description="PUB high-water mark: messages beyond it are dropped.")
    control_max_bytes: int = Field(default=65536, ge=256, description="Longest accepted control request.")
    control_linger_ms: int = Field(default=200, ge=0, le=10000, description="Socket linger on close.")
    shutdown_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="SIGTERM waits this long for images already inspecting."
    )
    stability_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="A created/moved-in file is ready once unchanged this long."
    )
    empty_file_settle_s: float = Field(
        default=5.0, gt=0, le=600, description="A zero-byte file is processed (as ERROR) after this long unchanged."
    )
    open_file_timeout_s: float = Field(
        default=120.0, gt=0, description="A file opened but never closed is processed after this long unchanged."
    )
    rescan_interval_s: float = Field(
        default=30.0, gt=0, le=86400,
        description="Safety net: rescan the hot folder this often for files whose events were missed.",
    )
    ignore_patterns: list[str] = Field(
        default_factory=lambda: [".*", "~*", "*~", "*.tmp", "*.part", "*.partial", "*.swp", "*.crdownload"],
        description="fnmatch patterns of temporary/hidden names that are never processed.",
    )
    done_dir: str = Field(default="done", min_length=1, description="Sub-folder for processed images.")
    failed_dir: str = Field(default="failed", min_length=1, description="Sub-folder for ERROR images.")
    database_file: str = Field(default="results.sqlite3", min_length=1, description="SQLite file in the state dir.")
    database_busy_timeout_s: float = Field(default=10.0, gt=0, le=600, description="SQLite busy timeout.")
    frames_dir: str = Field(default="frames", min_length=1, description="Camera frames (PNG) + results, in state dir.")
    camera_timeout_s: float = Field(default=5.0, gt=0, le=600, description="trigger/calibrate grab limit.")

    @field_validator("done_dir", "failed_dir", "frames_dir", "database_file")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or v in (".", "..") or v.startswith("."):
            raise ValueError(f"{v!r} must be a plain, non-hidden name (no '/')")
        return v

    @field_validator("camera")
    @classmethod
    def _camera_spec(cls, v: str) -> str:
        if v != "none" and not re.fullmatch(r"basler(:[A-Za-z0-9_.-]+)?|emulated(:.+)?", v):
            raise ValueError(f"camera {v!r} must be none, emulated[:FOLDER] or basler[:SERIAL]")
        return v

    @model_validator(mode="after")
    def _endpoints(self):
        check_endpoint(self.pub_endpoint, self.allow_remote_endpoints)
        check_endpoint(self.control_endpoint, self.allow_remote_endpoints)
        if self.pub_endpoint == self.control_endpoint:
            raise ValueError("pub_endpoint and control_endpoint must differ")
        if self.done_dir == self.failed_dir:
            raise ValueError("done_dir and failed_dir must differ")
        return self
