"""Fiber localization: cladding boundary (circle or ellipse), core, quality (issue 3).

Two stages, both bounded in work per image:

1. **Coarse** (on a copy downscaled to ``coarse_max_side_px``): candidates from
   ``cv2.HoughCircles`` (``HOUGH_GRADIENT_ALT``, bounded radius range, capped
   count, skipped on edge-saturated/noise frames) and from ``cv2.fitEllipse`` on
   Canny contours and on Otsu-threshold blobs.  Every candidate is scored by
   its *edge support*: the share of in-frame radial rays that show a
   significant intensity step of a consistent polarity close to the candidate
   boundary.
2. **Refinement** (full resolution, only on a polar grid of rays around the
   best candidates): the strongest step of the expected polarity is located
   on every ray with sub-pixel precision (parabolic interpolation of the
   smoothed radial derivative), rays outside the frame or in black analog
   borders are dropped, and a circle and an ellipse are fitted robustly
   (vectorised RANSAC + least squares).  Rays that hit a chip or dirt on the
   edge become outliers.  The ellipse is kept only when it explains the edge
   significantly better than the circle *and* its axis ratio exceeds the
   configured tolerance.

A candidate lying inside a larger well-supported candidate is ranked after it, and
an accepted boundary lying inside another accepted boundary with good angular
coverage loses to it: a compact, high-contrast pit or particle inside the glass
is a perfect small circle, but the fiber is the boundary enclosing it.  When
nothing encloses the best coarse candidate, an outward ray probe from its centre
(strongest step per ray, RANSAC circle) supplies the enclosing cladding edge
that chips and dirt broke up for the contour sources.

The core is found from the median (over angles) radial profile inside the
cladding, in the fiber's circular frame.

A frame without a fiber (black, white, blank ferrule, noise) never yields a
circle: :class:`dscope.errors.LocalizationError` (code ``localization_failed``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from dscope.errors import ImageError, LocalizationError
from dscope.inspection.methods import circumcircles
from dscope.inspection.types import Ellipse, FiberGeometry
from dscope.params import StrictModel

_MAD_TO_SIGMA = 1.4826
#: RANSAC hypotheses are ranked on at most about this many edge points (bounded work).
_RANSAC_SCORE_POINTS = 180
#: every this-many derivative differences enter the per-call noise median (robust statistic, cheap)
_NOISE_SUBSAMPLE = 3
#: the pixel-noise estimate of the coarse copy uses about this many rows
_SIGMA_ROWS = 40
#: a point inside a circle lies at most one diameter (two radii) from its boundary
_DIAMETER_PER_RADIUS = 2.0
#: Gauss-Newton circle fits stop when no parameter moves more than this (px): far below the precision
_GN_CONVERGE_PX = 1e-4


class LocalizationParams(StrictModel):
    """Settings of :func:`localize_fiber` (``profiles.<name>.localization``)."""

    # -- input / frame ------------------------------------------------------------------
    min_image_side_px: int = Field(ge=16, description="smaller images are refused (image_too_small)")
    black_border_level: float = Field(
        ge=0, le=255, description="rows/columns at the frame edge whose 95th percentile grey is below this are analog black border"
    )
    min_dynamic_range_gray: float = Field(
        ge=0, le=255, description="p99.5 - p0.5 grey of the usable frame below which no fiber can be seen"
    )
    # -- coarse stage ---------------------------------------------------------------------
    coarse_max_side_px: int = Field(ge=128, le=2048, description="long side of the downscaled copy for the coarse stage")
    coarse_downscale: Literal["area", "pyramid"] = Field(
        description="coarse copy: one INTER_AREA resize by the integer factor (about 1 ms on 2048x1536), or 2x2 area "
        "halvings + a bilinear step to the cap (about 0.25 ms; slightly different pixels)"
    )
    coarse_blur_sigma_px: float = Field(gt=0, le=10, description="Gaussian sigma on the downscaled copy")
    min_cladding_radius_px: float = Field(gt=4, description="smallest cladding radius searched, full-res pixels")
    max_cladding_radius_frac: float = Field(
        gt=0.05, le=2.0, description="largest cladding radius searched, as a fraction of the image's long side"
    )
    max_axis_ratio: float = Field(ge=1.0, le=4.0, description="candidates / fits with a larger semi-major/semi-minor ratio are rejected")
    hough_mode: Literal["always", "fallback", "off"] = Field(
        description="HoughCircles (HOUGH_GRADIENT_ALT): always, only when no contour candidate reaches coarse_accept_score, or never"
    )
    lazy_sources: bool = Field(
        default=False,
        description="refine the candidates after each coarse source and run the next (costlier) source only when none "
        "refined to an accepted fit of quality >= refine_accept_quality (fast profiles: the work follows the difficulty "
        "of the frame); false = collect the candidates of the sources first, then refine",
    )
    coarse_accept_score: float = Field(gt=0, le=1, description="coarse edge support that makes the Hough fallback unnecessary")
    coarse_accept_min_radius_frac: float = Field(
        ge=0, le=1, description="only candidates at least this fraction of the short image side in radius end the cheap "
        "candidate sources early (a perfect small circle - a particle or pit - must not hide a fiber whose contour is "
        "broken); the Hough fallback is skipped once any candidate reaches coarse_accept_score"
    )
    coarse_min_sources: int = Field(
        ge=1, le=3, description="cheap candidate sources (strong contours, weak contours, Otsu blobs) always run before a "
        "well-supported candidate may end the search early: a compact pit or particle inside the glass can be the "
        "strongest closed contour while the broken cladding edge only appears in a later source"
    )
    enclosing_min_support: float = Field(
        gt=0, le=1, description="a candidate lying inside a larger candidate with at least this coarse edge support is "
        "ranked after it (a pit, particle or the core inside the cladding never outranks the cladding)"
    )
    enclosure_tol_frac: float = Field(
        ge=0, le=0.5, description="a candidate is inside another when centre distance + its semi-major axis <= the "
        "other's semi-major axis x (1 + this); the other must also be larger by this factor"
    )
    enclosing_min_coverage: float = Field(
        gt=0, le=1, description="refined boundaries: an accepted boundary with at least this angular coverage wins over an "
        "accepted boundary lying inside it (whatever their contrasts)"
    )
    enclosing_min_quality_ratio: float = Field(
        default=0.0, ge=0, le=1, description="... and at least this share of the inner boundary's fit quality: a loose "
        "fit on the ferrule texture or an epoxy ring around a crisp, fully supported boundary does not replace it"
    )
    core_check_min_ratio: float = Field(
        default=0.0, ge=0, lt=1, description="with a nominal core/cladding ratio at least this large (large-core "
        "fibers, whose core edge lies a few percent inside the cladding), the best boundary is also refined at "
        "radius / ratio: an accepted boundary there whose radius times the ratio matches the best one (within "
        "core_check_tol_frac), at least as continuous (edge support) and with enclosing_min_quality_ratio of its "
        "quality, is the cladding and the best one was the core (0 = off)"
    )
    core_check_tol_frac: float = Field(
        default=0.02, gt=0, le=0.1, description="radius agreement of the core check, as a share of the outer radius "
        "(room for the fiber's own core/cladding tolerances)"
    )
    enclosure_probe: bool = Field(
        description="cast rays outward from the best candidate (when nothing encloses it) and fit a circle to the "
        "strongest step on each: finds a cladding edge broken by chips and dirt around a compact pit or particle"
    )
    probe_inner_frac: float = Field(
        gt=1, le=4, description="the outward probe starts at this multiple of the candidate's semi-major axis"
    )
    probe_min_inlier_frac: float = Field(
        gt=0, le=1, description="share of the probe's in-frame rays that must lie on the fitted circle for it to be a candidate"
    )
    hough_max_side_px: int = Field(ge=64, le=2048, description="long side of the (further downscaled) Hough copy")
    hough_dp: float = Field(ge=1.0, le=4.0, description="inverse accumulator resolution")
    hough_param1_min: float = Field(gt=0, description="lower bound of the Scharr edge threshold (param1)")
    hough_edge_snr: float = Field(gt=0, description="param1 = max(hough_param1_min, hough_edge_snr * Scharr noise std)")
    hough_param2: float = Field(gt=0, le=1, description="circle 'perfectness' threshold of HOUGH_GRADIENT_ALT")
    hough_max_candidates: int = Field(ge=1, le=100, description="Hough circles kept")
    texture_retry_median_px: int = Field(default=0, ge=0, le=5, description="when no circular edge candidate "
                                         "is found, localization runs once more on a median-filtered copy with "
                                         "this aperture (odd, 3 or 5; 0 = off): a coarse ferrule texture breaks "
                                         "the cladding's edge contours apart where the glass and the ferrule "
                                         "are of the same grey")
    texture_retry_min_quality: float = Field(default=0.5, ge=0, le=1, description="the retry's fiber is kept "
                                             "only with at least this quality (smoothed texture of a fiber-free "
                                             "frame yields weak circles)")
    max_edge_density: float = Field(
        gt=0, le=1, description="share of Canny edge pixels above which the frame is edge-saturated (noise) and Hough is skipped"
    )
    canny_high_snr: float = Field(gt=0, description="Canny high threshold in units of the Sobel noise std")
    canny_max_edge_frac: float = Field(gt=0, lt=1, description="Canny high threshold is raised so at most this share of pixels are edges")
    canny_low_snr: float = Field(gt=0, description="Canny low threshold in units of the Sobel noise std")
    threshold_contours: bool = Field(description="also fit ellipses to Otsu-threshold blobs of both polarities")
    contour_min_points: int = Field(ge=5, description="shortest contour (points, downscaled) fitted with fitEllipse")
    contour_max_fits: int = Field(ge=1, le=2000, description="longest contours fitted with fitEllipse per source (bounded work)")
    contour_fit_tol_px: float = Field(gt=0, description="median distance (downscaled px) of a contour to its ellipse for it to be a candidate")
    contour_fit_tol_frac: float = Field(
        default=0.0, ge=0, le=0.1, description="... or this fraction of the ellipse's semi-major axis, whichever is larger: "
        "a large fiber's Canny contour traces both sides of its edge and the rim line, and picks up the scratches and "
        "particles that touch it (the full-resolution refinement finds the exact boundary)",
    )
    contour_max_candidates: int = Field(ge=1, le=200, description="largest well-fitting contour ellipses kept per source")
    canny_strong_top_px: int = Field(
        ge=4, description="the gradient magnitude of the strongest this-many pixels (downscaled) stands for the strongest edge"
    )
    canny_strong_frac: float = Field(gt=0, le=1, description="first Canny pass: high threshold = this share of that magnitude")
    max_candidates: int = Field(ge=1, le=200, description="cap on all coarse candidates scored")
    refine_accept_quality: float = Field(
        gt=0, le=2, description="stop refining further candidates once one is accepted with this quality (> 1 = refine all)"
    )
    refine_top_candidates: int = Field(ge=1, le=10, description="best-scoring candidates refined at full resolution")
    score_rays: int = Field(ge=16, le=720, description="rays used to score a coarse candidate")
    score_window_frac: float = Field(gt=0, le=0.5, description="coarse search window, +- fraction of the radius")
    score_tol_frac: float = Field(gt=0, le=0.2, description="a coarse ray supports when its step is within this fraction of the radius")
    score_tol_min_px: float = Field(gt=0, description="lower bound of the coarse position tolerance, downscaled pixels")
    # -- edge detection along rays ------------------------------------------------------------
    edge_min_snr: float = Field(gt=0, description="a ray's step must exceed this many derivative-noise std")
    min_step_gray: float = Field(ge=0, le=255, description="median glass/ferrule step (grey levels) below which nothing is found")
    radial_smooth_sigma_px: float = Field(gt=0, le=10, description="Gaussian sigma along each ray before differentiation")
    edge_multi_rel: float = Field(
        gt=0, le=1, description="steps weaker than this share of a ray's strongest are ignored; of the rest the innermost is the glass edge"
    )
    boundary_window_frac: float = Field(
        gt=0, le=0.5, description="median-profile boundary search reaches this fraction of the radius inside the fitted edge"
    )
    boundary_rays: int = Field(ge=32, le=4096, description="rays of the median boundary profile")
    boundary_step_px: float = Field(gt=0, le=2, description="radial sample spacing of the median boundary profile, px")
    boundary_min_rel: float = Field(
        gt=0, le=1, description="median profile: steps weaker than this share of the strongest are not the boundary"
    )
    boundary_distinct_rel: float = Field(
        gt=0, le=1, description="median profile: an inner step is distinct when |d| falls below this share of it before the strongest"
    )
    rim_search_px: float = Field(ge=0, le=20, description="a dark rim line within this distance of the step is the boundary (0 = off)")
    rim_search_in_frac: float = Field(
        default=0.0, ge=0, le=0.3, description="no rim line at the step: the thin dark valley nearest inside it, "
        "within this fraction of the radius (and the boundary window), is the glass edge: an epoxy ring between "
        "glass and ferrule makes the ring's outer edge the strongest step (0 = off)"
    )
    rim_smooth_sigma_px: float = Field(gt=0, le=5, description="Gaussian sigma along the ray when locating the rim-line valley")
    rim_max_halfwidth_px: float = Field(
        gt=0, le=20, description="largest inner half-width (min to half-way back to the glass level) of a rim line; wider valleys are adhesive rings"
    )
    rim_min_depth_gray: float = Field(ge=0, description="depth (grey) a rim-line valley needs below both its sides")
    angular_smooth_sigma_rays: float = Field(ge=0, le=5, description="Gaussian sigma across neighbouring rays (0 = off)")
    # -- refinement ---------------------------------------------------------------------------
    refine_rays: int = Field(ge=32, le=4096, description="rays sampled at full resolution")
    refine_iterations: int = Field(ge=1, le=10, description="most ray sampling + fit rounds around the updated model")
    refine_converge_px: float = Field(gt=0, description="stop refining when centre and axes move less than this (px)")
    refine_step_px: float = Field(gt=0, le=2, description="radial sample spacing, full-res pixels")
    refine_window_frac: float = Field(gt=0, le=0.5, description="first-round window, +- fraction of the coarse radius")
    refine_window_min_px: float = Field(gt=0, description="lower bound of every refinement window, full-res pixels")
    refine_window_rms_factor: float = Field(gt=0, description="later windows: +- (this * fit rms + refine_window_min_px)")
    ransac_iterations: int = Field(ge=10, le=5000, description="hypotheses per RANSAC fit (bounded work)")
    ransac_seed: int = Field(ge=0, description="seed of the RANSAC sampler (results are deterministic)")
    inlier_tol_px: float = Field(gt=0, description="edge points within this distance of the model are inliers, full-res px")
    inlier_tol_max_px: float = Field(gt=0, description="upper bound of the noise-adaptive inlier tolerance, px")
    inlier_tol_max_frac: float = Field(ge=0, le=0.2, description="... or this fraction of the radius, whichever is larger")
    inlier_tol_frac: float = Field(ge=0, le=0.1, description="... or within this fraction of the radius, whichever is larger")
    ellipse_axis_ratio_tol: float = Field(
        ge=0, le=0.5, description="an ellipse whose axis ratio is below 1 + this is reported as a circle"
    )
    ellipse_f_min: float = Field(gt=0, description="F statistic the ellipse must reach over the circle to be chosen")
    ellipse_min_coverage: float = Field(gt=0, le=1, description="share of the boundary angle covered by inliers needed to fit an ellipse")
    # -- acceptance / quality -------------------------------------------------------------
    min_valid_ray_fraction: float = Field(gt=0, le=1, description="share of rays that must be inside the usable frame")
    min_edge_support: float = Field(gt=0, le=1, description="share of valid rays that must be fit inliers")
    min_edge_points: int = Field(ge=5, description="fewest inlier edge points accepted")
    quality_rms_scale_px: float = Field(gt=0, description="fit rms (px) at which the quality factor halves")
    min_quality: float = Field(ge=0, le=1, description="fits of lower quality are rejected")
    polarity_inner_frac: tuple[float, float] = Field(description="glass ring (fractions of the radius) for the glass/ferrule polarity")
    polarity_outer_frac: tuple[float, float] = Field(description="ferrule ring (fractions of the radius), beyond the adhesive ring")
    # -- core -------------------------------------------------------------------------------
    core_enabled: bool = Field(description="search the core boundary")
    core_angles: int = Field(ge=8, le=1440, description="angles of the radial profile median")
    core_step_px: float = Field(gt=0, le=2, description="radial sample spacing of the core profile")
    core_smooth_sigma_px: float = Field(gt=0, le=10, description="Gaussian sigma of the median profile")
    core_window_frac: float = Field(gt=0, le=1, description="with a nominal core ratio: search +- this fraction of the nominal core radius")
    core_center_exclude_frac: float = Field(
        ge=0, lt=1, description="graded index: ignore radii below this fraction of the nominal core radius (centre dot)"
    )
    core_min_radius_px: float = Field(gt=0, description="smallest core radius searched, px")
    core_rim_exclude_px: float = Field(ge=0, description="ignore this band (px) inside the cladding boundary (dark rim line)")
    core_rim_exclude_frac: float = Field(ge=0, lt=0.5, description="... or this fraction of the cladding radius, whichever is larger")
    core_min_snr: float = Field(gt=0, description="core step in units of the profile-derivative noise")
    core_min_contrast_gray: float = Field(ge=0, description="smallest core step, grey levels")

    @model_validator(mode="after")
    def _consistent(self):
        if self.canny_low_snr >= self.canny_high_snr:
            raise ValueError("canny_low_snr must be smaller than canny_high_snr")
        return self


# ----------------------------------------------------------------------------------------
# small geometry helpers
# ----------------------------------------------------------------------------------------


def _ellipse_radius(theta: np.ndarray, a: float, b: float, phi_rad: float) -> np.ndarray:
    """Distance from the centre to an ellipse boundary along directions ``theta``."""
    t = theta - phi_rad
    return (a * b) / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)


def _robust_sigma_diff(img: np.ndarray) -> float:
    """Pixel noise std from the median absolute horizontal difference (robust to edges)."""
    rows = max(1, img.shape[0] // _SIGMA_ROWS)  # a bounded set of spread-out rows
    d = np.abs(np.diff(img[::rows].astype(np.float32), axis=1)).ravel()
    kq = d.size // 2
    return float(np.partition(d, kq)[kq]) * _MAD_TO_SIGMA / math.sqrt(2.0)


def _grad_last(a: np.ndarray, step: float) -> np.ndarray:
    """Derivative along the last axis (central differences, one-sided at the ends), like np.gradient."""
    out = np.empty(a.shape, np.float64 if a.dtype == np.float64 else np.float32)
    if a.shape[-1] < 2:
        out[...] = 0.0
        return out
    inv = 1.0 / step
    out[..., 1:-1] = (a[..., 2:] - a[..., :-2]) * (0.5 * inv)
    out[..., 0] = (a[..., 1] - a[..., 0]) * inv
    out[..., -1] = (a[..., -1] - a[..., -2]) * inv
    return out


def _rays_inside(mx: np.ndarray, my: np.ndarray, rect) -> np.ndarray:
    """Per row: are all samples of the ray (a straight segment, one row) inside the usable rect?

    The rect is convex, so checking the first and last sample of each segment suffices.
    """
    y0, y1, x0, x1 = rect
    ex, ey = mx[:, [0, -1]], my[:, [0, -1]]
    return ((ex >= x0) & (ex <= x1 - 1) & (ey >= y0) & (ey <= y1 - 1)).all(axis=1)


def _median_axis0(a: np.ndarray) -> np.ndarray:
    """Median over the first axis (rows) of a 2-D array, via one partition of the transposed copy."""
    n = a.shape[0]
    t = np.ascontiguousarray(a.T)
    if n % 2:
        return np.partition(t, n // 2, axis=1)[:, n // 2]
    part = np.partition(t, (n // 2 - 1, n // 2), axis=1)
    return 0.5 * (part[:, n // 2 - 1] + part[:, n // 2])


def _usable_rect(small: np.ndarray, level: float) -> tuple[int, int, int, int] | None:
    """Bounding rows/columns (y0, y1, x0, x1; inclusive-exclusive) outside analog black borders."""
    bright = small > level
    rows = bright.mean(axis=1) > 0.05
    cols = bright.mean(axis=0) > 0.05
    if not rows.any() or not cols.any():
        return None
    ry = np.flatnonzero(rows)
    cx = np.flatnonzero(cols)
    return int(ry[0]), int(ry[-1]) + 1, int(cx[0]), int(cx[-1]) + 1


def _remap_crop(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` at (mx, my) as float32 (coordinates clamped to the frame).

    Gathers the four neighbours of every sample straight from the (uint8 or float) image:
    the work is proportional to the number of samples, never to the area the rays span.
    """
    h, w = img.shape
    flat = img.reshape(-1)
    x = np.minimum(np.maximum(mx.astype(np.float32, copy=False), np.float32(0)), np.float32(w - 1))
    y = np.minimum(np.maximum(my.astype(np.float32, copy=False), np.float32(0)), np.float32(h - 1))
    xf = np.minimum(np.floor(x), np.float32(max(w - 2, 0)))
    yf = np.minimum(np.floor(y), np.float32(max(h - 2, 0)))
    fx = x - xf
    fy = y - yf
    i = yf.astype(np.int32) * np.int32(w) + xf.astype(np.int32)
    dx = 1 if w > 1 else 0
    dy = w if h > 1 else 0
    p00 = flat[i].astype(np.float32)
    p01 = flat[i + dx].astype(np.float32)
    p10 = flat[i + dy].astype(np.float32)
    p11 = flat[i + (dy + dx)].astype(np.float32)
    top = p00 + fx * (p01 - p00)
    bot = p10 + fx * (p11 - p10)
    return top + fy * (bot - top)


