"""IEC 61300-3-35 zone masks around a localized fiber (issue 3).

Zones are data (``ZoneDef``: name, inner and outer *diameter* in um, from a
rule set).  They are realised as disjoint annuli ``[inner, outer)`` in the
fiber's circular frame (:meth:`FiberGeometry.to_normalized`), i.e. elliptical
in the image when the cladding is an ellipse.  Radii in pixels are along the
major axis.

Scale: with a micrometre scale ``px_per_um = 1 / um_per_px``; without one the
zones scale from the detected cladding (``cladding_radius_px / (nominal_cladding_um / 2)``),
so pixel-only runs still zone correctly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dscope.errors import DScopeError
from dscope.inspection.types import FiberGeometry, Scale, ZoneDef, ZoneMask


def zone_px_per_um(geometry: FiberGeometry, scale: Scale, nominal_cladding_um: float) -> float:
    """Pixels per micrometre used to draw the zones.

    Parameters
    ----------
    geometry : FiberGeometry
        Localized fiber (``cladding_radius_px`` is the semi-major axis).
    scale : Scale
        Micrometre scale; when unknown the cladding defines it.
    nominal_cladding_um : float
        Cladding diameter the detected boundary stands for (125 um on standard fibers).

    Examples
    --------
    >>> g = FiberGeometry(center_px=(100.0, 100.0), cladding_radius_px=62.5)
    >>> zone_px_per_um(g, Scale(None), 125.0)
    1.0
    >>> zone_px_per_um(g, Scale(0.5, "um_per_px"), 125.0)
    2.0
    """
    if scale.known:
        if not (scale.um_per_px > 0 and math.isfinite(scale.um_per_px)):
            raise DScopeError("bad_argument", f"um_per_px must be a positive number, got {scale.um_per_px!r}")
        return 1.0 / scale.um_per_px
    if not (nominal_cladding_um > 0 and math.isfinite(nominal_cladding_um)):
        raise DScopeError("bad_argument", f"nominal cladding diameter must be positive, got {nominal_cladding_um!r}")
    return geometry.cladding_radius_px / (nominal_cladding_um / 2.0)


def _extent(geometry: FiberGeometry, radius_px: float) -> tuple[float, float]:
    """Half-width and half-height (image px) of the zone ellipse of major radius ``radius_px``."""
    if geometry.cladding_ellipse is None:
        return radius_px, radius_px
    a = radius_px
    b = radius_px / geometry.axis_ratio
    t = math.radians(geometry.angle_deg)
    return math.hypot(a * math.cos(t), b * math.sin(t)), math.hypot(a * math.sin(t), b * math.cos(t))


def fiber_roi(
    shape_hw: tuple[int, int], geometry: FiberGeometry, outer_radius_px: float, margin_px: int
) -> tuple[int, int, int, int]:
    """Bounding box ``(x, y, w, h)`` of the zone ellipse of major radius ``outer_radius_px`` plus a margin.

    Clipped to the image; ``w`` or ``h`` is 0 when the region lies entirely outside.

    Examples
    --------
    >>> g = FiberGeometry(center_px=(50.0, 40.0), cladding_radius_px=20.0)
    >>> fiber_roi((100, 120), g, 30.0, 2)
    (18, 8, 65, 65)
    """
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if outer_radius_px < 0 or margin_px < 0:
        raise DScopeError("bad_argument", "outer radius and margin must be >= 0")
    ex, ey = _extent(geometry, outer_radius_px)
    cx, cy = geometry.center_px
    x0 = max(int(math.floor(cx - ex)) - margin_px, 0)
    y0 = max(int(math.floor(cy - ey)) - margin_px, 0)
    x1 = min(int(math.ceil(cx + ex)) + margin_px + 1, w)
    y1 = min(int(math.ceil(cy + ey)) + margin_px + 1, h)
    return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


def _normalized_radius2_grid(geometry: FiberGeometry, roi_xywh) -> np.ndarray:
    """Squared circular-frame radius of every ROI pixel centre (float32, vectorised; no square root)."""
    x0, y0, w, h = roi_xywh
    cx, cy = geometry.center_px
    dx = (np.arange(x0, x0 + w, dtype=np.float32) - np.float32(cx))[None, :]
    dy = (np.arange(y0, y0 + h, dtype=np.float32) - np.float32(cy))[:, None]
    if geometry.cladding_ellipse is None:
        r2 = dx * dx
        return r2 + dy * dy
    t = math.radians(geometry.angle_deg)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    u = dx * c + dy * s
    v = (-dx * s + dy * c) * np.float32(geometry.axis_ratio)
    return u * u + v * v


def _check_zones(zone_defs: Sequence[ZoneDef]) -> None:
    for z in zone_defs:
        if not (0 <= z.inner_um < z.outer_um):
            raise DScopeError("rule_set_invalid", f"zone {z.name!r}: need 0 <= inner_um < outer_um, got {z.inner_um}..{z.outer_um}")


def build_zone_masks(
    shape_hw: tuple[int, int],
    geometry: FiberGeometry,
    zone_defs: Sequence[ZoneDef],
    px_per_um: float,
    roi_xywh: tuple[int, int, int, int],
    *,
    lazy: bool = False,
) -> list[ZoneMask]:
    """Boolean masks (ROI-sized) of each zone: annuli ``[inner, outer)`` in the fiber's circular frame.

    Parameters
    ----------
    shape_hw : tuple
        Image shape (used to validate the ROI).
    geometry : FiberGeometry
        Localized fiber; masks are elliptical when ``geometry.cladding_ellipse`` is set.
    zone_defs : sequence of ZoneDef
        Zones with inner/outer diameters in um (disjoint by construction of the half-open annuli
        when the definitions do not overlap).
    px_per_um : float
        From :func:`zone_px_per_um`.
    roi_xywh : tuple
        Region of interest from :func:`fiber_roi`.
    lazy : bool
        Build each mask on first access of ``ZoneMask.mask`` (the pipeline: the detector
        and the characterisation work from the zone radii; the masks are needed only for
        ``--save-zones`` and the baseline).

    Examples
    --------
    >>> g = FiberGeometry(center_px=(50.0, 50.0), cladding_radius_px=40.0)
    >>> zs = [ZoneDef("core", 0, 20), ZoneDef("cladding", 20, 80)]
    >>> roi = fiber_roi((100, 100), g, 40.0, 0)
    >>> [int(m.mask.sum()) > 0 for m in build_zone_masks((100, 100), g, zs, 1.0, roi)]
    [True, True]
    """
    if not (px_per_um > 0 and math.isfinite(px_per_um)):
        raise DScopeError("bad_argument", f"px_per_um must be a positive number, got {px_per_um!r}")
    _check_zones(zone_defs)
    x0, y0, w, h = (int(v) for v in roi_xywh)
    H, W = int(shape_hw[0]), int(shape_hw[1])
    if x0 < 0 or y0 < 0 or w < 0 or h < 0 or x0 + w > W or y0 + h > H:
        raise DScopeError("bad_argument", f"ROI {roi_xywh} is not inside the {W}x{H} image")
    radii = [(z.name, float(z.inner_um), float(z.outer_um), z.inner_um / 2.0 * px_per_um, z.outer_um / 2.0 * px_per_um)
             for z in zone_defs]
    out = _lazy_zones(radii, geometry, (x0, y0, w, h))  # one shared squared-radius grid
    if not lazy:
        for z in out:
            _ = z.mask
    return out


def zones_on_roi(
    zones: Sequence[ZoneMask], geometry: FiberGeometry, roi_xywh: tuple[int, int, int, int]
) -> list[ZoneMask]:
    """The same zones (names, radii) realised lazily on another region of interest.

    Examples
    --------
    >>> g = FiberGeometry(center_px=(50.0, 50.0), cladding_radius_px=40.0)
    >>> zs = build_zone_masks((100, 100), g, [ZoneDef("core", 0, 20), ZoneDef("cladding", 20, 80)], 1.0, (0, 0, 100, 100))
    >>> moved = zones_on_roi(zs, g, fiber_roi((100, 100), g, 40.0, 0))
    >>> [z.realised for z in moved], moved[1].mask.shape
    ([False, False], (81, 81))
    """
    return _lazy_zones([(z.name, z.inner_um, z.outer_um, z.inner_px, z.outer_px) for z in zones], geometry, roi_xywh)


def _lazy_zones(radii, geometry: FiberGeometry, roi_xywh) -> list[ZoneMask]:
    """ZoneMasks from ``(name, inner_um, outer_um, inner_px, outer_px)`` whose masks are built on first access."""
    x0, y0, w, h = (int(v) for v in roi_xywh)
    grid: list[np.ndarray] = []

    def rho2() -> np.ndarray:
        if not grid:
            grid.append(_normalized_radius2_grid(geometry, (x0, y0, w, h)))
        return grid[0]

    def builder(r_in: float, r_out: float):
        return lambda: (rho2() >= np.float32(r_in) ** 2) & (rho2() < np.float32(r_out) ** 2)

    return [ZoneMask(name, inner_um, outer_um, inner_px, outer_px, builder(inner_px, outer_px), (x0, y0, w, h))
            for name, inner_um, outer_um, inner_px, outer_px in radii]


def zone_of_points(
    points_xy: np.ndarray, geometry: FiberGeometry, zone_defs: Sequence[ZoneDef], px_per_um: float
) -> list[str | None]:
    """Zone name of each point (image px, ``[x, y]``), ``None`` outside every zone.

    Examples
    --------
    >>> g = FiberGeometry(center_px=(0.0, 0.0), cladding_radius_px=62.5)
    >>> zs = [ZoneDef("core", 0, 25), ZoneDef("cladding", 25, 115)]
    >>> zone_of_points([[5, 0], [30, 0], [100, 0]], g, zs, 1.0)
    ['core', 'cladding', None]
    """
    if not (px_per_um > 0 and math.isfinite(px_per_um)):
        raise DScopeError("bad_argument", f"px_per_um must be a positive number, got {px_per_um!r}")
    _check_zones(zone_defs)
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return []
    rho = geometry.normalized_radius(pts)
    names: list[str | None] = [None] * len(pts)
    assigned = np.zeros(len(pts), bool)
    for z in zone_defs:
        r_in = z.inner_um / 2.0 * px_per_um
        r_out = z.outer_um / 2.0 * px_per_um
        hit = (~assigned) & (rho >= r_in) & (rho < r_out)
        for i in np.flatnonzero(hit):  # one entry per point (points, not pixels)
            names[i] = z.name
        assigned |= hit
    return names


def select_zones(zone_defs: Sequence[ZoneDef], names: Sequence[str] | None) -> list[ZoneDef]:
    """The zones named in ``names`` (``--zones core,cladding``), in rule-set order; all when ``names`` is None.

    Raises
    ------
    DScopeError
        ``bad_argument`` naming the unknown zone(s) and the available ones.

    Examples
    --------
    >>> zs = [ZoneDef("core", 0, 25), ZoneDef("cladding", 25, 115)]
    >>> [z.name for z in select_zones(zs, ["cladding"])]
    ['cladding']
    """
    if names is None:
        return list(zone_defs)
    wanted = [n.strip() for n in names if n and n.strip()]
    known = [z.name for z in zone_defs]
    unknown = sorted(set(wanted) - set(known))
    if unknown or not wanted:
        raise DScopeError("bad_argument", f"unknown zone(s) {unknown or wanted}; this rule set has {known}")
    return [z for z in zone_defs if z.name in wanted]


def zone_crop(gray: np.ndarray, zone: ZoneMask, fill: int = 0) -> np.ndarray:
    """The zone's ROI crop of ``gray`` with pixels outside the zone set to ``fill`` (for ``--save-zones``).

    Examples
    --------
    >>> g = FiberGeometry(center_px=(10.0, 10.0), cladding_radius_px=8.0)
    >>> m = build_zone_masks((20, 20), g, [ZoneDef("core", 0, 8)], 1.0, fiber_roi((20, 20), g, 4.0, 0))[0]
    >>> crop = zone_crop(np.full((20, 20), 200, np.uint8), m)
    >>> crop.shape == m.mask.shape and int(crop.max()) == 200 and int(crop.min()) == 0
    True
    """
    x, y, w, h = zone.roi_xywh
    img = np.asarray(gray)
    if img.ndim != 2 or y + h > img.shape[0] or x + w > img.shape[1]:
        raise DScopeError("bad_argument", f"zone ROI {zone.roi_xywh} does not fit the image of shape {img.shape}")
    crop = img[y : y + h, x : x + w].copy()
    crop[~zone.mask] = fill
    return crop
