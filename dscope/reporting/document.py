"""The versioned per-image result document (schema ``dscope.result``).

:func:`build_document` turns an :class:`~dscope.inspection.types.InspectionResult`
into plain JSON-ready data; :func:`validate_document` checks a document against
the JSON Schema shipped in ``dscope/schemas/result.schema.json``.  The same
document is written to ``<stem>.json``, stored in the daemon's database and
published as the ZeroMQ ``verdict`` body.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from dscope import RESULT_SCHEMA, RESULT_SCHEMA_VERSION, __version__
from dscope.errors import DScopeError
from dscope.inspection.types import DEFECT_TYPES, ZONE_NAMES, Defect, InspectionResult

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"

#: Decimal places written for each unit (reporting precision).
_PX_DECIMALS = 2
_UM_DECIMALS = 3


def _r(x, nd):
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return round(x, nd)


def _pt(p, nd=_PX_DECIMALS):
    return [_r(p[0], nd), _r(p[1], nd)] if p is not None else None


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _simplify_contour(contour: np.ndarray, max_points: int) -> list[list[int]]:
    c = np.asarray(contour, dtype=np.int32).reshape(-1, 2)
    if len(c) > max_points:
        eps = 0.5
        while len(c) > max_points:
            c = cv2.approxPolyDP(c.reshape(-1, 1, 2), eps, True).reshape(-1, 2)
            eps *= 1.6
    return c.tolist()


def defect_to_dict(d: Defect, contour_max_points: int) -> dict:
    return {
        "id": d.id,
        "type": d.type,
        "zone": d.zone,
        "zones_touched": list(d.zones_touched),
        "polarity": d.polarity,
        "centroid_px": _pt(d.centroid_px),
        "centroid_um": _pt(d.centroid_um, _UM_DECIMALS) if d.centroid_um is not None else None,
        "radial_position_um": _r(d.radial_position_um, _UM_DECIMALS),
        "radial_extent_px": _pt(d.radial_extent_px),
        "radial_extent_um": _pt(d.radial_extent_um, _UM_DECIMALS),
        "contour_px": _simplify_contour(d.contour_px, contour_max_points),
        "bbox_px": [int(v) for v in d.bbox_px],
        "area_px": _r(d.area_px, _PX_DECIMALS),
        "length_px": _r(d.length_px, _PX_DECIMALS),
        "width_px": _r(d.width_px, _PX_DECIMALS),
        "diameter_px": _r(d.diameter_px, _PX_DECIMALS),
        "iec_size_px": _r(d.iec_size_px, _PX_DECIMALS),
        "area_um2": _r(d.area_um2, _UM_DECIMALS),
        "length_um": _r(d.length_um, _UM_DECIMALS),
        "width_um": _r(d.width_um, _UM_DECIMALS),
        "diameter_um": _r(d.diameter_um, _UM_DECIMALS),
        "iec_size_um": _r(d.iec_size_um, _UM_DECIMALS),
        "orientation_deg": _r(d.orientation_deg, 2),
        "aspect_ratio": _r(d.aspect_ratio, 3),
        "circularity": _r(d.circularity, 3),
        "solidity": _r(d.solidity, 3),
        "tortuosity": _r(d.tortuosity, 3),
        "contrast": _r(d.contrast, 2),
        "cnr": _r(d.cnr, 2),
        "confidence": _r(min(max(d.confidence, 0.0), 1.0), 3),
        "touches_cladding_edge": bool(d.touches_cladding_edge),
        "detected_by": list(d.detected_by),
    }


def _counts(defects: list[dict]) -> dict:
    by_zone = {z: 0 for z in ZONE_NAMES}
    by_type = {t: 0 for t in DEFECT_TYPES}
    for d in defects:
        if d["zone"] in by_zone:
            by_zone[d["zone"]] += 1
        by_type[d["type"]] = by_type.get(d["type"], 0) + 1
    return {"total": len(defects), "by_zone": by_zone, "by_type": by_type}


def _base(info: dict, *, fiber_type, rule_set, profile) -> dict:
    return {
        "schema": RESULT_SCHEMA,
        "schema_version": RESULT_SCHEMA_VERSION,
        "dscope_version": __version__,
        "created": utc_now_iso(),
        "image": {
            "path": info.get("path"),
            "filename": info.get("filename"),
            "sha256": info.get("sha256"),
            "width": info.get("width"),
            "height": info.get("height"),
        },
        "fiber_type": fiber_type,
        "rule_set": rule_set,
        "profile": profile,
    }


def build_document(result: InspectionResult, image_info: dict, contour_max_points: int = 400) -> dict:
    """Result document of one inspected image (JSON-ready: only dict/list/str/float/int/bool/None)."""
    doc = _base(
        image_info, fiber_type=result.fiber_spec.fiber_type, rule_set=result.rule_set, profile=result.profile
    )
    g = result.geometry
    fiber = None
    if g is not None:
        e = g.cladding_ellipse
        fiber = {
            "center_px": _pt(g.center_px, 3),
            "cladding_radius_px": _r(g.cladding_radius_px, 3),
            "cladding_ellipse_px": None
            if e is None
            else {
                "center_px": _pt(e.center_px, 3),
                "semi_major_px": _r(e.semi_major_px, 3),
                "semi_minor_px": _r(e.semi_minor_px, 3),
                "angle_deg": _r(e.angle_deg, 3),
            },
            "core_radius_px": _r(g.core_radius_px, 3),
            "core_visible": bool(g.core_visible),
            "um_per_px": _r(result.scale.um_per_px, 6),
            "scale_source": result.scale.source,
            "cladding_diameter_um": _r(2 * g.cladding_radius_px * result.scale.um_per_px, _UM_DECIMALS)
            if result.scale.known
            else None,
            "core_diameter_um": _r(2 * g.core_radius_px * result.scale.um_per_px, _UM_DECIMALS)
            if (result.scale.known and g.core_radius_px)
            else None,
            "quality": _r(g.quality, 3),
            "method": g.method,
            "in_frame_fraction": _r(g.in_frame_fraction, 3),
            "glass_polarity": g.glass_polarity,
        }
    defects = [defect_to_dict(d, contour_max_points) for d in result.defects]
    grade = result.grade
    doc.update(
        {
            "status": result.status,
            "error": result.error,
            "warnings": list(result.warnings),
            "fiber_spec": {
                "core_um": result.fiber_spec.core_um,
                "cladding_um": result.fiber_spec.cladding_um,
                "dims_source": result.fiber_spec.dims_source,
            },
            "fiber": fiber,
            "zones": [
                {
                    "name": z.name,
                    "inner_um": _r(z.inner_um, _UM_DECIMALS),
                    "outer_um": _r(z.outer_um, _UM_DECIMALS),
                    "inner_px": _r(z.inner_px, _PX_DECIMALS),
                    "outer_px": _r(z.outer_px, _PX_DECIMALS),
                }
                for z in result.zones
            ],
            "defects": defects,
            "violations": [
                {"zone": v.zone, "rule": v.rule, "message": v.message, "defect_ids": list(v.defect_ids)}
                for v in (grade.violations if grade else [])
            ],
            "grade_reason": grade.reason if grade else None,
            "guard_band_px": grade.guard_band_px if grade else None,
            "counts": _counts(defects),
            "illumination": result.illumination,
            "timings_s": {k: _r(v, 4) for k, v in result.timings_s.items()},
        }
    )
    return doc


def error_document(exc: DScopeError, settings, image_info: dict, timings_s: dict) -> dict:
    """Result document of an image that could not be inspected (status ERROR)."""
    doc = _base(
        image_info,
        fiber_type=settings.fiber_spec.fiber_type,
        rule_set=settings.rule_set.name,
        profile=settings.profile,
    )
    t = {k: _r(v, 4) for k, v in timings_s.items()}
    t["total"] = _r(sum(timings_s.values()), 4)
    doc.update(
        {
            "status": "ERROR",
            "error": {"code": exc.code, "message": exc.message},
            "warnings": [],
            "fiber_spec": {
                "core_um": settings.fiber_spec.core_um,
                "cladding_um": settings.fiber_spec.cladding_um,
                "dims_source": settings.fiber_spec.dims_source,
            },
            "fiber": None,
            "zones": [],
            "defects": [],
            "violations": [],
            "grade_reason": None,
            "guard_band_px": None,
            "counts": _counts([]),
            "illumination": {},
            "timings_s": t,
        }
    )
    return doc


@lru_cache(maxsize=1)
def result_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_document(doc: dict) -> None:
    """Raise :class:`jsonschema.ValidationError` when ``doc`` does not follow the result schema."""
    import jsonschema

    jsonschema.validate(doc, result_schema(), cls=jsonschema.Draft202012Validator)


def dumps(doc: dict) -> str:
    """Serialise a document (stable key order as built, UTF-8, no NaN)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=2)
