"""The I/O edge of inspection: file or frame in, versioned result document out.

Used alike by the batch CLI, the daemon's worker processes and the camera
path.  :func:`inspect_file` and :func:`inspect_array` never raise for a bad
image: the document then has status ``ERROR`` and an ``error`` with a stable
code, so one bad image never stops a batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dscope.config import Config, load_config
from dscope.errors import DScopeError, ImageError
from dscope.inspection.pipeline import PipelineParams, inspect_image
from dscope.inspection.preprocess import to_gray8
from dscope.inspection.rules import RuleSet, load_rule_set
from dscope.inspection.types import FiberSpec
from dscope.reporting.document import build_document, error_document

ZONE_CHOICES = ("core", "cladding", "adhesive", "contact")


@dataclass(frozen=True)
class RunSettings:
    """Validated, picklable settings for inspecting images.

    Create with :meth:`create`, which resolves the fiber type, the rule set and
    the calibration file and raises :class:`DScopeError` for bad arguments.
    """

    config: Config
    profile: str
    fiber_spec: FiberSpec
    rule_set: RuleSet
    graded_index: bool
    um_per_px: float | None
    calibration_um_per_px: float | None
    calibration_path: str | None
    zones: tuple[str, ...] | None

    @classmethod
    def create(
        cls,
        config: Config | None = None,
        *,
        profile: str | None = None,
        fiber_type: str | None = None,
        core_um: float | None = None,
        cladding_um: float | None = None,
        um_per_px: float | None = None,
        calibration_path: str | os.PathLike | None = None,
        zones: list[str] | tuple[str, ...] | None = None,
    ) -> "RunSettings":
        cfg = config or load_config()
        prof = profile or cfg.default_profile
        cfg.profile(prof)  # raises config_invalid for an unknown profile
        for name, value in (("core_um", core_um), ("cladding_um", cladding_um), ("um_per_px", um_per_px)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise DScopeError("bad_argument", f"{name} must be a positive number, got {value!r}")
        if core_um and cladding_um and core_um >= cladding_um:
            raise DScopeError("bad_argument", f"core_um ({core_um}) must be smaller than cladding_um ({cladding_um})")

        explicit_type = fiber_type is not None
        ftype_name = fiber_type or cfg.default_fiber_type
        ftype = cfg.fiber_types.get(ftype_name)
        if ftype is not None:
            rule_set = load_rule_set(ftype.rule_set)
            graded_index = ftype.graded_index
        else:
            # a custom fiber type names a rule set directly (file name or path)
            rule_set = load_rule_set(ftype_name)
            graded_index = False

        if cladding_um is not None:
            dims_source = "user"
        elif explicit_type and ftype is not None:
            dims_source = "fiber_type"
        else:
            dims_source = "none"
        spec = FiberSpec(
            fiber_type=ftype_name,
            core_um=core_um if core_um is not None else (ftype.core_um if ftype else None),
            cladding_um=cladding_um if cladding_um is not None else (ftype.cladding_um if ftype else None),
            dims_source=dims_source,
        )

        cal_value = None
        cal_path = None
        if calibration_path is not None:
            from dscope.calibration_io import load_calibration

            cal = load_calibration(calibration_path)
            cal_value = float(cal["um_per_px"])
            cal_path = str(calibration_path)

        zone_tuple = None
        if zones:
            names = tuple(dict.fromkeys(z.strip() for z in zones if z.strip()))
            known = {z.name for z in rule_set.zone_defs()}
            bad = [z for z in names if z not in known]
            if bad or not names:
                raise DScopeError(
                    "bad_argument", f"unknown zone(s) {bad or zones}; rule set {rule_set.name} has {sorted(known)}"
                )
            zone_tuple = names
        return cls(cfg, prof, spec, rule_set, graded_index, um_per_px, cal_value, cal_path, zone_tuple)

    def pipeline_params(self) -> PipelineParams:
        cfg = self.config
        prof = cfg.profile(self.profile)
        return PipelineParams(
            profile=self.profile,
            preprocess=cfg.preprocess,
            localization=prof.localization,
            detection=prof.detection,
            classification=cfg.classification_for(self.profile),
            fiber_spec=self.fiber_spec,
            rule_set=self.rule_set,
            graded_index=self.graded_index,
            nominal_cladding_um=cfg.scale.default_nominal_cladding_um,
            um_per_px=self.um_per_px,
            calibration_um_per_px=self.calibration_um_per_px,
            disagreement_warn_fraction=cfg.scale.calibration_disagreement_warn_fraction,
            zones=self.zones,
            roi_margin_px=cfg.pipeline.roi_margin_px,
            fine_tier=prof.fine_tier,
            guard_band_px=cfg.grading.guard_band_px,
        )

    def with_output(self, **changes) -> "RunSettings":
        """A copy whose ``config.output`` has some options changed (e.g. ``save_zone_crops=True``)."""
        out = self.config.output.model_copy(update=changes)
        return dataclasses.replace(self, config=self.config.model_copy(update={"output": out}))

    def with_changes(self, **kwargs) -> "RunSettings":
        """A copy re-validated with some arguments changed (used by the daemon's set_fiber/set_profile)."""
        args = {
            "profile": self.profile,
            "fiber_type": self.fiber_spec.fiber_type,
            "core_um": self.fiber_spec.core_um if self.fiber_spec.dims_source == "user" else None,
            "cladding_um": self.fiber_spec.cladding_um if self.fiber_spec.dims_source == "user" else None,
            "um_per_px": self.um_per_px,
            "calibration_path": self.calibration_path,
            "zones": self.zones,
        }
        args.update(kwargs)
        return RunSettings.create(self.config, **args)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, name: str, config: Config) -> np.ndarray:
    """Decode image bytes (any depth, any channels) to 8-bit grey; raise :class:`ImageError`."""
    io = config.io
    if len(data) == 0:
        raise ImageError("empty_file", f"{name}: file is empty (0 bytes)")
    if len(data) > io.max_file_bytes:
        raise ImageError("image_too_large", f"{name}: file has {len(data)} bytes > io.max_file_bytes {io.max_file_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError("unreadable_image", f"{name}: cannot decode image ({exc.msg.strip() or 'OpenCV error'})") from None
    if img is None or img.size == 0:
        raise ImageError("unreadable_image", f"{name}: cannot decode image (corrupt, truncated or not an image)")
    return check_image(img, name, config)


def check_image(img: np.ndarray, name: str, config: Config) -> np.ndarray:
    """Size checks and conversion to 8-bit grey."""
    io = config.io
    h, w = img.shape[:2]
    if min(h, w) < io.min_image_side_px:
        raise ImageError("image_too_small", f"{name}: image is {w}x{h} px, smaller than {io.min_image_side_px} px")
    if h * w > io.max_image_pixels:
        raise ImageError("image_too_large", f"{name}: image is {w}x{h} px, more than {io.max_image_pixels} pixels")
    try:
        return to_gray8(img, config.preprocess)
    except ValueError as exc:
        raise ImageError("unreadable_image", f"{name}: {exc}") from None


def read_image_file(path: str | os.PathLike, config: Config) -> tuple[np.ndarray, dict]:
    """Read and decode an image file; returns (gray, image_info). Raises :class:`ImageError`."""
    p = Path(path)
    info = {"path": str(p), "filename": p.name, "sha256": None, "width": None, "height": None}
    if p.suffix.lower() not in config.io.image_extensions:
        raise ImageError("unsupported_format", f"{p.name}: extension {p.suffix or '(none)'} is not an image format")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError("file_not_found", f"{p}: no such file") from None
    except OSError as exc:
        raise ImageError("unreadable_image", f"{p}: cannot read file: {exc.strerror}") from None
    info["sha256"] = sha256_bytes(data)
    gray = decode_image(data, p.name, config)
    info["height"], info["width"] = int(gray.shape[0]), int(gray.shape[1])
    return gray, info


def inspect_array(image: np.ndarray, settings: RunSettings, *, image_info: dict | None = None) -> dict:
    """Inspect an in-memory image (e.g. a camera frame) and return the result document."""
    t0 = time.perf_counter()
    info = dict(image_info or {})
    info.setdefault("path", None)
    info.setdefault("filename", None)
    if info.get("sha256") is None:
        info["sha256"] = sha256_bytes(np.ascontiguousarray(image).tobytes())
    try:
        gray = check_image(np.asarray(image), info.get("filename") or "frame", settings.config)
    except DScopeError as exc:
        return error_document(exc, settings, info, {"load": time.perf_counter() - t0})
    info["height"], info["width"] = int(gray.shape[0]), int(gray.shape[1])
    return _inspect_gray(gray, settings, info, time.perf_counter() - t0)


def inspect_file(path: str | os.PathLike, settings: RunSettings) -> dict:
    """Read, inspect and report one image file; never raises for a bad image."""
    doc, _ = inspect_file_with_image(path, settings)
    return doc


def inspect_file_with_image(path: str | os.PathLike, settings: RunSettings) -> tuple[dict, np.ndarray | None]:
    """Like :func:`inspect_file` but also returns the decoded grey image (None when unreadable)."""
    t0 = time.perf_counter()
    p = Path(path)
    try:
        gray, info = read_image_file(p, settings.config)
    except DScopeError as exc:
        info = {"path": str(p), "filename": p.name, "sha256": None, "width": None, "height": None}
        try:
            info["sha256"] = sha256_bytes(p.read_bytes())
        except OSError:
            pass
        return error_document(exc, settings, info, {"load": time.perf_counter() - t0}), None
    return _inspect_gray(gray, settings, info, time.perf_counter() - t0), gray


def _inspect_gray(gray: np.ndarray, settings: RunSettings, info: dict, load_s: float) -> dict:
    try:
        result = inspect_image(gray, settings.pipeline_params())
    except DScopeError as exc:  # pragma: no cover - stages convert their own errors
        return error_document(exc, settings, info, {"load": load_s})
    except Exception as exc:  # a bug must not stop a batch; report it with a stable code
        err = DScopeError("internal_error", f"{type(exc).__name__}: {exc}")
        return error_document(err, settings, info, {"load": load_s})
    result.timings_s = {"load": load_s, **result.timings_s}
    result.timings_s["total"] = result.timings_s.get("total", 0.0) + load_s
    return build_document(result, info, settings.config.output.contour_max_points)
