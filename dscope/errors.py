"""Stable error codes.

Every failure that reaches a user carries one of these codes (in the result
JSON, the summary CSV, a control reply or a log line) and a human sentence.
Codes never change meaning; new ones are only added.
"""

from __future__ import annotations

#: code -> one-line description (documentation and ``dscope errors``).
ERROR_CODES: dict[str, str] = {
    "unreadable_image": "the file could not be decoded as an image (corrupt, truncated, not an image)",
    "empty_file": "the file has zero bytes",
    "image_too_small": "the image is smaller than io.min_image_side_px",
    "image_too_large": "the image has more pixels than io.max_image_pixels",
    "unsupported_format": "the file extension is not a supported image format",
    "file_not_found": "the path does not exist",
    "localization_failed": "no fiber end face could be found in the image",
    "scale_unavailable": "no micrometre scale could be established",
    "config_invalid": "a configuration file failed validation",
    "rule_set_invalid": "a rule set failed validation",
    "rule_set_unknown": "no rule set of that name exists",
    "calibration_failed": "the calibration target could not be measured",
    "calibration_invalid": "a calibration file is malformed",
    "timeout": "the work did not finish within its time limit",
    "internal_error": "an unexpected error inside D-Scope (a bug: please report it)",
    "worker_crashed": "the worker process running the inspection died",
    "bad_request": "a control message was malformed",
    "unknown_command": "a control message named an unknown command",
    "bad_argument": "a control command had a missing or invalid argument",
    "invalid_state": "the command is not allowed in the daemon's current state",
    "path_refused": "the path lies outside the allowed folder",
    "camera_unavailable": "no camera is configured or it could not be opened",
    "camera_removed": "the camera was disconnected",
    "grab_timeout": "the camera delivered no frame in time",
    "grab_failed": "the camera delivered an incomplete or failed frame",
}


class DScopeError(Exception):
    """Base error with a stable ``code`` from :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str, **details):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict:
        d = {"code": self.code, "message": self.message}
        if self.details:
            d["details"] = self.details
        return d

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.code}: {self.message}"


class ImageError(DScopeError):
    """The input image cannot be used."""


class LocalizationError(DScopeError):
    """No fiber was found."""

    def __init__(self, message: str, **details):
        super().__init__("localization_failed", message, **details)


class ConfigError(DScopeError):
    """A configuration or rule-set file is invalid."""


class CalibrationError(DScopeError):
    """A calibration could not be measured or loaded."""
