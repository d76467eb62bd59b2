"""Scale calibration: stage-micrometer dot grids and reference fibers (issue 3).

Pure functions; reading images and writing ``calibration.json`` live in
:mod:`dscope.calibration_io`.

Dot grid
    Dots are segmented against a smoothed background (both polarities are
    tried), their intensity-weighted centroids computed, and an affine lattice
    ``p = o + i * A + j * B`` fitted to them: the two basis vectors come from the
    dominant nearest-neighbour displacement directions, integer indices are
    assigned in growing rings around the central dot, and the fit is iterated
    with outlier rejection, so missing and extra dots, rotation and skew are
    tolerated.  The scale reported is ``spacing / sigma_1`` where ``sigma_1`` is
    the larger singular value of ``[A B]`` (px per lattice step along the most
    stretched direction): the same "along the major axis" convention as the
    fiber scale ``cladding_um / (2 * semi-major)``.  The minor-axis scale and the
    anisotropy go into ``details``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import Field
from scipy.spatial import cKDTree

from dscope.errors import CalibrationError, DScopeError
from dscope.inspection.localize import LocalizationParams, localize_fiber
from dscope.params import StrictModel


class CalibrationParams(StrictModel):
    """Settings of the dot-grid calibration (section ``calibration``)."""

    min_dots: int = Field(ge=4, description="fewest lattice dots needed for a calibration")
    background_sigma_px: float = Field(gt=0, description="Gaussian sigma of the background estimate subtracted before thresholding")
    smooth_sigma_px: float = Field(ge=0, le=5, description="light Gaussian smoothing before segmentation")
    min_dot_area_px: int = Field(ge=1, description="smaller blobs are noise")
    dot_area_tolerance: float = Field(gt=1, description="blobs whose area differs from the median by more than this factor are rejected")
    max_blob_count: int = Field(ge=16, description="cap on blobs analysed (bounded work)")
    neighbours: int = Field(ge=2, le=12, description="nearest neighbours examined per dot for the basis vectors")
    basis_length_tolerance: float = Field(gt=0, lt=1, description="neighbour vectors within this fraction of the median nearest distance form the basis")
    basis_min_angle_deg: float = Field(gt=0, lt=90, description="smallest angle between the two basis vectors")
    index_ring_steps: list[int] = Field(min_length=1, description="lattice radii (steps) of the successive index-assignment rounds")
    inlier_tol_steps: float = Field(gt=0, lt=0.5, description="dots farther than this (lattice steps) from their lattice point are outliers")
    min_lattice_fraction: float = Field(gt=0, le=1, description="share of the segmented blobs that must lie on the lattice")
    max_rms_steps: float = Field(gt=0, lt=0.5, description="largest rms distance of the dots from their lattice points, in lattice steps")
    fit_iterations: int = Field(ge=1, le=20, description="least-squares / outlier-rejection rounds per ring")


@dataclass
class CalibrationResult:
    """Measured scale and how it was obtained."""

    um_per_px: float
    uncertainty_um_per_px: float
    n_dots: int
    method: str  # "dot_grid" | "reference_fiber"
    details: dict = field(default_factory=dict)


def _segment(gray: np.ndarray, params: CalibrationParams, dark_dots: bool):
    """Blobs of one polarity: (centroids (N, 2), areas (N,)) with intensity-weighted centroids."""
    img = gray.astype(np.float32)
    if params.smooth_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), params.smooth_sigma_px)
    bg = cv2.GaussianBlur(img, (0, 0), params.background_sigma_px)
    resp = (bg - img) if dark_dots else (img - bg)
    r8 = np.clip(resp - resp.min(), 0, None)
    scale = 255.0 / max(float(r8.max()), 1e-6)
    r8 = (r8 * scale).astype(np.uint8)
    thr, bw = cv2.threshold(r8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bw, connectivity=8)
    if n <= 1:
        return np.zeros((0, 2)), np.zeros(0)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    # intensity-weighted centroids (weights = response above the threshold), vectorised with bincount
    w = np.clip(r8.astype(np.float32) - np.float32(thr), 0, None).ravel() + 1.0
    lab = labels.ravel()
    keep = lab > 0
    ys, xs = np.divmod(np.flatnonzero(keep), gray.shape[1])
    wl = w[keep]
    ll = lab[keep]
    sw = np.bincount(ll, weights=wl, minlength=n)[1:]
    sx = np.bincount(ll, weights=wl * xs, minlength=n)[1:]
    sy = np.bincount(ll, weights=wl * ys, minlength=n)[1:]
    cents = np.stack([sx / np.maximum(sw, 1e-9), sy / np.maximum(sw, 1e-9)], axis=1)
    # blobs touching the frame border have biased centroids
    x0, y0 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    bw_, bh_ = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    inner = (x0 > 0) & (y0 > 0) & (x0 + bw_ < gray.shape[1]) & (y0 + bh_ < gray.shape[0])
    ok = inner & (areas >= params.min_dot_area_px)
    return cents[ok], areas[ok]


def _filter_area(cents, areas, params):
    if len(areas) == 0:
        return cents, areas
    med = float(np.median(areas))
    ok = (areas <= med * params.dot_area_tolerance) & (areas >= med / params.dot_area_tolerance)
    cents, areas = cents[ok], areas[ok]
    if len(areas) > params.max_blob_count:
        order = np.argsort(np.abs(areas - med))[: params.max_blob_count]
        cents, areas = cents[order], areas[order]
    return cents, areas


def _basis(cents: np.ndarray, params: CalibrationParams):
    """Two lattice basis vectors from the dominant nearest-neighbour displacements."""
    k = min(params.neighbours + 1, len(cents))
    tree = cKDTree(cents)
    d, idx = tree.query(cents, k=k)
    d1 = float(np.median(d[:, 1]))
    vec = cents[idx[:, 1:]] - cents[:, None, :]
    vec = vec.reshape(-1, 2)
    ln = np.hypot(vec[:, 0], vec[:, 1])
    vec = vec[np.abs(ln - d1) <= params.basis_length_tolerance * d1]
    if len(vec) < 4:
        return None
    # fold to the half plane: v and -v are the same lattice direction
    ang = np.degrees(np.arctan2(vec[:, 1], vec[:, 0]))
    flip = (ang < 0) | (ang >= 180)
    vec[flip] *= -1
    ang = np.mod(ang, 180.0)
    hist, edges = np.histogram(ang, bins=36, range=(0, 180))
    # circular smoothing of the histogram (0 and 180 deg are the same direction)
    hs = hist + 0.5 * np.roll(hist, 1) + 0.5 * np.roll(hist, -1)
    a1 = (edges[int(np.argmax(hs))] + 2.5) % 180.0

    def around(a0):
        dd = np.abs(((ang - a0) + 90.0) % 180.0 - 90.0)
        sel = dd <= 12.0
        if not sel.any():
            return None
        v = vec[sel].copy()
        # align signs with the reference direction
        ref = np.array([math.cos(math.radians(a0)), math.sin(math.radians(a0))])
        v[(v @ ref) < 0] *= -1
        return np.median(v, axis=0)

    A = around(a1)
    dd = np.abs(((np.mod(ang - a1, 180.0)) + 90.0) % 180.0 - 90.0)
    far = dd >= params.basis_min_angle_deg
    if A is None or not far.any():
        return None
    hist2, _ = np.histogram(ang[far], bins=36, range=(0, 180))
    hs2 = hist2 + 0.5 * np.roll(hist2, 1) + 0.5 * np.roll(hist2, -1)
    a2 = (edges[int(np.argmax(hs2))] + 2.5) % 180.0
    B = around(a2)
    if B is None:
        return None
    return A, B, d1


def _fit_lattice(cents, A, B, params: CalibrationParams):
    """Assign integer indices in growing rings and fit p = o + i A + j B by least squares."""
    centre = np.median(cents, axis=0)
    o_idx = int(np.argmin(np.hypot(*(cents - centre).T)))
    o = cents[o_idx].copy()
    M = np.stack([A, B], axis=1)  # columns
    inl = np.zeros(len(cents), bool)
    ij = np.zeros((len(cents), 2))
    sol = None
    for ring in params.index_ring_steps:
        for _ in range(params.fit_iterations):
            Minv = np.linalg.inv(M)
            f = (cents - o) @ Minv.T
            ij = np.rint(f)
            resid_steps = np.hypot(*(f - ij).T)
            near = np.max(np.abs(ij), axis=1) <= ring
            new = near & (resid_steps <= params.inlier_tol_steps)
            if new.sum() < 3:
                return None
            X = np.column_stack([np.ones(int(new.sum())), ij[new]])
            sol, *_ = np.linalg.lstsq(X, cents[new], rcond=None)  # rows: o, A, B
            o, M = sol[0], np.stack([sol[1], sol[2]], axis=1)
            if np.array_equal(new, inl):
                break
            inl = new
    if sol is None:
        return None
    # duplicate indices (an extra dot next to a lattice dot): keep the closest
    X = np.column_stack([np.ones(len(cents)), ij])
    res = cents - X @ sol
    rn = np.hypot(res[:, 0], res[:, 1])
    keys = ij[:, 0] * 100003 + ij[:, 1]
    order = np.lexsort((rn, keys))
    first = np.ones(len(order), bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    uniq = np.zeros(len(cents), bool)
    uniq[order[first]] = True
    inl = inl & uniq
    X = np.column_stack([np.ones(int(inl.sum())), ij[inl]])
    sol, *_ = np.linalg.lstsq(X, cents[inl], rcond=None)
    res = cents[inl] - X @ sol
    return sol, inl, res, X


def calibrate_dot_grid(gray: np.ndarray, dot_spacing_um: float, params: CalibrationParams) -> CalibrationResult:
    """Measure micrometres per pixel from an image of a square stage-micrometer dot grid.

    Parameters
    ----------
    gray : ndarray
        2-D grey image of the grid (dark dots on a bright field or the reverse).
    dot_spacing_um : float
        Pitch of the grid in micrometres.
    params : CalibrationParams
        Section ``calibration`` of the configuration.

    Returns
    -------
    CalibrationResult
        ``um_per_px`` along the most stretched lattice direction (the fiber's
        major-axis convention), its 1-sigma statistical uncertainty from the
        lattice least-squares fit, the number of lattice dots used and
        ``details`` (basis vectors, minor-axis scale, anisotropy, rotation, rms).

    Raises
    ------
    CalibrationError
        ``calibration_failed`` when too few dots or no lattice is found.

    Examples
    --------
    >>> from dscope.synth import make_dot_grid
    >>> img, truth = make_dot_grid(640, 480, spacing_um=10, um_per_px=0.5, rotation_deg=12)
    >>> res = calibrate_dot_grid(img, 10.0, params)  # doctest: +SKIP
    >>> abs(res.um_per_px / truth["um_per_px"] - 1) < 0.002  # doctest: +SKIP
    True
    """
    if not (dot_spacing_um > 0 and math.isfinite(dot_spacing_um)):
        raise DScopeError("bad_argument", f"dot spacing must be a positive number of micrometres, got {dot_spacing_um!r}")
    arr = np.asarray(gray)
    if arr.ndim != 2 or arr.size == 0:
        raise CalibrationError("calibration_failed", f"a 2-D grey image is needed, got shape {arr.shape}")
    best = None
    for dark in (True, False):
        cents, areas = _filter_area(*_segment(arr, params, dark), params)
        if len(cents) < params.min_dots:
            continue
        b = _basis(cents, params)
        if b is None:
            continue
        fit = _fit_lattice(cents, b[0], b[1], params)
        if fit is None:
            continue
        sol, inl, res, X = fit
        n = int(inl.sum())
        step_px = float(np.sqrt(abs(np.linalg.det(np.stack([sol[1], sol[2]], axis=1)))))
        rms_steps = float(np.sqrt(np.mean(np.sum(res**2, axis=1)))) / max(step_px, 1e-9)
        # a real grid explains most blobs with a small residual; texture blobs do not
        if n < params.min_lattice_fraction * len(cents) or rms_steps > params.max_rms_steps:
            continue
        if best is None or n > best[0]:
            best = (n, sol, res, X, dark, len(cents))
    if best is None or best[0] < params.min_dots:
        raise CalibrationError(
            "calibration_failed",
            f"no dot lattice found (need at least {params.min_dots} dots on a regular grid)",
        )
    n, sol, res, X, dark, n_blobs = best
    A, B = sol[1], sol[2]
    M = np.stack([A, B], axis=1)
    sv = np.linalg.svd(M, compute_uv=False)
    s1, s2 = float(sv[0]), float(sv[1])
    dof = max(2 * n - 6, 1)
    sigma = math.sqrt(float(np.sum(res**2)) / dof)
    cov = np.linalg.inv(X.T @ X)
    # std of a basis-vector length ~ sigma * sqrt(diag); s1 mixes both vectors
    s_step = sigma * math.sqrt(0.5 * (cov[1, 1] + cov[2, 2]))
    upp = dot_spacing_um / s1
    unc = upp * s_step / s1
    rot = math.degrees(math.atan2(A[1], A[0]))
    skew = math.degrees(math.acos(np.clip(abs(A @ B) / (np.linalg.norm(A) * np.linalg.norm(B)), -1, 1)))
    return CalibrationResult(
        um_per_px=float(upp),
        uncertainty_um_per_px=float(unc),
        n_dots=n,
        method="dot_grid",
        details={
            "dot_spacing_um": float(dot_spacing_um),
            "spacing_px_major": s1,
            "spacing_px_minor": s2,
            "um_per_px_minor": float(dot_spacing_um / s2),
            "anisotropy": s1 / s2,
            "basis_a_px": [float(A[0]), float(A[1])],
            "basis_b_px": [float(B[0]), float(B[1])],
            "rotation_deg": rot,
            "angle_between_axes_deg": 180.0 - skew if skew > 90 else skew,
            "fit_rms_px": sigma,
            "n_blobs": int(n_blobs),
            "dot_polarity": "dark" if dark else "bright",
        },
    )


def calibrate_reference_fiber(gray: np.ndarray, cladding_um: float, loc_params: LocalizationParams) -> CalibrationResult:
    """Measure micrometres per pixel from an image of a fiber of known cladding diameter.

    ``um_per_px = cladding_um / (2 * semi-major axis)``; the uncertainty is
    propagated from the radius standard error of the localization fit.

    Raises
    ------
    CalibrationError
        ``calibration_failed`` when the fiber cannot be localized.

    Examples
    --------
    >>> import numpy as np
    >>> from dscope.config import load_config
    >>> from dscope.synth import random_spec, render
    >>> spec = random_spec(np.random.default_rng(0), scenario="clean", width=640, height=480,
    ...                    fiber_type="sm-pc", um_per_px=0.4)
    >>> img, truth = render(spec)
    >>> res = calibrate_reference_fiber(img, 125.0, load_config().profile().localization)
    >>> res.method, abs(res.um_per_px / truth.um_per_px - 1) < 0.01
    ('reference_fiber', True)
    """
    if not (cladding_um > 0 and math.isfinite(cladding_um)):
        raise DScopeError("bad_argument", f"cladding diameter must be a positive number of micrometres, got {cladding_um!r}")
    try:
        g = localize_fiber(gray, loc_params)
    except DScopeError as exc:
        raise CalibrationError("calibration_failed", f"reference fiber not found: {exc.message}") from None
    r = g.cladding_radius_px
    upp = cladding_um / (2.0 * r)
    r_std = float(g.diagnostics.get("radius_std_px", 0.0))
    return CalibrationResult(
        um_per_px=float(upp),
        uncertainty_um_per_px=float(upp * r_std / r),
        n_dots=0,
        method="reference_fiber",
        details={
            "cladding_um": float(cladding_um),
            "cladding_radius_px": float(r),
            "center_px": [float(g.center_px[0]), float(g.center_px[1])],
            "axis_ratio": float(g.axis_ratio),
            "quality": float(g.quality),
            "in_frame_fraction": float(g.in_frame_fraction),
        },
    )
