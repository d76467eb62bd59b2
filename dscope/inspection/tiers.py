"""Two-scale detection for fast profiles: the glass finely, the whole zoned region coarsely.

The detector works on the region of interest downscaled to at most
``max_analysis_side_px``.  On a 2048x1536 frame the contact zone (250 um)
makes that region ~4x wider than the glass (125 um), so a fast profile that
analyses everything at one scale sees the core and cladding - where the
rule sets are strictest (no defect at all in a single-mode core, 2-5 um
limits in the cladding) - at the same coarse scale as the ferrule, where
only defects >= 10-20 um matter.  A :class:`FineTierParams` pass analyses the
named zones (the glass) again on their own, smaller box at a finer scale:

1. coarse pass: every analysed zone, ``detection.max_analysis_side_px``;
2. fine pass: the fine zones only, ``fine_tier.max_analysis_side_px`` on their box;
3. merge at the candidate level, before measurement (one object, one size):

   - a coarse candidate lying inside the fine zones and overlapping a fine one
     is dropped (the fine pass measured it at the better scale);
   - a coarse candidate reaching beyond the fine zones (a chip or a particle
     on the cladding edge, a scratch running into the ferrule) is kept whole
     and the fine pieces it overlaps are dropped, so a defect crossing the
     boundary is never split into two smaller ones that each pass a size limit;
   - everything else is kept from both passes.

Pure functions: arrays and dataclasses in, dataclasses out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from dscope.inspection.classify import ClassificationParams, assign_ids, characterize
from dscope.inspection.detect import Detection, DetectionParams, detect
from dscope.inspection.types import Defect, FiberGeometry, Scale, ZoneMask
from dscope.inspection.zones import fiber_roi, zones_on_roi
from dscope.params import StrictModel


class FineTierParams(StrictModel):
    """Second, finer detection pass over some zones (``profiles.<name>.fine_tier``)."""

    zones: list[str] = Field(
        min_length=1, description="zones analysed again at the finer scale (the glass: core, cladding)"
    )
    max_analysis_side_px: int = Field(
        ge=32, le=4096, description="longest side of the fine zones' box after downscaling (analysis pixels)"
    )
    margin_px: int = Field(ge=0, le=256, description="margin (image px) around the fine zones' box: filter context")


def _candidate_pixels(det: Detection, label: int, bbox_xywh) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates ``(xs, ys)`` of one candidate's pixels."""
    rx, ry = det.roi_xywh[:2]
    bx, by, bw, bh = bbox_xywh
    patch = det.labels[by - ry:by - ry + bh, bx - rx:bx - rx + bw] == label
    ys, xs = np.nonzero(patch)
    return xs + bx, ys + by


def merge_tiers(
    coarse: Detection, fine: Detection, geometry: FiberGeometry, fine_outer_px: float
) -> tuple[Detection, Detection, dict]:
    """Keep one detection per object from a coarse and a fine pass (see the module docstring).

    Parameters
    ----------
    coarse, fine : Detection
        Outputs of :func:`dscope.inspection.detect.detect` on the whole zoned region and on the fine zones.
    geometry : FiberGeometry
        The fiber (circular frame of the zones).
    fine_outer_px : float
        Outer radius (major-axis px) of the fine zones.

    Returns
    -------
    coarse_kept, fine_kept : Detection
        The inputs with their candidate lists filtered (maps unchanged).
    counts : dict
        ``coarse_dropped`` (fine pass measured them), ``fine_dropped`` (part of a coarse object reaching
        beyond the fine zones).
    """
    fx, fy, fw, fh = fine.roi_xywh
    fine_labels_dropped: set[int] = set()
    coarse_kept = []
    n_coarse_dropped = 0
    for c in coarse.candidates:  # loop over candidates, never pixels
        xs, ys = _candidate_pixels(coarse, c.label, c.bbox_xywh)
        if xs.size == 0:
            continue
        inside_roi = (xs >= fx) & (xs < fx + fw) & (ys >= fy) & (ys < fy + fh)
        hit = fine.labels[ys[inside_roi] - fy, xs[inside_roi] - fx]
        overlapping = set(np.unique(hit[hit > 0]).tolist())
        if not overlapping:
            coarse_kept.append(c)
            continue
        rho = geometry.normalized_radius(np.stack([xs, ys], 1).astype(np.float64))
        if bool(np.all(rho < fine_outer_px)):
            n_coarse_dropped += 1  # inside the glass: the fine pass has it
            continue
        coarse_kept.append(c)  # crosses the fine zones' border: one object, measured whole
        fine_labels_dropped |= overlapping
    fine_kept = [c for c in fine.candidates if c.label not in fine_labels_dropped]
    counts = {"coarse_dropped": n_coarse_dropped, "fine_dropped": len(fine.candidates) - len(fine_kept)}
    return (dataclasses.replace(coarse, candidates=coarse_kept),
            dataclasses.replace(fine, candidates=fine_kept), counts)


