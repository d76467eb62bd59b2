"""Orchestration of one image: localize -> scale -> zones -> detect -> classify -> grade.

:func:`inspect_image` is pure (array in, :class:`InspectionResult` out) and
never raises for a bad image: a localization failure becomes an ERROR result
with its code.  Stage timings are measured with a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dscope.errors import DScopeError
from dscope.inspection.classify import ClassificationParams
from dscope.inspection.detect import DetectionParams
from dscope.inspection.grading import grade
from dscope.inspection.localize import LocalizationParams, localize_fiber
from dscope.inspection.preprocess import PreprocessParams, illumination_check
from dscope.inspection.rules import RuleSet
from dscope.inspection.scale import resolve_scale
from dscope.inspection.tiers import FineTierParams, characterize_tiers, detect_tiered
from dscope.inspection.types import FiberSpec, Grade, InspectionResult, Scale
from dscope.inspection.zones import build_zone_masks, fiber_roi, zone_px_per_um


@dataclass(frozen=True)
class PipelineParams:
    """Everything :func:`inspect_image` needs besides the image.

    Built by :class:`dscope.runner.RunSettings` from the configuration; kept
    free of file paths so that the pipeline stays pure.
    """

    profile: str
    preprocess: PreprocessParams
    localization: LocalizationParams
    detection: DetectionParams
    classification: ClassificationParams
    fiber_spec: FiberSpec
    rule_set: RuleSet
    graded_index: bool = False
    nominal_cladding_um: float = 125.0
    um_per_px: float | None = None
    calibration_um_per_px: float | None = None
    disagreement_warn_fraction: float = 0.02
    zones: Sequence[str] | None = None
    roi_margin_px: int = 0
    fine_tier: FineTierParams | None = None
    guard_band_px: float = 0.0


class _Clock:
    def __init__(self):
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self._t)
        self._t = now


def _error_result(params: PipelineParams, shape, exc: DScopeError, warnings, timings, illumination) -> InspectionResult:
    return InspectionResult(
        status="ERROR",
        error=exc.to_dict(),
        warnings=list(warnings),
        fiber_spec=params.fiber_spec,
        rule_set=params.rule_set.name,
        profile=params.profile,
        geometry=None,
        scale=Scale(None, "none"),
        zones=[],
        defects=[],
        grade=None,
        timings_s=timings,
        image_shape=tuple(shape),
        illumination=illumination,
    )


def inspect_image(gray: np.ndarray, params: PipelineParams) -> InspectionResult:
    """Inspect one 8-bit grey end-face image.

    Parameters
    ----------
    gray : ndarray of uint8, shape (H, W)
        The image, already converted by :func:`dscope.inspection.preprocess.to_gray8`.
    params : PipelineParams
        Profile, fiber, rule set and scale inputs.

    Returns
    -------
    InspectionResult
        ``status`` is PASS, FAIL, UNGRADED or ERROR (no fiber found).
    """
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError("inspect_image expects a 2-D uint8 image; use to_gray8 first")
    clock = _Clock()
    warnings: list[str] = []
    illumination, ill_warnings = illumination_check(gray, params.preprocess)
    warnings += ill_warnings
    clock.lap("illumination")

    spec = params.fiber_spec
    ratio = (spec.core_um / spec.cladding_um) if (spec.core_um and spec.cladding_um) else None
    try:
        geometry = localize_fiber(
            gray, params.localization, core_to_cladding_ratio=ratio, graded_index=params.graded_index
        )
    except DScopeError as exc:
        clock.lap("localize")
        return _error_result(params, gray.shape, exc, warnings, clock.timings, illumination)
    clock.lap("localize")

    scale, scale_warnings = resolve_scale(
        geometry,
        um_per_px=params.um_per_px,
        cladding_um=spec.cladding_um,
        cladding_source=spec.dims_source,
        calibration_um_per_px=params.calibration_um_per_px,
        disagreement_warn_fraction=params.disagreement_warn_fraction,
    )
    warnings += scale_warnings
    if geometry.in_frame_fraction < 1.0:
        warnings.append(f"fiber only {geometry.in_frame_fraction:.0%} inside the frame")

    nominal = spec.cladding_um or params.nominal_cladding_um
    px_per_um = zone_px_per_um(geometry, scale, nominal)
    zone_defs = params.rule_set.zone_defs()
    if params.zones:
        wanted = set(params.zones)
        zone_defs = [z for z in zone_defs if z.name in wanted]
    # a rule set written in px gives its zone diameters in px: realise them 1:1
    zone_scale = params.rule_set.zone_px_per_um(px_per_um)
    outer_px = max(z.outer_um for z in zone_defs) / 2.0 * zone_scale
    roi = fiber_roi(gray.shape, geometry, outer_px, params.roi_margin_px)
    zones = build_zone_masks(gray.shape, geometry, zone_defs, zone_scale, roi, lazy=True)
    clock.lap("zones")

    passes, _ = detect_tiered(gray, geometry, zones, params.detection, params.fine_tier, px_per_um,
                              params.graded_index)
    clock.lap("detect")
    defects = characterize_tiers(gray, passes, geometry, scale, px_per_um, params.classification)
    clock.lap("classify")

    g = grade(defects, params.rule_set, scale_known=scale.known, analyzed_zones=params.zones,
              guard_band_px=params.guard_band_px)
    clock.lap("grade")

    timings = dict(clock.timings)
    timings["total"] = sum(timings.values())
    return InspectionResult(
        status=g.status,
        error=None,
        warnings=warnings,
        fiber_spec=spec,
        rule_set=params.rule_set.name,
        profile=params.profile,
        geometry=geometry,
        scale=scale,
        zones=zones,
        defects=defects,
        grade=g,
        timings_s=timings,
        image_shape=tuple(gray.shape),
        illumination=illumination,
    )


__all__ = ["PipelineParams", "inspect_image", "Grade"]
