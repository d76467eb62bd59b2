"""``--save-zones``: write each zone's masked crop as an image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dscope.inspection.types import Ellipse, FiberGeometry, ZoneDef


def geometry_from_doc(doc: dict) -> FiberGeometry:
    """Rebuild the :class:`FiberGeometry` written in a result document."""
    f = doc["fiber"]
    e = f.get("cladding_ellipse_px")
    ellipse = None
    if e:
        ellipse = Ellipse(tuple(e["center_px"]), e["semi_major_px"], e["semi_minor_px"], e["angle_deg"])
    return FiberGeometry(
        center_px=tuple(f["center_px"]),
        cladding_radius_px=f["cladding_radius_px"],
        cladding_ellipse=ellipse,
        core_radius_px=f.get("core_radius_px"),
        core_visible=bool(f.get("core_visible")),
        quality=f.get("quality") or 0.0,
    )


def write_zone_crops(gray: np.ndarray, doc: dict, settings, out_dir: Path, stem: str) -> dict[str, str]:
    """Write ``<stem>_zone_<name>.png`` for every zone of the document: the zone's pixels, black elsewhere,
    cropped to the zone's bounding box. Returns {"zone_<name>": path}."""
    from dscope.inspection.zones import build_zone_masks, fiber_roi

    geometry = geometry_from_doc(doc)
    written: dict[str, str] = {}
    for z in doc["zones"]:
        if z["outer_um"] <= 0 or z["outer_px"] <= 0:
            continue
        px_per_um = z["outer_px"] / (z["outer_um"] / 2.0)
        roi = fiber_roi(gray.shape, geometry, z["outer_px"], settings.config.pipeline.roi_margin_px)
        (zm,) = build_zone_masks(gray.shape, geometry, [ZoneDef(z["name"], z["inner_um"], z["outer_um"])], px_per_um, roi)
        x, y, w, h = zm.roi_xywh
        crop = np.where(zm.mask, gray[y : y + h, x : x + w], 0).astype(np.uint8)
        ys, xs = np.nonzero(zm.mask)
        if len(xs) == 0:
            continue
        crop = crop[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        p = Path(out_dir) / f"{stem}_zone_{z['name']}.png"
        cv2.imwrite(str(p), crop)
        written[f"zone_{z['name']}"] = str(p)
    return written