def detect_tiered(
    gray: np.ndarray,
    geometry: FiberGeometry,
    zones: Sequence[ZoneMask],
    params: DetectionParams,
    fine_tier: FineTierParams | None,
    px_per_um: float,
    graded_index: bool = False,
) -> tuple[list[tuple[Detection, list[ZoneMask]]], dict]:
    """Detection passes of a profile: ``[(detection, zones)]`` ready for :func:`characterize_tiers`.

    Without a fine tier (or when none of its zones is analysed) this is one :func:`detect` call.

    Examples
    --------
    >>> import numpy as np
    >>> from dscope.config import load_config
    >>> from dscope.inspection.types import ZoneDef
    >>> from dscope.inspection.zones import build_zone_masks
    >>> prof = load_config().profile("fast_scan")
    >>> geo = FiberGeometry(center_px=(160.0, 120.0), cladding_radius_px=60.0)
    >>> defs = [ZoneDef("core", 0, 20), ZoneDef("cladding", 20, 125), ZoneDef("contact", 135, 250)]
    >>> zs = build_zone_masks((240, 320), geo, defs, 60 / 62.5, (0, 0, 320, 240), lazy=True)
    >>> passes, info = detect_tiered(np.full((240, 320), 120, np.uint8), geo, zs, prof.detection, prof.fine_tier, 0.96)
    >>> len(passes), info["fine_zones"]
    (2, ['core', 'cladding'])
    """
    coarse = detect(gray, geometry, list(zones), params, px_per_um, graded_index)
    info: dict = {"fine_zones": []}
    fine_zones = [z for z in zones if fine_tier is not None and z.name in fine_tier.zones]
    if not fine_zones:
        return [(coarse, list(zones))], info
    outer_px = max(z.outer_px for z in fine_zones)
    roi = fiber_roi(gray.shape, geometry, outer_px, fine_tier.margin_px)
    if roi[2] == 0 or roi[3] == 0:
        return [(coarse, list(zones))], info
    fz = zones_on_roi(fine_zones, geometry, roi)
    fine_params = params.model_copy(update={"max_analysis_side_px": fine_tier.max_analysis_side_px})
    fine = detect(gray, geometry, fz, fine_params, px_per_um, graded_index)
    coarse_kept, fine_kept, counts = merge_tiers(coarse, fine, geometry, outer_px)
    info.update(fine_zones=[z.name for z in fine_zones], fine_analysis_scale=fine.analysis_scale,
                coarse_analysis_scale=coarse.analysis_scale, **counts)
    # the zones given to characterisation name every analysed zone (centroid zone, zones touched)
    all_on_fine = zones_on_roi(list(zones), geometry, roi)
    return [(coarse_kept, list(zones)), (fine_kept, all_on_fine)], info


def characterize_tiers(
    gray: np.ndarray,
    passes: Sequence[tuple[Detection, list[ZoneMask]]],
    geometry: FiberGeometry,
    scale: Scale,
    px_per_um: float,
    params: ClassificationParams,
) -> list[Defect]:
    """Measure and classify the candidates of every pass; one id sequence over all of them."""
    defects: list[Defect] = []
    for det, zs in passes:
        defects += characterize(gray, det, geometry, zs, scale, px_per_um, params)
    return assign_ids(defects) if len(passes) > 1 else defects


__all__ = ["FineTierParams", "merge_tiers", "detect_tiered", "characterize_tiers"]
