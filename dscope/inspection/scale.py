"""Micrometre scale of one image: which source wins and whether the sources agree (issue 3).

Priority (``Scale.source``):

1. ``"um_per_px"``          -- given directly by the user;
2. ``"user_cladding"``      -- cladding diameter typed by the user / detected major axis;
3. ``"calibration"``        -- ``calibration.json`` (dot grid or reference fiber);
4. ``"fiber_type_nominal"`` -- nominal cladding of an explicitly chosen fiber type / detected major axis;
5. ``"none"``               -- pixels only.

Independent measured scales are cross-checked: a calibration that disagrees
with the user's cladding diameter (or with an explicit ``um_per_px``) by more
than the configured fraction produces a warning.
"""

from __future__ import annotations

import math

from dscope.errors import DScopeError
from dscope.inspection.types import FiberGeometry, Scale

_SOURCES = ("user", "fiber_type", "none")


def _positive(name: str, v: float | None) -> None:
    if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise DScopeError("bad_argument", f"{name} must be a positive number, got {v!r}")


def cladding_scale(geometry: FiberGeometry | None, cladding_um: float) -> float | None:
    """``cladding_um / (2 * semi-major axis)``, or ``None`` without a usable geometry.

    Examples
    --------
    >>> cladding_scale(FiberGeometry(center_px=(0.0, 0.0), cladding_radius_px=250.0), 125.0)
    0.25
    """
    if geometry is None or not (geometry.cladding_radius_px > 0):
        return None
    return cladding_um / (2.0 * geometry.cladding_radius_px)


def _disagreement(name_a: str, a: float, name_b: str, b: float, tol: float) -> str | None:
    rel = abs(a - b) / b
    if rel > tol:
        return (
            f"scale_disagreement: {name_a} {a:.5g} um/px and {name_b} {b:.5g} um/px differ by "
            f"{100 * rel:.2f} % (more than {100 * tol:.2f} %)"
        )
    return None


def resolve_scale(
    geometry: FiberGeometry | None,
    *,
    um_per_px: float | None,
    cladding_um: float | None,
    cladding_source: str,
    calibration_um_per_px: float | None,
    disagreement_warn_fraction: float,
    calibration_uncertainty_um_per_px: float | None = None,
) -> tuple[Scale, list[str]]:
    """Choose the micrometre scale of an image and report disagreements.

    Parameters
    ----------
    geometry : FiberGeometry or None
        Localized fiber (needed for the cladding-based scales).
    um_per_px : float or None
        Explicit scale from the user.
    cladding_um : float or None
        Known cladding diameter.
    cladding_source : str
        ``"user"`` (typed by the user), ``"fiber_type"`` (nominal value of an explicitly chosen
        fiber type) or ``"none"``.
    calibration_um_per_px : float or None
        Scale from ``calibration.json``.
    disagreement_warn_fraction : float
        Relative difference between two measured scales above which a warning is returned
        (``scale.calibration_disagreement_warn_fraction``).
    calibration_uncertainty_um_per_px : float, optional
        Carried into the returned :class:`Scale` when the calibration wins.

    Returns
    -------
    (Scale, list of str)
        The chosen scale and warnings.

    Examples
    --------
    >>> g = FiberGeometry(center_px=(0.0, 0.0), cladding_radius_px=250.0)
    >>> s, w = resolve_scale(g, um_per_px=None, cladding_um=125.0, cladding_source="user",
    ...                      calibration_um_per_px=0.3, disagreement_warn_fraction=0.02)
    >>> s.source, s.um_per_px, len(w)
    ('user_cladding', 0.25, 1)
    """
    if cladding_source not in _SOURCES:
        raise DScopeError("bad_argument", f"cladding_source must be one of {list(_SOURCES)}, got {cladding_source!r}")
    _positive("um_per_px", um_per_px)
    _positive("cladding_um", cladding_um)
    _positive("calibration um_per_px", calibration_um_per_px)
    if not (0 < disagreement_warn_fraction < 1):
        raise DScopeError("bad_argument", f"disagreement_warn_fraction must be in (0, 1), got {disagreement_warn_fraction!r}")
    warnings: list[str] = []
    user_clad = cladding_scale(geometry, cladding_um) if (cladding_um is not None and cladding_source == "user") else None
    nominal = cladding_scale(geometry, cladding_um) if (cladding_um is not None and cladding_source == "fiber_type") else None
    if cladding_um is not None and cladding_source in ("user", "fiber_type") and geometry is None:
        warnings.append("scale_unavailable: the cladding diameter cannot set the scale without a localized fiber")

    if calibration_um_per_px is not None:
        if user_clad is not None:
            w = _disagreement("user cladding", user_clad, "calibration", calibration_um_per_px, disagreement_warn_fraction)
            if w:
                warnings.append(w)
        if um_per_px is not None:
            w = _disagreement("--um-per-px", um_per_px, "calibration", calibration_um_per_px, disagreement_warn_fraction)
            if w:
                warnings.append(w)

    if um_per_px is not None:
        return Scale(float(um_per_px), "um_per_px"), warnings
    if user_clad is not None:
        return Scale(float(user_clad), "user_cladding"), warnings
    if calibration_um_per_px is not None:
        return Scale(float(calibration_um_per_px), "calibration", calibration_uncertainty_um_per_px), warnings
    if nominal is not None:
        return Scale(float(nominal), "fiber_type_nominal"), warnings
    return Scale(None, "none"), warnings