def _downscale_area(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Copy of ``img`` decimated by the integer factor k = ceil(long side / ``max_side``) (INTER_AREA).

    Same convention as :func:`_downscale`: small x corresponds to full-resolution ``(x + 0.5) * k - 0.5``.
    """
    h, w = img.shape
    k = max(1, math.ceil(max(h, w) / max_side))
    if k == 1:
        return img.astype(np.float32), 1.0, 1.0
    hk, wk = h // k * k, w // k * k
    small = cv2.resize(img[:hk, :wk], (wk // k, hk // k), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32), float(k), float(k)


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Float32 copy of ``img`` with its long side at most ``max_side`` px, and its x / y scale factors.

    Exact 2x2 area averages while the long side stays at least ``max_side`` (the first one
    in the image's own type: OpenCV's fast path, a single pass over the frame; the others in
    float32, so no further rounding), then one step (factor below 2) to the cap: bilinear after a
    halving, INTER_AREA when the frame was not halved.
    A sample at small x corresponds to full-resolution ``(x + 0.5) * s_x - 0.5`` (likewise y).
    """
    cur = img
    n = 1
    while max(cur.shape) >= 2 * max_side and min(cur.shape) >= 8:
        hh, ww = cur.shape[0] // 2 * 2, cur.shape[1] // 2 * 2
        cur = cv2.resize(cur[:hh, :ww], (ww // 2, hh // 2), interpolation=cv2.INTER_AREA)
        if n == 1:
            cur = cur.astype(np.float32, copy=False)
        n *= 2
    cur = cur.astype(np.float32, copy=False)
    hc, wc = cur.shape
    if max(hc, wc) > max_side:
        g = max_side / max(hc, wc)
        wo, ho = max(1, round(wc * g)), max(1, round(hc * g))
        # after a halving the pixels are already averaged: a bilinear step suffices (cheap);
        # without one, area averaging keeps the noise down (small frames: cheap anyway)
        cur = cv2.resize(cur, (wo, ho), interpolation=cv2.INTER_LINEAR if n > 1 else cv2.INTER_AREA)
        return cur, n * wc / wo, n * hc / ho
    return cur, float(n), float(n)


class _Model:
    """Circle or ellipse hypothesis in some pixel frame."""

    __slots__ = ("cx", "cy", "a", "b", "phi")

    def __init__(self, cx, cy, a, b=None, phi=0.0):
        self.cx, self.cy, self.a = float(cx), float(cy), float(a)
        self.b = float(a if b is None else b)
        self.phi = float(phi)

    def scaled(self, f: float) -> "_Model":
        return _Model(self.cx * f, self.cy * f, self.a * f, self.b * f, self.phi)

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        if abs(self.a - self.b) < 1e-9:
            return np.full(theta.shape, self.a)
        return _ellipse_radius(theta, self.a, self.b, self.phi)


# ----------------------------------------------------------------------------------------
# ray sampling and edge detection
# ----------------------------------------------------------------------------------------


def _ray_edges(img, model: _Model, n_rays, half_window, step, smooth_sigma_px, ang_sigma, rect, polarity=None, *,
               edge_min_snr=4.0, multi_rel=0.5, rim_search_px=0.0, rim_min_depth=0.0, rim_smooth_sigma_px=0.7):
    """Sample rays around ``model`` and locate the strongest boundary step on each.

    Returns a dict with per-ray ``pos`` (distance from the model centre, px), ``amp`` (signed
    derivative peak, positive for the chosen polarity), ``valid`` (ray entirely in the usable
    frame), ``snr`` (amp / derivative noise), ``theta``, the chosen ``polarity`` (+1 bright glass)
    and the median plateau step ``step_gray``.
    """
    theta = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    r0 = model.radius_at(theta)
    n_s = max(5, int(round(2 * half_window / step)) + 1)
    offs = np.linspace(-half_window, half_window, n_s)
    r = np.maximum(r0[:, None] + offs[None, :], 0.0)
    ct, st = np.cos(theta)[:, None], np.sin(theta)[:, None]
    mx = (model.cx + r * ct).astype(np.float32)
    my = (model.cy + r * st).astype(np.float32)
    prof = _remap_crop(img, mx, my)
    valid = _rays_inside(mx, my, rect)
    sig = smooth_sigma_px / step
    k = int(2 * math.ceil(3 * sig) + 1)
    sm = cv2.GaussianBlur(prof, (k, 1), sigmaX=sig, sigmaY=0, borderType=cv2.BORDER_REPLICATE)
    # derivative noise from rays at least ~2 px apart (data-driven: includes JPEG, texture);
    # neighbouring rays closer than that sample the same pixels and would hide the noise
    der0 = _grad_last(sm, step)
    spacing = 2 * np.pi * max(float(np.min(r0)), 1.0) / n_rays
    lag = min(max(1, int(math.ceil(2.0 / spacing))), max(1, n_rays // 4))
    dd = np.abs(der0[lag:] - der0[:-lag]).ravel()[::_NOISE_SUBSAMPLE]  # a bounded, spread-out subset
    kq = dd.size // 2
    noise = float(np.partition(dd, kq)[kq]) * _MAD_TO_SIGMA / math.sqrt(2.0) + 1e-6
    if ang_sigma > 0:
        # Gaussian averaging over neighbouring rays reduces the noise std by sqrt(1 / (2 sqrt(pi) s))
        # when the rays are independent (s in rays, independent when spaced >= ~2 px)
        s_eff = ang_sigma * min(1.0, spacing / 2.0)
        noise *= math.sqrt(min(1.0, 1.0 / (2 * math.sqrt(math.pi) * max(s_eff, 1e-6))))
        ka = int(2 * math.ceil(3 * ang_sigma) + 1)
        pad = ka // 2
        wrapped = np.concatenate([sm[-pad:], sm, sm[:pad]], axis=0) if pad else sm
        sm = cv2.GaussianBlur(wrapped, (1, ka), sigmaX=0, sigmaY=ang_sigma, borderType=cv2.BORDER_REPLICATE)
        sm = sm[pad : pad + n_rays] if pad else sm
    der = _grad_last(sm, step) if ang_sigma > 0 else der0
    q = max(1, n_s // 4)
    if polarity is None:
        inner = sm[:, :q].mean(axis=1) - sm[:, -q:].mean(axis=1)
        use = valid if valid.any() else np.ones_like(valid)
        polarity = 1 if np.median(inner[use]) >= 0 else -1
    # both polarities: the boundary complex (glass edge, dark rim line, adhesive ring, bore edge)
    # has steps of either sign; the first significant one seen from the glass is the boundary
    signed = np.abs(der)
    lo = int(math.ceil(2 * sig)) if n_s > 4 * sig + 3 else 1
    core = signed[:, lo : n_s - lo]
    rows = np.arange(n_rays)
    rowmax = core.max(axis=1)
    # candidate edges: local maxima above the noise and above a share of the ray's strongest step;
    # the innermost one is the glass edge (an adhesive ring / bore edge lies outside it)
    thr = np.maximum(edge_min_snr * noise, multi_rel * rowmax)
    lm = np.zeros(core.shape, bool)
    lm[:, 1:-1] = (core[:, 1:-1] >= core[:, :-2]) & (core[:, 1:-1] > core[:, 2:]) & (core[:, 1:-1] >= thr[:, None])
    # an inner peak counts only as a distinct edge: |d| must dip below half of it before the strongest peak
    m_idx = np.argmax(core, axis=1)
    cols = np.arange(core.shape[1])[None, :]
    masked = np.where(cols <= m_idx[:, None], core, np.inf)
    run_min = np.minimum.accumulate(masked[:, ::-1], axis=1)[:, ::-1]  # min over [j, m]
    between = np.concatenate([run_min[:, 1:], np.full((n_rays, 1), np.inf)], axis=1)  # min over [j+1, m]
    distinct = (between < 0.5 * core) | (cols == m_idx[:, None])
    lm &= distinct
    has = lm.any(axis=1)
    idx = np.where(has, np.argmax(lm, axis=1), np.argmax(core, axis=1)) + lo
    amp = signed[rows, idx]
    i_m = np.clip(idx - 1, 0, n_s - 1)
    i_p = np.clip(idx + 1, 0, n_s - 1)
    ym, y0v, yp = signed[rows, i_m], amp, signed[rows, i_p]
    den = ym - 2 * y0v + yp
    safe = np.where(np.abs(den) > 1e-12, den, 1.0)
    frac = np.clip(np.where(np.abs(den) > 1e-12, 0.5 * (ym - yp) / safe, 0.0), -0.5, 0.5)
    loc = idx + frac
    # a thin dark rim line adjoining the step marks the boundary itself: move to its minimum
    if rim_search_px > 0:
        kr = max(2, int(round(rim_search_px / step)))
        offs_k = np.arange(-kr, kr + 1)
        win = np.clip(idx[:, None] + offs_k[None, :], 0, n_s - 1)
        sr = rim_smooth_sigma_px / step
        kk = int(2 * math.ceil(3 * sr) + 1)
        sm_r = cv2.GaussianBlur(prof, (kk, 1), sigmaX=sr, sigmaY=0, borderType=cv2.BORDER_REPLICATE)
        vals = np.take_along_axis(sm_r, win, 1)
        jm = np.argmin(vals, axis=1)
        # re-centre the window on the valley so both plateaus are measured outside it
        win = np.clip(win[rows, jm][:, None] + offs_k[None, :], 0, n_s - 1)
        vals = np.take_along_axis(sm_r, win, 1)
        jm = np.argmin(vals, axis=1)
        vmin = vals[rows, jm]
        h_in, h_out = vals[:, 0], vals[:, -1]
        is_dip = (jm > 0) & (jm < 2 * kr) & (vmin < np.minimum(h_in, h_out) - rim_min_depth)
        jc = np.clip(jm, 1, 2 * kr - 1)
        vm_, v0_, vp_ = vals[rows, jc - 1], vals[rows, jc], vals[rows, jc + 1]
        d2 = vm_ - 2 * v0_ + vp_
        ok2 = d2 > 1e-9
        safe2 = np.where(ok2, d2, 1.0)
        f2 = np.clip(np.where(ok2, 0.5 * (vm_ - vp_) / safe2, 0.0), -0.5, 0.5)
        # the adjoining step pulls the valley minimum towards its low side by
        # dH * s / (D * sqrt(2 pi)) (Gaussian valley of depth D and width s on a step dH); undo it
        depth = np.maximum(0.5 * (h_in + h_out) - vmin, 1e-6)
        curv = np.maximum(d2, 1e-9) / (step * step)
        s_w = np.sqrt(depth / curv)
        shift = np.clip((h_out - h_in) * s_w / (depth * math.sqrt(2 * math.pi)), -0.5 * rim_search_px, 0.5 * rim_search_px)
        dip_loc = win[rows, jc] + f2 + np.where(ok2, shift, 0.0) / step
        loc = np.where(is_dip, dip_loc, loc)
    pos = r0 + offs[0] + loc * (offs[1] - offs[0])
    # plateau step in grey levels around each edge (for the absolute contrast check)
    w = max(1, int(round(2.5 * sig)))
    ii = np.clip(idx[:, None] + np.arange(-3 * w, -w)[None, :], 0, n_s - 1)
    oo = np.clip(idx[:, None] + np.arange(w + 1, 3 * w + 1)[None, :], 0, n_s - 1)
    step_gray = polarity * (np.take_along_axis(prof, ii, 1).mean(1) - np.take_along_axis(prof, oo, 1).mean(1))
    return {
        "theta": theta,
        "pos": pos,
        "amp": amp,
        "snr": amp / noise,
        "valid": valid,
        "polarity": polarity,
        "step_gray": step_gray,
        "noise": noise,
    }


def _score_candidate(small, model: _Model, rect, params: LocalizationParams) -> tuple[float, float]:
    """Edge support of a coarse candidate on the downscaled image.

    Returns the share of valid rays with a significant step near the boundary, and the ranking
    score: that share times the median step contrast (grey levels) of the agreeing rays, so a
    real glass/ferrule boundary outranks circles fitted to ferrule texture (times the square root
    of the radius: the fiber is the longest high-contrast boundary, dirt blobs are small).
    """
    half = max(params.score_window_frac * max(model.a, 4.0), 3.0)
    e = _ray_edges(
        small, model, params.score_rays, half, 0.5, max(0.75, params.radial_smooth_sigma_px * 0.5),
        0.0, rect, edge_min_snr=params.edge_min_snr, multi_rel=params.edge_multi_rel,
    )
    valid = e["valid"]
    n_valid = int(valid.sum())
    if n_valid < params.min_valid_ray_fraction * params.score_rays:
        return 0.0, 0.0
    tol = max(params.score_tol_frac * model.a, params.score_tol_min_px)
    expected = model.radius_at(e["theta"])
    ok = valid & (e["snr"] >= params.edge_min_snr) & (np.abs(e["pos"] - expected) <= tol)
    support = float(ok.sum()) / n_valid
    contrast = float(np.median(np.abs(e["step_gray"][ok]))) if ok.any() else 0.0
    return support, support * contrast * math.sqrt(max(model.a, 1.0))


# ----------------------------------------------------------------------------------------
# robust fits (vectorised RANSAC + least squares)
# ----------------------------------------------------------------------------------------


def _fit_circle_ls(pts: np.ndarray, iters: int = 8) -> tuple[float, float, float]:
    """Geometric least-squares circle (Kasa start + Gauss-Newton)."""
    m = pts.mean(axis=0)
    x, y = pts[:, 0] - m[0], pts[:, 1] - m[1]  # centred: well-conditioned normal equations
    n = float(len(x))
    z = x * x + y * y
    sxx, sxy, syy, sx, sy = float(x @ x), float(x @ y), float(y @ y), float(x.sum()), float(y.sum())
    A = np.array([[sxx, sxy, sx], [sxy, syy, sy], [sx, sy, n]])
    bvec = np.array([float(x @ z), float(y @ z), float(z.sum())])
    try:
        sol = np.linalg.solve(A, bvec)
    except np.linalg.LinAlgError:
        M = np.stack([x, y, np.ones_like(x)], axis=1)
        sol, *_ = np.linalg.lstsq(M, z, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    r = math.sqrt(max(sol[2] + cx * cx + cy * cy, 1e-12))
    for _ in range(iters):
        dx, dy = x - cx, y - cy
        d = np.sqrt(dx * dx + dy * dy) + 1e-12
        u, v = dx / d, dy / d
        res = d - r
        # normal equations of J = [-u, -v, -1] (3 x 3, accumulated directly)
        JtJ = np.array([[float(u @ u), float(u @ v), float(u.sum())],
                        [float(u @ v), float(v @ v), float(v.sum())],
                        [float(u.sum()), float(v.sum()), n]])
        Jtr = np.array([float(u @ res), float(v @ res), float(res.sum())])
        try:
            delta = np.linalg.solve(JtJ, Jtr)
        except np.linalg.LinAlgError:
            break
        cx, cy, r = cx + delta[0], cy + delta[1], r + delta[2]
        if np.abs(delta).max() < _GN_CONVERGE_PX:
            break
    cx, cy = cx + m[0], cy + m[1]
    return float(cx), float(cy), float(abs(r))


def _ransac_circle(pts, tol, iters, rng):
    n = len(pts)
    idx = rng.integers(0, n, size=(iters, 3))
    ux, uy, ur = circumcircles(pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]])
    ok = np.isfinite(ur)
    if not ok.any():
        return None
    ux, uy, ur = ux[ok], uy[ok], ur[ok]
    sub = pts[:: max(1, n // _RANSAC_SCORE_POINTS)]  # hypotheses are ranked on a bounded subset
    res = np.abs(np.hypot(sub[None, :, 0] - ux[:, None], sub[None, :, 1] - uy[:, None]) - ur[:, None])
    counts = (res <= tol).sum(axis=1)
    best = int(np.argmax(counts))
    inl = np.abs(np.hypot(pts[:, 0] - ux[best], pts[:, 1] - uy[best]) - ur[best]) <= tol
    for _ in range(3):
        if inl.sum() < 3:
            return None
        cx, cy, r = _fit_circle_ls(pts[inl])
        new = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r) <= tol
        if np.array_equal(new, inl):
            break
        inl = new
    return (cx, cy, r), inl


def _conic_to_ellipse(c, shift):
    """Conic A x^2 + B xy + C y^2 + D x + E y + F = 0 -> (cx, cy, a, b, phi) or None."""
    A, B, C, D, E, F = c
    Q = np.array([[A, B / 2], [B / 2, C]])
    det = A * C - B * B / 4
    if det <= 0:
        return None
    x0, y0 = np.linalg.solve(Q, [-D / 2, -E / 2])
    Fc = F + (D * x0 + E * y0) / 2
    lam, vec = np.linalg.eigh(Q)  # ascending: lam[0] -> major axis
    if Fc == 0 or (-Fc / lam[0]) <= 0 or (-Fc / lam[1]) <= 0:
        return None
    a = math.sqrt(-Fc / lam[0])
    b = math.sqrt(-Fc / lam[1])
    phi = math.atan2(vec[1, 0], vec[0, 0])
    return float(x0 + shift[0]), float(y0 + shift[1]), a, b, phi


def _fit_conic(pts):
    """Linear conic fit with F = -1 on centred points (the origin lies inside the ellipse)."""
    x, y = pts[:, 0], pts[:, 1]
    M = np.stack([x * x, x * y, y * y, x, y], axis=1)
    sol, *_ = np.linalg.lstsq(M, np.ones_like(x), rcond=None)
    return np.concatenate([sol, [-1.0]])


def _ellipse_residual(pts, el):
    """Approximate geometric distance of points to an ellipse (radial, along the ray from its centre)."""
    cx, cy, a, b, phi = el
    d = pts - np.array([cx, cy])
    th = np.arctan2(d[:, 1], d[:, 0])
    return np.hypot(d[:, 0], d[:, 1]) - _ellipse_radius(th, a, b, phi)


def _robust_ellipse(pts, init_inliers, tol, max_ratio):
    """Ellipse fit on an inlier set, iterated with re-selection of inliers (trimmed LS)."""
    inl = init_inliers.copy()
    el = None
    for _ in range(4):
        if inl.sum() < 6:
            return None
        sel = pts[inl]
        shift = sel.mean(axis=0)
        c = _fit_conic(sel - shift)
        el = _conic_to_ellipse(c, shift)
        if el is None or el[2] / max(el[3], 1e-9) > max_ratio:
            return None
        new = np.abs(_ellipse_residual(pts, el)) <= tol
        if np.array_equal(new, inl):
            break
        inl = new
    return el, inl


def _ransac_ellipse(pts, tol, iters, rng, max_ratio):
    """Vectorised RANSAC over 5-point conics (Sampson distance), then trimmed least squares."""
    n = len(pts)
    if n < 8:
        return None
    shift = pts.mean(axis=0)
    q = pts - shift
    idx = rng.integers(0, n, size=(iters, 5))
    x, y = q[idx, 0], q[idx, 1]
    M = np.stack([x * x, x * y, y * y, x, y], axis=2)  # (K, 5, 5)
    det = np.linalg.det(M)
    good = np.abs(det) > 1e-12 * np.abs(M).max(axis=(1, 2)) ** 5
    if not good.any():
        return None
    sol = np.linalg.solve(M[good], np.ones((int(good.sum()), 5, 1)))[..., 0]  # (K', 5)
    A, B, C, D, E = (sol[:, i : i + 1] for i in range(5))
    ell = (B * B - 4 * A * C) < 0
    sub = q[:: max(1, n // _RANSAC_SCORE_POINTS)]  # hypotheses are ranked on a bounded subset
    X, Y = sub[None, :, 0], sub[None, :, 1]
    Q = A * X * X + B * X * Y + C * Y * Y + D * X + E * Y - 1.0
    gx = 2 * A * X + B * Y + D
    gy = B * X + 2 * C * Y + E
    dist = np.abs(Q) / np.sqrt(gx * gx + gy * gy + 1e-12)
    counts = np.where(ell[:, 0], (dist <= tol).sum(axis=1), -1)
    best = int(np.argmax(counts))
    if counts[best] < 6:
        return None
    a_, b_, c_, d_, e_ = sol[best]
    X, Y = q[:, 0], q[:, 1]
    Q = a_ * X * X + b_ * X * Y + c_ * Y * Y + d_ * X + e_ * Y - 1.0
    gx = 2 * a_ * X + b_ * Y + d_
    gy = b_ * X + 2 * c_ * Y + e_
    return _robust_ellipse(pts, np.abs(Q) / np.sqrt(gx * gx + gy * gy + 1e-12) <= tol, tol, max_ratio)


def _angular_coverage(theta: np.ndarray, n_bins: int = 36) -> float:
    if len(theta) == 0:
        return 0.0
    bins = np.floor((np.mod(theta, 2 * np.pi) / (2 * np.pi)) * n_bins).astype(np.intp)
    return float(np.count_nonzero(np.bincount(np.clip(bins, 0, n_bins - 1), minlength=n_bins))) / n_bins


# ----------------------------------------------------------------------------------------
# coarse candidates
# ----------------------------------------------------------------------------------------


def _hough_candidates(small8: np.ndarray, f: float, params: LocalizationParams, noise_small: float) -> list:
    """HOUGH_GRADIENT_ALT on a copy capped at ``hough_max_side_px`` (bounded radius range and count)."""
    h, w = small8.shape
    g = min(1.0, params.hough_max_side_px / max(h, w))
    img = cv2.resize(small8, (max(1, round(w * g)), max(1, round(h * g))), interpolation=cv2.INTER_AREA) if g < 1 else small8
    r_min = max(params.min_cladding_radius_px * f * g, 3.0)
    r_max = max(params.max_cladding_radius_frac * max(h, w) * g, r_min + 2)
    scharr_noise = noise_small * math.sqrt(2 * (9 + 100 + 9))
    p1 = max(params.hough_param1_min, params.hough_edge_snr * scharr_noise)
    circles = cv2.HoughCircles(
        img, cv2.HOUGH_GRADIENT_ALT, params.hough_dp, max(r_min, 2.0),
        param1=p1, param2=params.hough_param2, minRadius=int(r_min), maxRadius=int(math.ceil(r_max)),
    )
    if circles is None:
        return []
    return [_Model(cx / g, cy / g, r / g) for cx, cy, r in circles.reshape(-1, 3)[: params.hough_max_candidates]]


class _Coarse:
    """Candidate sources of the coarse stage, cheapest first (each bounded in work)."""

    def __init__(self, small: np.ndarray, rect, f: float, params: LocalizationParams, noise_small: float):
        self.params = params
        self.f = f
        self.noise_small = noise_small
        h, w = small.shape
        self.r_min = max(params.min_cladding_radius_px * f, 3.0)
        self.r_max = max(params.max_cladding_radius_frac * max(h, w), self.r_min + 2)
        self.small8 = np.clip(small, 0, 255).astype(np.uint8)
        y0, y1, x0, x1 = rect
        self.rect = rect
        # the border of the usable frame is not a fiber edge
        self.mask = np.zeros(self.small8.shape, np.uint8)
        self.mask[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 1
        gx = cv2.Sobel(self.small8, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(self.small8, cv2.CV_32F, 0, 1, ksize=3)
        mag = (cv2.magnitude(gx, gy) * self.mask)[::2, ::2].ravel()
        self.mag = mag
        self.density = 0.0

    def _quantile(self, q: float) -> float:
        k = int(np.clip(q, 0, 1) * (self.mag.size - 1))
        return float(np.partition(self.mag, k)[k])

    def _canny(self, hi: float) -> np.ndarray:
        p = self.params
        lo = max(hi * p.canny_low_snr / p.canny_high_snr, 0.5)
        edges = cv2.Canny(self.small8, lo, max(hi, 1.0), L2gradient=True) * self.mask
        self.density = max(self.density, float(np.count_nonzero(edges)) / edges.size)
        return edges

    def _fit_contours(self, contours) -> list:
        """fitEllipse on the contours that are well explained by an ellipse, largest first."""
        p = self.params
        contours = [c for c in contours if len(c) >= p.contour_min_points]
        # largest extent first: a fiber boundary spans a large box, texture squiggles do not
        ext = [sum(cv2.boundingRect(c)[2:]) for c in contours]
        contours = [c for _, c in sorted(zip(ext, contours), key=lambda t: -t[0])]
        out = []
        for c in contours[: p.contour_max_fits]:
            (cx, cy), (d1, d2), ang = cv2.fitEllipse(c)
            a, b = max(d1, d2) / 2, min(d1, d2) / 2
            if not (self.r_min <= a <= self.r_max * 1.5) or b <= 0 or a / b > p.max_axis_ratio:
                continue
            phi = math.radians(ang if d1 >= d2 else ang + 90.0)
            m = _Model(cx, cy, a, b, phi)
            pts = c.reshape(-1, 2).astype(np.float64)
            res = float(np.median(np.abs(_ellipse_residual(pts, (m.cx, m.cy, m.a, m.b, m.phi)))))
            if res <= max(p.contour_fit_tol_px, p.contour_fit_tol_frac * a):
                out.append((a, m))
                if len(out) >= 2 * p.contour_max_candidates:
                    break  # contours come largest first: enough well-fitting ones to rank
        out.sort(key=lambda t: -t[0])
        return [m for _, m in out[: p.contour_max_candidates]]

    def stages(self):
        """Yield (name, candidates) per source; the caller stops once a candidate is good enough.

        The last source (Hough, the most expensive) is yielded as a callable returning the candidates.
        """
        p = self.params
        sobel_noise = self.noise_small * math.sqrt(12.0)
        # 1. strong edges: relative to the strongest structures of the frame (the fiber edge, usually)
        n_top = max(1, int(p.canny_strong_top_px / 2))  # the magnitude map is subsampled 2x per axis
        top = float(np.partition(self.mag, self.mag.size - n_top)[self.mag.size - n_top]) if self.mag.size > n_top else 0.0
        hi_strong = max(p.canny_high_snr * sobel_noise, p.canny_strong_frac * top)
        edges = self._canny(hi_strong)
        cs, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        first = self._fit_contours(cs)
        if p.hough_mode == "always":
            first += self._hough()
        yield "contours_strong", first
        # 2. edges down to the noise / texture level (low-contrast fibers)
        hi = max(p.canny_high_snr * sobel_noise, self._quantile(1 - p.canny_max_edge_frac))
        if hi < hi_strong:
            edges = self._canny(hi)
            cs, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            yield "contours_weak", self._fit_contours(cs)
        # 3. Otsu blobs of both polarities
        if p.threshold_contours:
            y0, y1, x0, x1 = self.rect
            thr, _ = cv2.threshold(self.small8[y0:y1, x0:x1], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            cs_all = []
            for mode in (cv2.THRESH_BINARY, cv2.THRESH_BINARY_INV):
                _, bw = cv2.threshold(self.small8, thr, 255, mode)
                bw = cv2.morphologyEx(bw * self.mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
                cs, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cs_all.extend(cs)
            yield "otsu", self._fit_contours(cs_all)
        # 4. Hough (bounded: capped copy, radius range and count; skipped on edge-saturated frames)
        if p.hough_mode == "fallback" and self.density <= p.max_edge_density:
            yield "hough", self._hough  # a callable: the caller runs it only when still needed

    def _hough(self) -> list:
        return _hough_candidates(self.small8, self.f, self.params, self.noise_small)


def _dedupe(cands: list, cap: int) -> list:
    """Drop non-finite candidates and near-duplicates (same centre and radius within 3 %); keep at most ``cap``."""
    uniq: list[_Model] = []
    for c in cands:
        if not all(np.isfinite([c.cx, c.cy, c.a, c.b])):
            continue
        if any(abs(c.cx - u.cx) < 0.03 * u.a + 1 and abs(c.cy - u.cy) < 0.03 * u.a + 1 and abs(c.a - u.a) < 0.03 * u.a + 1 for u in uniq):
            continue
        uniq.append(c)
        if len(uniq) >= cap:
            break
    return uniq


# ----------------------------------------------------------------------------------------
# refinement
# ----------------------------------------------------------------------------------------


def _refine(img, model: _Model, rect, params: LocalizationParams, rng):
    """Full-resolution refinement of one candidate. Returns a dict or None."""
    half = max(params.refine_window_frac * model.a, params.refine_window_min_px)
    polarity = None
    out = None
    first_half = half
    for it in range(params.refine_iterations):
        prev = model
        e = _ray_edges(
            img, model, params.refine_rays, half, params.refine_step_px, params.radial_smooth_sigma_px,
            params.angular_smooth_sigma_rays, rect, polarity, edge_min_snr=params.edge_min_snr,
            multi_rel=params.edge_multi_rel, rim_search_px=params.rim_search_px, rim_min_depth=params.rim_min_depth_gray,
            rim_smooth_sigma_px=params.rim_smooth_sigma_px,
        )
        polarity = e["polarity"]
        valid = e["valid"]
        n_valid = int(valid.sum())
        if n_valid < params.min_valid_ray_fraction * params.refine_rays:
            return None
        strong = valid & (e["snr"] >= params.edge_min_snr)
        if strong.sum() < params.min_edge_points:
            return None
        th = e["theta"][strong]
        pts = np.stack([model.cx + e["pos"][strong] * np.cos(th), model.cy + e["pos"][strong] * np.sin(th)], axis=1)
        tol = max(params.inlier_tol_px, params.inlier_tol_frac * model.a)
        if it == 0:
            rc = _ransac_circle(pts, tol, params.ransac_iterations, rng)
        else:  # the model is already close: trimmed least squares from its own inliers
            near = np.abs(_ellipse_residual(pts, (model.cx, model.cy, model.a, model.b, model.phi))) <= 3 * tol
            rc = ((_fit_circle_ls(pts[near])), near) if near.sum() >= 3 else None
        if rc is None:
            ccx, ccy, cr = model.cx, model.cy, math.sqrt(model.a * model.b)
        else:
            (ccx, ccy, cr), _ = rc
        circ = (ccx, ccy, cr, cr, 0.0)
        res_c = _ellipse_residual(pts, circ)
        # noise-adaptive tolerance: 3 robust sigma of the residuals, within [tol, inlier_tol_max]
        tol_max = max(params.inlier_tol_max_px, params.inlier_tol_max_frac * model.a)
        tol = float(np.clip(3.0 * _MAD_TO_SIGMA * np.median(np.abs(res_c)), tol, max(tol, tol_max)))
        cin = np.abs(res_c) <= tol
        if rc is not None and cin.sum() >= 3:
            ccx, ccy, cr = _fit_circle_ls(pts[cin])
            circ = (ccx, ccy, cr, cr, 0.0)
            res_c = _ellipse_residual(pts, circ)
            cin = np.abs(res_c) <= tol
        chosen, inl, kind = circ, cin, "circle"
        if _angular_coverage(th) >= params.ellipse_min_coverage:
            if it == 0:
                re = _ransac_ellipse(pts, tol, params.ransac_iterations, rng, params.max_axis_ratio)
            else:  # start from the current model's inliers (circle or ellipse)
                seed = np.abs(_ellipse_residual(pts, (model.cx, model.cy, model.a, model.b, model.phi))) <= 3 * tol
                re = _robust_ellipse(pts, seed, tol, params.max_axis_ratio)
            if re is not None:
                el, ein = re
                n_e = int(ein.sum())
                common = ein | cin
                rss_c = float(np.sum(np.minimum(res_c[common] ** 2, tol * tol)))
                rss_e = float(np.sum(np.minimum(_ellipse_residual(pts[common], el) ** 2, tol * tol)))
                dof = max(int(common.sum()) - 5, 1)
                fstat = ((rss_c - rss_e) / 2.0) / max(rss_e / dof, 1e-12)
                ratio = el[2] / el[3]
                if ratio > 1 + params.ellipse_axis_ratio_tol and fstat >= params.ellipse_f_min and n_e >= cin.sum():
                    chosen, inl, kind = el, ein, "ellipse"
        res = _ellipse_residual(pts[inl], chosen)
        rms = float(np.sqrt(np.mean(res**2))) if inl.any() else float("inf")
        model = _Model(*chosen)
        out = {
            "model": model,
            "kind": kind,
            "n_inliers": int(inl.sum()),
            "n_valid": n_valid,
            "n_rays": params.refine_rays,
            "support": float(inl.sum()) / n_valid,
            "rms_px": rms,
            "polarity": polarity,
            "step_gray": float(np.median(np.abs(e["step_gray"][strong][inl]))) if inl.any() else 0.0,
            "coverage": _angular_coverage(th[inl]),
            "radius_std_px": rms / math.sqrt(max(int(inl.sum()) - 3, 1)),
        }
        change = max(abs(model.cx - prev.cx), abs(model.cy - prev.cy), abs(model.a - prev.a), abs(model.b - prev.b))
        out["iterations"] = it + 1
        if out["support"] < 0.5 * params.min_edge_support:
            break  # hopeless candidate: stop spending work on it
        if it > 0 and change < params.refine_converge_px:
            break
        half = min(first_half, max(params.refine_window_rms_factor * rms + params.refine_window_min_px, 2.0 * change))
    return out


def _rim_valley(smr: np.ndarray, jm: int, kr: int, step: float, params: LocalizationParams,
                thin_only: bool = False):
    """The boundary at a dark valley of the median profile ``smr`` at index ``jm``, or None.

    A valley deeper than ``rim_min_depth_gray`` below both sides (``kr`` samples away) is a rim line
    when thin: its centre, corrected for the asymmetry of the step under it, is the boundary.  A wide
    valley is an adhesive ring whose inner flank (the glass edge) is the boundary; in between the two
    positions are blended.  ``thin_only`` accepts thin valleys only.  Returns ``(index, diagnostics)``.
    """
    b0, b1 = jm - kr, jm + kr
    if not (b0 >= 0 and b1 < len(smr) and 0 < jm < len(smr) - 1):
        return None
    h_in = float(smr[b0])
    h_out = float(smr[b1])
    vmin = float(smr[jm])
    local_min = smr[jm] <= smr[jm - 1] and smr[jm] <= smr[jm + 1]
    if not (local_min and vmin < min(h_in, h_out) - params.rim_min_depth_gray):
        return None
    # a thin line recovers to the glass level within a short distance; a wide valley is an
    # adhesive ring whose inner flank (the glass edge) is the boundary
    dr = np.abs(np.gradient(smr, step))
    kf = max(2, int(round(3 * params.rim_max_halfwidth_px / step)))
    f_in = max(jm - kf, 0) + int(np.argmax(dr[max(jm - kf, 0) : jm + 1]))
    half = 0.5 * (float(smr[jm]) + h_in)
    inner = smr[max(jm - kf, 0) : jm + 1][::-1]
    above = np.flatnonzero(inner >= half)
    halfwidth = (above[0] if above.size else kf) * step
    wgt = float(np.clip((halfwidth - params.rim_max_halfwidth_px) / params.rim_max_halfwidth_px, 0.0, 1.0))
    if thin_only and wgt > 0:
        return None
    d2 = float(smr[jm - 1] - 2 * smr[jm] + smr[jm + 1])
    f2 = float(np.clip(0.5 * (smr[jm - 1] - smr[jm + 1]) / d2, -0.5, 0.5)) if d2 > 1e-9 else 0.0
    depth = max(0.5 * (h_in + h_out) - vmin, 1e-6)
    s_w = math.sqrt(depth / max(d2 / (step * step), 1e-9))
    shift = (h_out - h_in) * s_w / (depth * math.sqrt(2 * math.pi))
    shift = float(np.clip(shift, -0.5 * params.rim_search_px, 0.5 * params.rim_search_px))
    loc_rim = jm + f2 + shift / step
    if 0 < f_in < len(dr) - 1:
        den = dr[f_in - 1] - 2 * dr[f_in] + dr[f_in + 1]
        loc_flank = f_in + (float(np.clip(0.5 * (dr[f_in - 1] - dr[f_in + 1]) / den, -0.5, 0.5)) if abs(den) > 1e-12 else 0.0)
    else:
        loc_flank = loc_rim
    # thin valley -> rim line centre; wide valley (adhesive ring) -> its inner flank, the
    # glass edge; in between blend linearly so the rule does not flip on noise
    loc = (1 - wgt) * loc_rim + wgt * loc_flank
    return loc, {
        "boundary_rule": "rim_line" if wgt == 0 else ("valley_inner_flank" if wgt == 1 else "rim_line_blend"),
        "rim_depth_gray": depth,
        "rim_halfwidth_px": halfwidth,
    }


def _boundary_offset(img, model: _Model, rect, params: LocalizationParams, ratio_hint):
    """Radial offset (px) of the glass boundary from ``model``, from the angular median profile.

    The boundary complex (glass edge, thin dark rim line, adhesive ring, bore edge) is the same
    all around the fiber, so its median radial profile is nearly noise-free.  The boundary is the
    innermost distinct significant step seen from the glass; when a thin dark valley (the rim
    line) adjoins it, the valley centre is the boundary.  Returns ``(offset_px, diagnostics)``.
    """
    R = model.a
    w_in = max(params.boundary_window_frac * R, params.refine_window_min_px)
    if ratio_hint is not None and 0 < ratio_hint < 1:
        w_in = min(w_in, max(0.5 * (1 - ratio_hint) * R, params.refine_window_min_px / 2))
    w_out = params.refine_window_min_px
    step = params.boundary_step_px
    n_rays = min(params.refine_rays, params.boundary_rays)
    theta = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    offs = np.arange(-w_in, w_out + 1e-9, step)
    r0 = model.radius_at(theta)
    r = np.maximum(r0[:, None] + offs[None, :], 0.0)
    mx = (model.cx + r * np.cos(theta)[:, None]).astype(np.float32)
    my = (model.cy + r * np.sin(theta)[:, None]).astype(np.float32)
    valid = _rays_inside(mx, my, rect)
    if valid.sum() < 8:
        return 0.0, {}
    prof = _remap_crop(img, mx, my)[valid]
    med = _median_axis0(prof).astype(np.float32)[None, :]
    sig = params.radial_smooth_sigma_px / step
    k = int(2 * math.ceil(3 * sig) + 1)
    sm = cv2.GaussianBlur(med, (k, 1), sigmaX=sig, borderType=cv2.BORDER_REPLICATE)[0]
    d = np.abs(_grad_last(sm, step))
    # noise of the median profile's derivative from the per-ray scatter
    pa = cv2.GaussianBlur(prof, (k, 1), sigmaX=sig, borderType=cv2.BORDER_REPLICATE)
    da = _grad_last(pa, step)
    # (the derivative of the smoothed median profile stands for the per-sample median derivative)
    scatter = float(np.mean(np.abs(da - _grad_last(sm, step)[None, :]))) * 1.2533
    noise = float(scatter) * 1.2533 / math.sqrt(prof.shape[0]) + 1e-6
    lo = int(math.ceil(2 * sig))
    hi = len(d) - lo
    if hi - lo < 3:
        return 0.0, {}
    seg = d[lo:hi]
    m = int(np.argmax(seg))
    thr = max(params.edge_min_snr * noise, params.boundary_min_rel * seg[m])
    j0 = m
    for j in range(1, m):  # a few hundred samples at most: the median profile is 1-D
        if (seg[j] >= thr and seg[j] >= seg[j - 1] and seg[j] > seg[j + 1]
                and seg[j + 1 : m + 1].min() < params.boundary_distinct_rel * seg[j]):
            j0 = j
            break
    j0 += lo
    if 0 < j0 < len(d) - 1:
        den = d[j0 - 1] - 2 * d[j0] + d[j0 + 1]
        loc = j0 + (float(np.clip(0.5 * (d[j0 - 1] - d[j0 + 1]) / den, -0.5, 0.5)) if abs(den) > 1e-12 else 0.0)
    else:
        loc = float(j0)
    diag = {"boundary_rule": "step"}
    if params.rim_search_px > 0:
        sr = params.rim_smooth_sigma_px / step
        kk = int(2 * math.ceil(3 * sr) + 1)
        smr = cv2.GaussianBlur(med, (kk, 1), sigmaX=sr, borderType=cv2.BORDER_REPLICATE)[0]
        kr = max(2, int(round(params.rim_search_px / step)))
        a0, a1 = max(j0 - kr, 0), min(j0 + kr + 1, len(smr))
        found = _rim_valley(smr, a0 + int(np.argmin(smr[a0:a1])), kr, step, params)
        if found is None and params.rim_search_in_frac > 0:
            # an epoxy ring between the glass and the ferrule: the strongest step is its outer edge and the
            # rim line (the glass edge) lies further in; the thin valley nearest the step is taken
            k_in = int(round(min(params.rim_search_in_frac * R, w_in) / step))
            inner = smr[max(j0 - k_in, 1) : max(j0 - kr, 1) + 1]
            js = max(j0 - k_in, 1) + np.flatnonzero((inner[1:-1] <= inner[:-2]) & (inner[1:-1] <= inner[2:])) + 1
            for jm in js[::-1]:  # nearest the step first
                found = _rim_valley(smr, int(jm), kr, step, params, thin_only=True)
                if found is not None:
                    found[1]["boundary_rule"] = "rim_line_inside_ring"
                    break
        if found is not None:
            loc, diag = found
    return float(offs[0] + loc * step), diag


def _glass_polarity(img, model: _Model, rect, params: LocalizationParams, fallback: int) -> tuple[int, float]:
    """(+1 when the glass is brighter than the ferrule, -1 when darker; |glass - ferrule| grey), from two rings."""
    th = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    f_in = np.linspace(params.polarity_inner_frac[0], params.polarity_inner_frac[1], 6)
    f_out = np.linspace(params.polarity_outer_frac[0], params.polarity_outer_frac[1], 6)
    y0, y1, x0, x1 = rect
    levels = []
    for fr in (f_in, f_out):
        r = model.radius_at(th)[:, None] * fr[None, :]
        mx = (model.cx + r * np.cos(th)[:, None]).astype(np.float32)
        my = (model.cy + r * np.sin(th)[:, None]).astype(np.float32)
        ok = (mx >= x0) & (mx <= x1 - 1) & (my >= y0) & (my <= y1 - 1)
        if ok.sum() < 8:
            return fallback, 0.0
        levels.append(float(np.median(_remap_crop(img, mx, my)[ok])))
    return (1 if levels[0] >= levels[1] else -1), abs(levels[0] - levels[1])


def _inside(inner: _Model, outer: _Model, tol_frac: float) -> bool:
    """True when ``inner`` lies within ``outer`` (semi-major axes as radii) and ``outer`` is clearly larger."""
    d = math.hypot(inner.cx - outer.cx, inner.cy - outer.cy)
    big_in, big_out = max(inner.a, inner.b), max(outer.a, outer.b)
    return big_out > (1.0 + tol_frac) * big_in and d + big_in <= (1.0 + tol_frac) * big_out


def _rank_enclosed_last(scored: list, params: LocalizationParams) -> list:
    """Sort coarse candidates by rank, but every candidate lying inside a larger well-supported candidate after it.

    A dark pit or a particle inside the glass can be a compact, perfect, high-contrast circle that
    outranks a cladding edge broken by chips and dirt; the boundary enclosing it with good edge
    support is the fiber (the same rule puts the core after the cladding).
    """
    outers = [c for _, sup, c in scored if sup >= params.enclosing_min_support]

    def enclosed(c: _Model) -> bool:
        return any(o is not c and _inside(c, o, params.enclosure_tol_frac) for o in outers)

    return sorted(scored, key=lambda t: (enclosed(t[2]), -t[0]))


def _enclosing_probe(small, model: _Model, rect, r_max: float, params: LocalizationParams, noise_small: float,
                     rng) -> _Model | None:
    """A circle enclosing ``model``, from the strongest outward step on rays cast from its centre, or None.

    Rays start at ``probe_inner_frac`` times the candidate's semi-major axis and end at twice ``r_max``
    (the largest cladding radius searched: a point inside a circle is at most a diameter from its
    boundary); samples outside the usable frame are ignored.  Work is bounded: ``score_rays`` rays
    on the downscaled copy and ``ransac_iterations`` hypotheses.  A compact pit or particle inside the glass sees the cladding edge on
    every in-frame ray, at a distance that varies with the angle exactly as a circle does: a RANSAC
    circle with enough inliers that encloses the candidate is returned (downscaled coordinates).
    """
    r_lo = params.probe_inner_frac * max(model.a, model.b)
    r_hi = _DIAMETER_PER_RADIUS * r_max
    if r_hi <= r_lo + 4:
        return None
    n = params.score_rays
    theta = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    radii = np.arange(r_lo, r_hi, 1.0)
    mx = (model.cx + radii[None, :] * np.cos(theta)[:, None]).astype(np.float32)
    my = (model.cy + radii[None, :] * np.sin(theta)[:, None]).astype(np.float32)
    y0, y1, x0, x1 = rect
    inside = (mx >= x0 + 1) & (mx <= x1 - 2) & (my >= y0 + 1) & (my <= y1 - 2)
    prof = cv2.remap(small, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    der = np.zeros_like(prof)
    der[:, 1:-1] = 0.5 * (prof[:, 2:] - prof[:, :-2])
    ok = inside.copy()
    ok[:, 1:-1] &= inside[:, 2:] & inside[:, :-2]
    ok[:, [0, -1]] = False
    mag = np.where(ok, np.abs(der), 0.0)
    j = np.argmax(mag, axis=1)
    rows = np.arange(n)
    # significant: above edge_min_snr pixel-noise std (a central difference has sqrt(2) less noise: conservative)
    good = mag[rows, j] >= params.edge_min_snr * noise_small
    n_ray = int(ok.any(axis=1).sum())
    if n_ray < params.min_valid_ray_fraction * n or good.sum() < max(5, params.probe_min_inlier_frac * n_ray):
        return None
    rr = radii[j[good]]
    th = theta[good]
    pts = np.stack([model.cx + rr * np.cos(th), model.cy + rr * np.sin(th)], axis=1).astype(np.float64)
    rc = _ransac_circle(pts, params.score_tol_min_px, params.ransac_iterations, rng)
    if rc is None:
        return None
    (cx, cy, r), inl = rc
    if inl.sum() < params.probe_min_inlier_frac * n_ray:
        return None
    out = _Model(cx, cy, r)
    return out if _inside(model, out, params.enclosure_tol_frac) else None


def _strength(r: dict) -> float:
    """Evidence of a refined boundary: quality x edge contrast x radius (edge length).

    A particle on the edge or a pit can be a perfect small circle; the fiber is the
    boundary with the most contrast along the most length.
    """
    return r["quality"] * r["contrast_gray"] * r["model"].a


def _in_frame_fraction(model: _Model, shape_hw, rect, n: int = 96) -> float:
    """Share of the cladding disk's area inside the usable frame (grid sampling, bounded)."""
    y0, y1, x0, x1 = rect
    # bounding box of the ellipse inside the frame: nothing to sample
    c, s = math.cos(model.phi), math.sin(model.phi)
    ex, ey = math.hypot(model.a * c, model.b * s), math.hypot(model.a * s, model.b * c)
    if model.cx - ex >= x0 - 0.5 and model.cx + ex < x1 - 0.5 and model.cy - ey >= y0 - 0.5 and model.cy + ey < y1 - 0.5:
        return 1.0
    g = (np.arange(n) + 0.5) / n * 2 - 1
    u, v = np.meshgrid(g, g)
    keep = u * u + v * v <= 1
    u, v = u[keep] * model.a, v[keep] * model.b
    c, s = math.cos(model.phi), math.sin(model.phi)
    x = model.cx + u * c - v * s
    y = model.cy + u * s + v * c
    inside = (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)  # pixel areas
    return float(inside.mean())


# ----------------------------------------------------------------------------------------
# core
# ----------------------------------------------------------------------------------------


def _find_core(img, model: _Model, params: LocalizationParams, ratio_hint, graded_index, rect):
    """Core radius (px, circular frame) from the median radial profile, or (None, diagnostics)."""
    R = model.a
    rim = max(params.core_rim_exclude_px, params.core_rim_exclude_frac * R)
    r_hi_lim = R - rim
    if ratio_hint is not None and ratio_hint > 0:
        rc = ratio_hint * R
        lo = rc * (1 - params.core_window_frac)
        hi = rc * (1 + params.core_window_frac)
        if graded_index:
            lo = max(lo, params.core_center_exclude_frac * rc)
    else:
        lo, hi = 0.0, r_hi_lim
    lo = max(lo, params.core_min_radius_px)
    hi = min(hi, r_hi_lim)
    if hi - lo < 3 * params.core_step_px:
        return None, {"core_reason": "search range empty"}
    # sample the profile from 0 to a little beyond hi (smoothing margin), circular frame
    sig = params.core_smooth_sigma_px / params.core_step_px
    r_end = min(hi + 4 * params.core_smooth_sigma_px + 2 * params.core_step_px, r_hi_lim)
    # only the search band (plus a smoothing margin) is sampled: bounded work for large cores
    r_start = max(0.0, math.floor((lo - 4 * params.core_smooth_sigma_px) / params.core_step_px) * params.core_step_px)
    rr = np.arange(r_start, r_end + 1e-9, params.core_step_px)
    al = np.linspace(0, 2 * np.pi, params.core_angles, endpoint=False)
    nx = rr[None, :] * np.cos(al)[:, None]
    ny = rr[None, :] * np.sin(al)[:, None]
    c, s = math.cos(model.phi), math.sin(model.phi)
    u = nx * c + ny * s
    v = (-nx * s + ny * c) * (model.b / model.a)
    mx = (model.cx + u * c - v * s).astype(np.float32)
    my = (model.cy + u * s + v * c).astype(np.float32)
    prof = _remap_crop(img, mx, my)
    ok_rows = _rays_inside(mx, my, rect)
    if ok_rows.sum() < max(4, params.core_angles // 4):
        n_in = max(1, int((lo - r_start) / params.core_step_px))
        ok_rows = _rays_inside(mx[:, :n_in], my[:, :n_in], rect)
        if ok_rows.sum() < 4:
            return None, {"core_reason": "core region outside the frame"}
    med = _median_axis0(prof[ok_rows]).astype(np.float32)
    k = int(2 * math.ceil(3 * sig) + 1)
    sm = cv2.GaussianBlur(med[None, :], (k, 1), sigmaX=sig, borderType=cv2.BORDER_REPLICATE)[0]
    der = _grad_last(sm, params.core_step_px)
    i_lo = int(math.ceil((lo - r_start) / params.core_step_px))
    i_hi = min(int((hi - r_start) / params.core_step_px), len(der) - 1)
    if i_hi - i_lo < 2:
        return None, {"core_reason": "search range empty"}
    seg = np.abs(der[i_lo : i_hi + 1])
    j = int(np.argmax(seg)) + i_lo
    peak = float(der[j])
    # noise of the derivative of the median profile: per-angle scatter / sqrt(n)
    n_ok = int(ok_rows.sum())
    c0, c1 = max(i_lo - k, 0), min(i_hi + k + 1, prof.shape[1])
    pa = prof[ok_rows][:, c0:c1].astype(np.float32)
    pa = cv2.GaussianBlur(pa, (k, 1), sigmaX=sig, borderType=cv2.BORDER_REPLICATE)[:, k // 2 : -(k // 2) or None]
    if pa.shape[1] < 3:
        pa = cv2.GaussianBlur(prof[ok_rows][:, c0:c1].astype(np.float32), (k, 1), sigmaX=sig, borderType=cv2.BORDER_REPLICATE)
    da = _grad_last(pa, params.core_step_px)
    # per-angle scatter around the median profile (mean absolute deviation -> sigma), then the
    # noise of a median of n_ok values
    scatter = float(np.mean(np.abs(da - _median_axis0(da)[None, :]))) * 1.2533
    noise = scatter * 1.2533 / math.sqrt(n_ok) + 1e-6
    snr = abs(peak) / noise
    w = max(1, int(round(2.5 * sig)))
    a_in = sm[max(j - 3 * w, 0) : max(j - w, 1)]
    a_out = sm[min(j + w + 1, len(sm) - 1) : min(j + 3 * w + 1, len(sm))]
    contrast = float(abs(a_in.mean() - a_out.mean())) if len(a_in) and len(a_out) else 0.0
    diag = {"core_snr": snr, "core_contrast_gray": contrast}
    if snr < params.core_min_snr or contrast < params.core_min_contrast_gray:
        diag["core_reason"] = "no significant core step"
        return None, diag
    if 0 < j < len(der) - 1:
        ym, yc, yp = abs(der[j - 1]), abs(der[j]), abs(der[j + 1])
        den = ym - 2 * yc + yp
        off = 0.5 * (ym - yp) / den if abs(den) > 1e-12 else 0.0
        off = float(np.clip(off, -0.5, 0.5))
    else:
        off = 0.0
    return r_start + (j + off) * params.core_step_px, diag


# ----------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------


def localize_fiber(
    gray: np.ndarray,
    params: LocalizationParams,
    *,
    core_to_cladding_ratio: float | None = None,
    graded_index: bool = False,
) -> FiberGeometry:
    """Find the fiber's cladding boundary (circle or ellipse) and core in a grey image.

    Parameters
    ----------
    gray : ndarray
        2-D grey image (uint8, uint16 or float); 8-bit grey levels are assumed for
        the grey-level thresholds (convert with :func:`dscope.inspection.preprocess.to_gray8`).
    params : LocalizationParams
        Thresholds of the profile (``profiles.<name>.localization``).
    core_to_cladding_ratio : float, optional
        Nominal core/cladding diameter ratio of the fiber type: narrows the core search.
    graded_index : bool
        Graded-index fibers show a small dark centre dot which is ignored.

    Returns
    -------
    FiberGeometry
        ``center_px``, ``cladding_radius_px`` (semi-major), ``cladding_ellipse``
        (``None`` when circular within ``ellipse_axis_ratio_tol``), core, ``quality`` in [0, 1],
        ``method``, ``in_frame_fraction`` (area share of the cladding disk in the usable frame),
        ``glass_polarity`` and ``diagnostics``.

    Raises
    ------
    LocalizationError
        ``localization_failed`` when no fiber end face is found (blank, black,
        white or noise frames, too little edge support).
    ImageError
        ``unsupported_format`` / ``image_too_small`` for arrays that are not usable grey images.

    Examples
    --------
    >>> import numpy as np, cv2
    >>> img = np.full((300, 400), 60, np.uint8)
    >>> _ = cv2.circle(img, (200, 150), 80, 170, -1)
    >>> g = localize_fiber(cv2.GaussianBlur(img, (0, 0), 1.5), params)  # doctest: +SKIP
    >>> round(g.cladding_radius_px)  # doctest: +SKIP
    80
    """
    try:
        return _localize_once(gray, params, core_to_cladding_ratio=core_to_cladding_ratio, graded_index=graded_index)
    except LocalizationError as exc:
        k = params.texture_retry_median_px
        arr = np.asarray(gray)
        if k < 3 or exc.details.get("reason") != "no_candidate" or arr.dtype not in (np.uint8, np.uint16, np.float32):
            raise
        smooth = cv2.medianBlur(np.ascontiguousarray(arr), k | 1)
        geo = _localize_once(smooth, params, core_to_cladding_ratio=core_to_cladding_ratio, graded_index=graded_index)
        if geo.quality < params.texture_retry_min_quality:
            raise exc from None  # a weak circle in smoothed texture (a blank ferrule) is no fiber
        return replace(geo, method=geo.method + "+texture_retry",
                       diagnostics={**geo.diagnostics, "texture_retry_median_px": k | 1})


def _localize_once(
    gray: np.ndarray, params: LocalizationParams, *, core_to_cladding_ratio: float | None, graded_index: bool,
) -> FiberGeometry:
    """One localization attempt on ``gray`` (see :func:`localize_fiber`)."""
    arr = np.asarray(gray)
    if arr.ndim != 2:
        raise ImageError("unsupported_format", f"localization needs a 2-D grey image, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError("unsupported_format", f"unsupported pixel type {arr.dtype}")
    h, w = arr.shape
    if min(h, w) < params.min_image_side_px:
        raise ImageError("image_too_small", f"image {w}x{h} px is smaller than {params.min_image_side_px} px")
    if arr.dtype == np.uint8:
        img = np.ascontiguousarray(arr)
    else:
        img = arr.astype(np.float32)
        if not np.isfinite(img).all():
            raise ImageError("unsupported_format", "image contains NaN or infinite values")

    # -- coarse copy -------------------------------------------------------------------
    # one pass over the frame: 2x INTER_AREA halvings (fast path), then a mild linear step
    # to the cap; full-res x = (small x + 0.5) * s_x - 0.5
    if params.coarse_downscale == "pyramid":
        small, s_x, s_y = _downscale(img, params.coarse_max_side_px)
    else:
        small, s_x, s_y = _downscale_area(img, params.coarse_max_side_px)
    small = small.astype(np.float32)
    k = 0.5 * (s_x + s_y)
    f = 1.0 / k
    f_x, f_y = 1.0 / s_x, 1.0 / s_y
    rect_s = _usable_rect(small, params.black_border_level)
    if rect_s is None:
        raise LocalizationError("no fiber found: the image is black", reason="black")
    y0, y1, x0, x1 = rect_s
    usable = small[y0:y1, x0:x1]
    sub = usable[::3, ::3].ravel()
    q_lo, q_hi = int(0.005 * (sub.size - 1)), int(0.995 * (sub.size - 1))
    part = np.partition(sub, (q_lo, q_hi))
    p_lo, p_hi = float(part[q_lo]), float(part[q_hi])
    if p_hi - p_lo < params.min_dynamic_range_gray or min(y1 - y0, x1 - x0) < 8:
        raise LocalizationError(
            f"no fiber found: the image is uniform (grey range {p_hi - p_lo:.1f} < {params.min_dynamic_range_gray})",
            reason="uniform",
        )
    small_b = cv2.GaussianBlur(small, (0, 0), params.coarse_blur_sigma_px)
    noise_small = _robust_sigma_diff(small_b[y0:y1, x0:x1])
    rect_f = (
        int(math.floor(y0 / f_y)), min(h, int(math.ceil(y1 / f_y))),
        int(math.floor(x0 / f_x)), min(w, int(math.ceil(x1 / f_x))),
    )
    # shrink the full-res rect by the border transition so border steps are never sampled
    if rect_f != (0, h, 0, w):
        m = int(math.ceil(1.0 / f)) + 2
        rect_f = (
            rect_f[0] + (m if rect_f[0] > 0 else 0), rect_f[1] - (m if rect_f[1] < h else 0),
            rect_f[2] + (m if rect_f[2] > 0 else 0), rect_f[3] - (m if rect_f[3] < w else 0),
        )
    coarse = _Coarse(small_b, rect_s, f, params, noise_small)
    cands: list[_Model] = []
    scored = []
    stages_used = []
    rng = np.random.default_rng(params.ransac_seed)
    refined: list[_Model] = []  # coarse candidates already refined (lazy sources: never refined twice)

    def rank_and_refine(best):
        nonlocal scored
        scored = _rank_enclosed_last(scored, params)
        if params.enclosure_probe and scored and scored[0][0] > 0 and scored[0][2] not in refined:
            # nothing encloses the best candidate (it is ranked first): look for a boundary around it
            probe = _enclosing_probe(small_b, scored[0][2], rect_s, coarse.r_max, params, noise_small,
                                     np.random.default_rng(params.ransac_seed))
            if probe is not None:
                sup, rank = _score_candidate(small_b, probe, rect_s, params)
                cands.append(probe)
                scored = _rank_enclosed_last(scored + [(rank, sup, probe)], params)
        top = [c for rank, _, c in scored[: params.refine_top_candidates] if rank > 0 and c not in refined]
        for c in top:
            if best is not None and best["quality"] >= params.refine_accept_quality:
                break  # good enough: skip the remaining candidates (fast profiles)
            refined.append(c)
            best = refine_one(c, best)
        return best

    def fit(c_full: _Model, fit_params: LocalizationParams = params):
        """Refine a full-resolution model; the fit with its quality and acceptance, or None."""
        r = _refine(img, c_full, rect_f, fit_params, rng)
        if r is None:
            return None
        q_fit = 1.0 / (1.0 + r["rms_px"] / params.quality_rms_scale_px)
        # contrast of the boundary: the local step on the rays, or glass vs ferrule level (a boundary
        # marked mainly by a rim line has a small local step but a clear glass/ferrule difference)
        r["glass_sign"], glass_step = _glass_polarity(img, r["model"], rect_f, params, r["polarity"])
        r["contrast_gray"] = max(r["step_gray"], glass_step)
        r["quality"] = float(np.clip(r["support"] * q_fit * math.sqrt(r["coverage"]), 0.0, 1.0))
        r["accepted"] = (
            r["support"] >= params.min_edge_support
            and r["n_inliers"] >= params.min_edge_points
            and r["contrast_gray"] >= params.min_step_gray
            and r["quality"] >= params.min_quality
        )
        return r

    def refine_one(c: _Model, best):
        c_full = _Model((c.cx + 0.5) * s_x - 0.5, (c.cy + 0.5) * s_y - 0.5, c.a * k, c.b * k, c.phi)
        r = fit(c_full)
        if r is None or not r["accepted"]:
            return best
        if best is None:
            best = r
            return best
        # concentric and larger with adequate support: it is the cladding (the other is the core)
        bm, rm = best["model"], r["model"]
        # one boundary inside the other (a pit, particle or the core inside the cladding): the enclosing
        # boundary with good angular support is the fiber, whatever the contrasts
        if (_inside(bm, rm, params.enclosure_tol_frac) and r["coverage"] >= params.enclosing_min_coverage
                and r["quality"] >= params.enclosing_min_quality_ratio * best["quality"]):
            best = r
            return best
        if (_inside(rm, bm, params.enclosure_tol_frac) and best["coverage"] >= params.enclosing_min_coverage
                and best["quality"] >= params.enclosing_min_quality_ratio * r["quality"]):
            return best
        concentric = math.hypot(bm.cx - rm.cx, bm.cy - rm.cy) < 0.05 * max(bm.a, rm.a) + 2
        if concentric and rm.a > 1.15 * bm.a:
            best = r
        elif concentric and bm.a > 1.15 * rm.a:
            pass  # r is the core (or a ring inside the glass)
        elif _strength(r) > _strength(best):  # two fits of the same boundary, or unrelated circles
            best = r
        return best

    accept_min_r = params.coarse_accept_min_radius_frac * min(small.shape)

    def add(found: list) -> None:
        new = [c for c in _dedupe(cands + found, params.max_candidates) if c not in cands]
        for c in new:
            sup, rank = _score_candidate(small_b, c, rect_s, params)
            scored.append((rank, sup, c))
        cands.extend(new)

    best = None
    for i_stage, (name, found) in enumerate(coarse.stages()):
        if callable(found):
            # the expensive fallback: skipped when the cheap sources found a well-supported
            # candidate of any size (a small fiber), run when nothing convincing was found
            if max((sup for _, sup, _ in scored), default=0.0) >= params.coarse_accept_score:
                break
            found = found()
        stages_used.append(name)
        add(found)
        if params.lazy_sources and scored:
            best = rank_and_refine(best)
            if best is not None and best["quality"] >= params.refine_accept_quality:
                break  # a fit good enough: the costlier sources are not needed
        big_sup = max((sup for _, sup, c in scored if c.a >= accept_min_r), default=0.0)
        if len(cands) >= params.max_candidates:
            break
        if big_sup >= params.coarse_accept_score and i_stage + 1 >= params.coarse_min_sources:
            break
    density = coarse.density
    if not cands:
        raise LocalizationError("no fiber found: no circular edge candidate", reason="no_candidate", edge_density=density)
    if not params.lazy_sources and scored:
        best = rank_and_refine(None)
    if not refined:
        raise LocalizationError("no fiber found: no candidate has edge support", reason="no_support")
    if best is None:
        raise LocalizationError(
            "no fiber found: no candidate boundary reached the required edge support", reason="low_support"
        )
    core_check = {}
    ratio = core_to_cladding_ratio
    if params.core_check_min_ratio > 0 and ratio is not None and params.core_check_min_ratio <= ratio < 1:
        # a large core's edge, a few percent inside the cladding, can be the best-fitting boundary: fit
        # again where the cladding would be if it were the core
        bm = best["model"]
        # search window: half the gap between the two boundaries, so the fit cannot slide back to the core
        half_frac = 0.5 * (1.0 - ratio)
        narrow = params.model_copy(update={
            "refine_window_frac": min(params.refine_window_frac, half_frac),
            "refine_window_min_px": min(params.refine_window_min_px, half_frac * bm.a / ratio),
        })
        r = fit(_Model(bm.cx, bm.cy, bm.a / ratio, bm.b / ratio, bm.phi), narrow)
        taken = False
        if r is not None and r["accepted"]:
            rm = r["model"]
            concentric = math.hypot(bm.cx - rm.cx, bm.cy - rm.cy) <= params.core_check_tol_frac * rm.a
            matches = abs(rm.a * ratio - bm.a) <= params.core_check_tol_frac * rm.a
            # the glass/ferrule boundary is at least as continuous as the core edge; an epoxy ring or a
            # texture fit around the true cladding is not
            taken = (concentric and matches and rm.a > bm.a and r["support"] >= best["support"]
                     and r["quality"] >= params.enclosing_min_quality_ratio * best["quality"])
            if taken:
                best = r
        core_check = {"core_check": "outer boundary taken" if taken else "kept"}
    mdl: _Model = best["model"]
    delta, bdiag = _boundary_offset(img, mdl, rect_f, params, core_to_cladding_ratio)
    mdl = _Model(mdl.cx, mdl.cy, mdl.a + delta, mdl.b + delta, mdl.phi)
    a, b = max(mdl.a, mdl.b), min(mdl.a, mdl.b)
    phi = mdl.phi if mdl.a >= mdl.b else mdl.phi + math.pi / 2
    mdl = _Model(mdl.cx, mdl.cy, a, b, phi)
    if a / max(b, 1e-9) > params.max_axis_ratio:
        raise LocalizationError("no fiber found: boundary too elongated", reason="axis_ratio")
    ellipse = None
    if best["kind"] == "ellipse" and a / b > 1 + params.ellipse_axis_ratio_tol:
        ang = math.degrees(phi) % 180.0
        ellipse = Ellipse(center_px=(mdl.cx, mdl.cy), semi_major_px=a, semi_minor_px=b, angle_deg=ang)
    else:
        mdl = _Model(mdl.cx, mdl.cy, a, a, 0.0) if best["kind"] == "circle" else _Model(mdl.cx, mdl.cy, a, b, phi)
        if best["kind"] != "circle":
            # nearly circular ellipse reported as a circle: use the mean radius as the radius
            r_mean = math.sqrt(a * b)
            mdl = _Model(mdl.cx, mdl.cy, r_mean, r_mean, 0.0)
    in_frame = _in_frame_fraction(mdl, (h, w), rect_f)
    core_r, core_diag = (None, {})
    if params.core_enabled:
        core_r, core_diag = _find_core(img, mdl, params, core_to_cladding_ratio, graded_index, rect_f)
    diagnostics = {
        "n_candidates": len(cands),
        "coarse_sources": list(stages_used),
        "n_refined": len(refined),
        "edge_support": best["support"],
        "fit_rms_px": best["rms_px"],
        "n_edge_points": best["n_inliers"],
        "n_valid_rays": best["n_valid"],
        "angular_coverage": best["coverage"],
        "step_gray": best["step_gray"],
        "contrast_gray": best["contrast_gray"],
        "radius_std_px": best["radius_std_px"],
        "usable_rect_xywh": (rect_f[2], rect_f[0], rect_f[3] - rect_f[2], rect_f[1] - rect_f[0]),
        "boundary_offset_px": delta,
        **core_check,
        **bdiag,
        **core_diag,
    }
    return FiberGeometry(
        center_px=(mdl.cx, mdl.cy),
        cladding_radius_px=float(mdl.a),
        cladding_ellipse=ellipse,
        core_radius_px=None if core_r is None else float(core_r),
        core_visible=core_r is not None,
        quality=best["quality"],
        method=f"coarse+ray_{best['kind']}_fit",
        in_frame_fraction=in_frame,
        glass_polarity="bright" if best["glass_sign"] > 0 else "dark",
        diagnostics=diagnostics,
    )
