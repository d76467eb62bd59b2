"""Defect detection: background model, per-method evidence, fusion and segmentation (issue 4).

Outline of :func:`detect`:

1. Crop the region of interest (the zones' ``roi_xywh``), optionally downscale it
   so that its longer side is at most ``max_analysis_side_px`` (bounded work).
2. Background model in the fiber's circular frame: median radial profile over
   angle times a smooth multiplicative illumination gain.  The residual
   ``gray - background`` is flat across zone edges, the core step, the rim
   line of the cladding and the graded-index centre dot.
3. Each enabled method (DO2MR, black/top-hat, morphological gradient, LEI line
   detectors, skeleton/Hough line path, and the *ridge* path: Hessian curvature
   computed at full resolution on the core+cladding box, its radial median
   removed, max-pooled onto the analysis grid, so a scratch narrower than an
   analysis pixel is not averaged away; and the *blob* path: the signed local
   mean of the residual in a ~10 um window, z-scored with zone-wide statistics
   so that a soft, low-contrast region as large as a tile is not normalised
   away) gives a response; each response is
   turned into a z-score with the robust statistics (median / MAD) of its own
   zone and tile (``tile_grid`` x ``tile_grid``), scaled up where the radial
   noise profile rises (the cladding boundary), and ramped to a [0, 1]
   strength.
4. Fusion: ``confidence = 1 - prod(1 - weight_m * strength_m)`` (noisy-OR); one
   weak method stays below the threshold, agreeing methods add up.
5. Segmentation: hysteresis on the confidence map (seeds at
   ``confidence_threshold``, growth to ``confidence_low``), then each region is
   refined to the pixels whose smoothed residual reaches ``segment_fraction``
   of the region's peak (a half-maximum mask; with ``segment_local_px`` the
   peak within that radius), so sizes are measured on the defect and not on
   the filter support.  The region's polarity is the sign of its most extreme
   residual.  Refined pieces further apart than ``split_gap_px`` become
   separate candidates (a weak defect is not merged into a strong neighbour
   through their shared low-confidence halo).  Pieces of one polarity joined
   through the blob path's support (``|z| >= merge_blob_z`` of that sign) are
   merged again: a soft blob or a ring of dirt is one defect, not fragments
   each under the size limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from dscope.errors import ImageError
from dscope.inspection import methods as M
from dscope.inspection.types import FiberGeometry, ZoneMask
from dscope.params import StrictModel

MethodName = Literal["do2mr", "blackhat", "gradient", "lei", "skeleton", "ridge", "ridge_wide", "blob"]
#: Methods that look for lines or edges; they are damped on the cladding boundary band.
EDGE_METHODS = ("do2mr", "gradient", "lei", "skeleton", "ridge", "ridge_wide")


class MethodSettings(StrictModel):
    """Weight and z-score ramp of one detection method in the fusion."""

    weight: float = Field(gt=0, le=1, description="reliability of the method in the noisy-OR fusion")
    z_low: float = Field(ge=0, description="z-score (zone/tile robust units) at which evidence starts")
    z_high: float = Field(gt=0, description="z-score at which evidence is full (strength 1)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.z_high <= self.z_low:
            raise ValueError("z_high must be greater than z_low")
        return self


class BaselineParams(StrictModel):
    """Faithful DO2MR + LEI of Mei et al. (2018), used only as the benchmark baseline."""

    do2mr_window_px: int = Field(ge=3, le=15, description="min/max filter window of DO2MR")
    do2mr_gamma: float = Field(gt=0, le=10, description="sigma rule: threshold = mean + gamma * std of the residual")
    median_ksize_px: int = Field(ge=1, le=9, description="median filter of the residual before thresholding (odd)")
    opening_px: int = Field(ge=1, le=9, description="opening kernel removing isolated pixels")
    lei_length_px: int = Field(ge=5, le=61, description="length of the LEI line detectors")
    lei_side_offset_px: int = Field(ge=1, le=10, description="distance of the LEI side lines from the centre line")
    lei_orientations: int = Field(ge=4, le=36, description="number of LEI orientations")
    lei_gamma: float = Field(gt=0, le=10, description="sigma rule of the LEI strength")
    min_area_px: int = Field(ge=1, description="smallest reported region")


class DetectionParams(StrictModel):
    """Per-profile detection settings (section ``profiles.<name>.detection``)."""

    methods: dict[MethodName, MethodSettings] = Field(min_length=1, description="enabled methods and their fusion")
    max_analysis_side_px: int = Field(ge=64, le=8192, description="ROI longer than this is downscaled first")
    radial_bin_px: float = Field(gt=0, le=8, description="radial bin of the background profile (analysis px)")
    min_bin_count: int = Field(ge=1, description="pixels needed to trust a radial bin")
    gain_degree: int = Field(ge=0, le=2, description="illumination gain polynomial degree (0 = off)")
    gain_step_px: int = Field(ge=1, le=64, description="sub-sampling step of the gain fit")
    gain_reject_sigma: float = Field(gt=0, description="outlier rejection of the gain fit, in sigmas")
    gain_min: float = Field(gt=0, le=1, description="lower clip of the illumination gain")
    gain_max: float = Field(ge=1, description="upper clip of the illumination gain")
    sigma_quant: float = Field(gt=0, le=4, description="grey-level quantum of the radial noise profile")
    smooth_sigma_px: float = Field(ge=0, le=5, description="Gaussian smoothing of the residual (0 = none)")
    tile_grid: int = Field(ge=1, le=8, description="zones are split in tile_grid x tile_grid tiles for local stats")
    min_tile_px: int = Field(ge=16, description="a zone/tile with fewer samples uses the zone-wide statistics")
    stats_step_px: int = Field(ge=1, le=8, description="sub-sampling step for the robust statistics")
    min_sigma: float = Field(gt=0, description="floor of every robust sigma (grey levels / response units)")
    do2mr_window_px: int = Field(ge=3, le=15, description="DO2MR min/max window (analysis px, odd)")
    blackhat_kernel_um: float = Field(gt=0, description="black/top-hat kernel: largest compact defect it sees")
    blackhat_kernel_min_px: int = Field(ge=3, description="lower clamp of the black-hat kernel")
    blackhat_kernel_max_px: int = Field(ge=3, le=255, description="upper clamp of the black-hat kernel")
    gradient_kernel_px: int = Field(ge=3, le=31, description="morphological-gradient ellipse kernel")
    blob_window_um: float = Field(default=10.0, gt=0, description="window of the local-mean (blob) method: soft, "
                                  "extended low-contrast regions")
    blob_window_min_px: int = Field(default=3, ge=3, le=63, description="lower clamp of the blob window")
    blob_window_max_px: int = Field(default=31, ge=3, le=63, description="upper clamp of the blob window")
    line_downscale: int = Field(ge=1, le=4, description="LEI and skeleton paths run at analysis scale / this")
    lei_length_um: float = Field(gt=0, description="LEI line detector length (kernels above 11 px get slow)")
    lei_length_min_px: int = Field(ge=5)
    lei_length_max_px: int = Field(ge=5, le=99)
    lei_side_offset_px: int = Field(ge=1, le=10, description="LEI side-line distance (analysis px)")
    lei_orientations: int = Field(ge=4, le=36)
    skeleton_z: float = Field(gt=0, description="|residual| z-score of the ridge map that is thinned")
    skeleton_min_length_um: float = Field(gt=0, description="shortest Hough segment accepted as a line")
    skeleton_max_gap_px: int = Field(ge=0, le=50)
    skeleton_hough_threshold: int = Field(ge=1)
    skeleton_max_points: int = Field(ge=100, description="cap on skeleton pixels fed to Hough (bounded work)")
    skeleton_max_lines: int = Field(ge=1, description="cap on Hough segments used")
    skeleton_thickness_px: int = Field(ge=1, le=15)
    ridge_sigma_px: float = Field(default=1.0, gt=0, le=4, description="Gaussian scale of the full-resolution "
                                  "Hessian ridge path (image px; about half the widest thin line)")
    ridge_max_side_px: int = Field(default=1024, ge=64, le=4096, description="the ridge path runs on the glass "
                                   "zones' box at full resolution unless it is longer than this (then binned)")
    ridge_wide_sigma_um: float = Field(default=0.8, gt=0, le=10, description="Gaussian scale of the wide "
                                       "ridge path (method ridge_wide, run at the analysis resolution): "
                                       "scratches a few micrometres wide, too wide for the full-resolution "
                                       "ridge and too faint for LEI on a mottled glass")
    ridge_wide_min_ratio: float = Field(default=2.0, ge=1, description="the wide ridge path runs only when its "
                                        "scale in image pixels is at least this multiple of ridge_sigma_px (at "
                                        "low magnification the full-resolution ridge already sees such lines)")
    ridge_profile_step_px: int = Field(default=2, ge=1, le=8, description="sub-sampling of the ridge's radial "
                                       "median profile (removes the rim line, core step and GI dot)")
    edge_band_um: float = Field(ge=0, description="half-width of the cladding-boundary band")
    edge_band_suppression: float = Field(ge=0, le=1, description="edge/line methods are multiplied by this in the band")
    center_flat_um: float = Field(ge=0, description="background profile held flat inside this radius (central pits)")
    center_dot_max_offset_um: float = Field(ge=0, description="a spot centred within this of the fiber centre ...")
    center_dot_max_diameter_um: float = Field(ge=0, description="... and no wider than this is the graded-index dot")
    gi_dot_max_offset_um: float = Field(default=1.0, ge=0, description="on a graded-index fiber (fiber type "
                                        "graded_index): the centre dot's offset limit instead (core/cladding "
                                        "concentricity, up to 1.5 um for multimode fibers, plus the centre fit)")
    gi_dot_max_diameter_um: float = Field(default=4.0, ge=0, description="on a graded-index fiber: the centre "
                                          "dot's area-equivalent diameter limit instead (a centre dip of a few um, "
                                          "blurred)")
    rim_band_fraction: float = Field(gt=0, le=1, description="a region with this share of its pixels in the band is the boundary itself")
    confidence_threshold: float = Field(gt=0, lt=1, description="seed level of the fused confidence")
    confidence_low: float = Field(gt=0, lt=1, description="growth level of the fused confidence (hysteresis)")
    segment_fraction: float = Field(gt=0, lt=1, description="region pixels kept at this fraction of its peak residual")
    segment_min_z: float = Field(ge=0, description="and at least this residual z-score")
    segment_local_px: int = Field(default=0, ge=0, le=50, description="half-maximum refinement against the "
                                  "peak within this radius (analysis px) instead of the whole region's (0)")
    split_gap_px: int = Field(default=2, ge=0, le=20, description="pieces of a segmented region further apart "
                              "than this (analysis px) become separate defects (0 = never split)")
    piece_min_z: float = Field(default=0.0, ge=0, description="a connected piece of a refined region is kept "
                               "only if its own peak residual z reaches this ... (0 = off)")
    piece_min_rel_z: float = Field(default=0.0, ge=0, le=1, description="... or this fraction of its region's "
                                   "peak z (pieces of one faint defect are alike; specks beside a strong one are not)")
    merge_blob_z: float = Field(default=0.0, ge=0, description="pieces of the same polarity joined by the "
                                "blob method's support (|local-mean z| >= this, same sign) are one defect: a soft "
                                "low-contrast region or a ring of dirt is not split into fragments (0 = off; needs "
                                "the blob method)")
    merge_min_blob_strength: float = Field(default=0.0, ge=0, le=1, description="only pieces whose mean blob "
                                           "strength reaches this are merged (thin lines, weak in the blob "
                                           "path, keep their own pieces)")
    ring_z: float = Field(default=0.0, ge=0, description="ring completion: a kept piece is joined with the "
                          "other pieces of a ring of dirt through it, found on the residual smoothed by "
                          "ring_smooth_um at |z| >= this, same sign (0 = off)")
    ring_smooth_um: float = Field(default=1.5, ge=0, description="Gaussian smoothing of the ring evidence")
    ring_min_diameter_um: float = Field(default=20.0, gt=0, description="smallest ring completed")
    ring_max_diameter_um: float = Field(default=80.0, gt=0, description="largest ring completed")
    ring_min_radius_px: float = Field(default=12.0, gt=0, description="and at least this radius in analysis px "
                                      "(a smaller circle is a blob's outline, not a ring found in pieces)")
    ring_min_piece_width_um: float = Field(default=3.0, gt=0, description="pieces narrower than this (scratches, "
                                           "cracks) neither seed nor join a ring, and their pixels are no evidence")
    ring_tol_um: float = Field(default=2.0, gt=0, description="half-width of the ring line around the circle")
    ring_tol_min_px: float = Field(default=1.5, gt=0, description="lower clamp of the ring tolerance (analysis px)")
    ring_min_coverage: float = Field(default=0.6, gt=0, le=1, description="share of the circle the evidence "
                                     "must cover")
    ring_max_background: float = Field(default=0.1, ge=0, le=1, description="largest share of evidence off "
                                       "the ring in its window (chance coverage of a textured background)")
    ring_concentric_frac: float = Field(default=0.25, ge=0, description="a ring centred within this fraction "
                                        "of its radius of the fiber centre is a zone boundary, not dirt")
    ring_min_other: float = Field(default=0.3, ge=0, le=1, description="coverage of the circle by evidence "
                                  "away from the seed (a compact spot covers any small circle around itself)")
    ring_max_interior: float = Field(default=0.3, ge=0, le=1, description="largest share of evidence inside "
                                     "the circle (a ring is an outline, not a filled blob)")
    ring_min_along: float = Field(default=0.33, ge=0, le=1, description="an evidence piece is an arc of the "
                                  "ring when this share of it lies along the circle; the arcs alone (and the seed) "
                                  "must cover ring_min_coverage of it (blobs a circle merely passes through, "
                                  "texture or the boundary's residual, do not count)")
    ring_hypotheses: int = Field(default=300, ge=10, le=5000, description="RANSAC circles per seed")
    ring_samples: int = Field(default=72, ge=12, le=720, description="points sampled along each circle")
    ring_max_seeds: int = Field(default=12, ge=0, description="pieces tried as ring seeds (most confident first)")
    link_max_gap_um: float = Field(default=0.0, ge=0, description="line linking: kept line-like pieces of one "
                                   "polarity, near-collinear and with facing ends at most this far apart, are one "
                                   "defect (a faint scratch found as fragments; 0 = off)")
    link_max_angle_deg: float = Field(default=10.0, gt=0, le=45, description="largest direction difference of "
                                      "linked pieces")
    link_max_offset_um: float = Field(default=1.5, ge=0, description="largest distance of a piece's facing end "
                                      "from the other piece's axis")
    link_min_offset_px: float = Field(default=1.5, ge=0, description="lower clamp of that distance "
                                      "(analysis px)")
    link_min_aspect: float = Field(default=2.5, ge=1, description="a piece is line-like when its principal "
                                   "length is at least this multiple of its width")
    link_min_length_um: float = Field(default=2.0, ge=0, description="and at least this long")
    link_min_gap_z: float = Field(default=1.0, ge=0, description="mean residual z (of the pieces' polarity) "
                                  "along the gap between them: the line continues there, faintly (unrelated "
                                  "collinear specks have ~0)")
    link_max_pieces: int = Field(default=64, ge=2, description="line-like pieces considered (most confident "
                                 "first; bounded work)")
    min_area_um2: float = Field(ge=0, description="smallest defect kept")
    min_area_px: int = Field(ge=1, description="and at least this many analysis pixels")
    baseline: BaselineParams

    @model_validator(mode="after")
    def _checks(self):
        if self.confidence_low > self.confidence_threshold:
            raise ValueError("confidence_low must not exceed confidence_threshold")
        if self.do2mr_window_px % 2 == 0:
            raise ValueError("do2mr_window_px must be odd")
        if self.blackhat_kernel_max_px < self.blackhat_kernel_min_px:
            raise ValueError("blackhat_kernel_max_px < blackhat_kernel_min_px")
        if self.lei_length_max_px < self.lei_length_min_px:
            raise ValueError("lei_length_max_px < lei_length_min_px")
        return self


@dataclass
class Candidate:
    """One detected region (before classification)."""

    label: int  # index in Detection.labels
    bbox_xywh: tuple[int, int, int, int]  # IMAGE pixel coordinates
    evidence: dict[str, float]  # method name -> mean strength inside the region
    polarity: str  # "dark" | "bright"
    score: float  # fused confidence of the region, 0..1


@dataclass
class Detection:
    """Output of :func:`detect`; all maps are ROI-sized."""

    roi_xywh: tuple[int, int, int, int]
    confidence_analysis: np.ndarray  # float32 0..1 at the analysis scale (see the ``confidence`` property)
    labels: np.ndarray  # int32, 0 = background
    candidates: list[Candidate]
    noise_sigma: float  # robust noise of the glass residual at analysis scale, grey levels
    background: np.ndarray | None = None  # float32 background model at analysis scale (see residual_patch)
    analysis_scale: float = 1.0  # analysis pixels per image pixel (1 / integer)

    def residual_patch(self, gray: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``gray - background`` on ROI rows ``y0:y1`` and columns ``x0:x1``, full resolution (float32)."""
        rx, ry = self.roi_xywh[:2]
        g = np.asarray(gray[ry + y0:ry + y1, rx + x0:rx + x1], np.float32)
        if self.background is None:
            return g - np.float32(np.median(g))
        k = max(int(round(1.0 / self.analysis_scale)), 1)
        bh, bw = self.background.shape
        ys = np.minimum(np.arange(y0, y1) // k, bh - 1)
        xs = np.minimum(np.arange(x0, x1) // k, bw - 1)
        return g - self.background[np.ix_(ys, xs)]
    diagnostics: dict = field(default_factory=dict)

    @property
    def confidence(self) -> np.ndarray:
        """Fused confidence (float32, 0..1) on the ROI at full resolution, interpolated on demand
        from :attr:`confidence_analysis` (the pipeline itself never needs the full-size map)."""
        _, _, w, h = self.roi_xywh
        conf = self.confidence_analysis
        if conf.shape == (h, w):
            return conf
        k = max(int(round(1.0 / self.analysis_scale)), 1)
        hs, ws = conf.shape
        out = np.zeros((h, w), np.float32)
        hh, ww = min(hs * k, h), min(ws * k, w)
        out[:hh, :ww] = cv2.resize(conf, (ws * k, hs * k), interpolation=cv2.INTER_LINEAR)[:hh, :ww]
        return out


def _odd(n: float, lo: int, hi: int) -> int:
    k = int(round(n))
    k = min(max(k, lo), hi)
    return k if k % 2 == 1 else k + 1


def _validate(gray: np.ndarray, zones: list[ZoneMask]) -> tuple[int, int, int, int]:
    g = np.asarray(gray)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise ImageError("unsupported_format", f"detect needs a 2-D uint8 grey image, got {g.dtype} {g.shape}")
    if not zones:
        raise ValueError("detect needs at least one zone mask")
    roi = tuple(int(v) for v in zones[0].roi_xywh)
    x, y, w, h = roi
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > g.shape[1] or y + h > g.shape[0]:
        raise ValueError(f"zone ROI {roi} lies outside the image {g.shape[1]}x{g.shape[0]}")
    for z in zones:
        if tuple(int(v) for v in z.roi_xywh) != roi or (z.realised and z.mask.shape != (h, w)):
            raise ValueError(f"zone {z.name!r} does not share the ROI {roi} (mask {z.mask.shape})")
    return roi  # type: ignore[return-value]


def _label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` per label (``-inf`` for absent labels); no sort."""
    out = np.full(n, -np.inf, np.float32)
    np.maximum.at(out, labels, values.astype(np.float32))
    return out


def _centre_dot(lab: np.ndarray, n: int, r_map: np.ndarray, max_offset_px: float, max_diam_px: float) -> np.ndarray:
    """Per label: is the region a small spot centred on the fiber (the graded-index dot)?"""
    ys, xs = np.nonzero(lab)
    ll = lab[ys, xs]
    counts = np.bincount(ll, minlength=n)
    cnt1 = np.maximum(counts, 1)
    cy_c = np.rint(np.bincount(ll, weights=ys, minlength=n) / cnt1).astype(np.int64)
    cx_c = np.rint(np.bincount(ll, weights=xs, minlength=n) / cnt1).astype(np.int64)
    r_cent = r_map[np.clip(cy_c, 0, lab.shape[0] - 1), np.clip(cx_c, 0, lab.shape[1] - 1)]
    eq_diam = 2.0 * np.sqrt(counts / math.pi)
    return (r_cent <= max_offset_px) & (eq_diam <= max_diam_px)


def _ridge_response(
    crop: np.ndarray, glass: np.ndarray, kdown: int, origin_xy: tuple[int, int], geometry: FiberGeometry,
    params: DetectionParams, sigma_px: float | None = None, analysis_scale: bool = False,
    measure=M.hessian_ridge,
) -> np.ndarray:
    """Hessian ridge strength computed at (near) full resolution on the glass zones' box, max-pooled
    to the analysis grid; a scratch narrower than an analysis pixel keeps its full contrast there.

    The radial median profile of the response (over angle) is subtracted, so the
    rotationally symmetric rim line, core step and graded-index dot do not respond.
    ``sigma_px`` (image px, default ``params.ridge_sigma_px``) and ``measure``
    (:func:`~dscope.inspection.methods.hessian_ridge` or ``hessian_line``) choose
    the scale and the measure; ``analysis_scale`` computes it on the analysis grid
    instead (a scale of several image pixels gains nothing at full resolution).
    """
    hs, ws = glass.shape
    out = np.zeros((hs, ws), np.float32)
    if not glass.any():
        return out
    ys, xs = np.nonzero(glass)
    ay0, ay1, ax0, ax1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(ay1 - ay0, ax1 - ax0) * kdown
    sigma_px = params.ridge_sigma_px if sigma_px is None else sigma_px
    kr = kdown if analysis_scale else max(1, int(math.ceil(side / params.ridge_max_side_px)))
    if kr >= kdown or kdown % kr:
        kr = kdown  # no full-resolution gain possible within the bound
    pool = kdown // kr
    win = crop[ay0 * kdown:ay1 * kdown, ax0 * kdown:ax1 * kdown]
    if kr > 1:
        win = cv2.resize(win, (win.shape[1] // kr, win.shape[0] // kr), interpolation=cv2.INTER_AREA)
    sigma = max(sigma_px / kr, 0.5)
    r = measure(win, sigma)
    half = (kr - 1) / 2.0
    r_map = M.normalized_radius_map(
        r.shape, (origin_xy[0] + ax0 * kdown + half, origin_xy[1] + ay0 * kdown + half), geometry.center_px,
        geometry.axis_ratio, geometry.angle_deg, 1.0 / kr,
    )
    st = params.ridge_profile_step_px
    rs_, rm_ = r[::st, ::st], r_map[::st, ::st]
    q = max(float(np.percentile(rs_, 99.5)) / 255.0, 1e-6)
    bins = rm_.astype(np.int32)
    n_bins = int(bins.max()) + 1
    prof = M.binned_median(np.minimum(rs_ / q, 255).astype(np.uint8).ravel(), bins.ravel(), n_bins,
                           params.min_bin_count) * np.float32(q)
    r = r - prof[np.minimum(r_map.astype(np.int32), n_bins - 1)]
    pooled = M.max_pool(r, pool)
    ph, pw = min(pooled.shape[0], hs - ay0), min(pooled.shape[1], ws - ax0)
    out[ay0:ay0 + ph, ax0:ax0 + pw] = pooled[:ph, :pw]
    out[~glass] = 0.0
    return out


def _merge_by_support(
    lab: np.ndarray, n: int, pol: np.ndarray, dot: np.ndarray, keep: np.ndarray, z_blob: np.ndarray,
    union: np.ndarray, z_min: float, gap_px: int = 0, eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """Merge labelled pieces of one polarity connected through ``|z_blob| >= z_min`` of that sign.

    A piece may consist of several blobs less than ``gap_px`` apart; they stay
    together (the pieces are dilated by that gap in the connectivity mask).
    Only labels flagged in ``eligible`` (default: all) are merged; the others
    keep their own label.
    Returns the relabelled map, the new label count and the per-label polarity,
    centre-dot flag (all members) and keep flag (any member).
    """
    fr = lab > 0
    lp = pol[lab]
    comp_key = np.zeros(lab.shape, np.int64)
    for sign, code in ((-1.0, 0), (1.0, 1)):
        sup = union & ((z_blob * np.float32(sign)) >= np.float32(z_min))
        own = (fr & (lp == sign)).astype(np.uint8)
        if gap_px > 0:
            own = cv2.dilate(own, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap_px + 1,) * 2))
        sup |= own > 0
        nc, comp = cv2.connectedComponents(sup.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        sel = fr & (lp == sign)
        comp_key[sel] = comp[sel].astype(np.int64) * 2 + code
    key = comp_key[fr]
    if eligible is not None:  # pieces not eligible for merging: a key of their own
        own_key = (int(comp_key.max()) + 2 + lab[fr].astype(np.int64)) * 2 + (lp[fr] > 0)  # parity = polarity
        key = np.where(eligible[lab[fr]], key, own_key)
    uk, inv = np.unique(key, return_inverse=True)
    m = uk.size + 1
    new_lab = np.zeros(lab.shape, np.int32)
    new_lab[fr] = inv.astype(np.int32) + 1
    pairs = np.unique((inv.astype(np.int64) + 1) * n + lab[fr])  # (new, old) label pairs
    pn, po = pairs // n, pairs % n
    new_pol = np.ones(m, np.float32)
    new_pol[1:] = np.where(uk % 2 == 0, -1.0, 1.0)
    new_dot = np.ones(m, bool)
    np.logical_and.at(new_dot, pn, dot[po])
    new_dot[0] = False
    new_keep = np.zeros(m, bool)
    np.logical_or.at(new_keep, pn, keep[po])
    return new_lab, m, new_pol, new_dot, new_keep


def _line_axes(lab: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Principal-axis line fit of labels ``0..n-1``.

    Returns per label: centroid ``(cx, cy)``, unit direction ``(ux, uy)``, the
    length and width of the bar of whole pixels with the same second moments
    (``sqrt(12 * eigenvalue + 1)``) and the pixel count.
    """
    fy, fx = np.nonzero(lab)
    fl = lab[fy, fx]
    cnt = np.bincount(fl, minlength=n).astype(np.float64)
    c = np.maximum(cnt, 1.0)
    cx = np.bincount(fl, fx, n) / c
    cy = np.bincount(fl, fy, n) / c
    dx, dy = fx - cx[fl], fy - cy[fl]
    sxx = np.bincount(fl, dx * dx, n) / c
    syy = np.bincount(fl, dy * dy, n) / c
    sxy = np.bincount(fl, dx * dy, n) / c
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    half_tr, disc = 0.5 * (sxx + syy), np.sqrt(0.25 * (sxx - syy) ** 2 + sxy * sxy)
    length = np.sqrt(12.0 * (half_tr + disc) + 1.0)  # exact for a bar of whole pixels: var = (n^2 - 1) / 12
    width = np.sqrt(12.0 * np.maximum(half_tr - disc, 0.0) + 1.0)
    return cx, cy, np.cos(theta), np.sin(theta), length, width, cnt


def _link_collinear(
    lab: np.ndarray, n: int, pol: np.ndarray, score: np.ndarray, z_signed: np.ndarray, union: np.ndarray,
    params: DetectionParams, ppu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Join collinear line-like pieces of one polarity into one defect (a scratch found in fragments).

    Two line-like pieces (principal length >= ``link_min_aspect`` x width and
    >= ``link_min_length_um``) are linked when both lie along the chord through
    their centroids (each piece's ends within ``link_max_offset_um`` of it, and
    its direction within ``link_max_angle_deg`` of it unless the piece is so
    short that the offset alone decides), the gap between them along the chord
    is at most ``link_max_gap_um`` (they do not run side by side), and the
    residual along the gap has the pieces' sign (mean z >=
    ``link_min_gap_z``): the line continues there, only fainter.  Linked pieces
    take the lowest label and the gap is bridged by a line as wide as the
    narrower piece (inside ``union``, on unlabelled pixels only).

    Returns the relabelled map and ``roots`` (old label -> surviving label).
    """
    roots = np.arange(n)
    cx, cy, ux, uy, length, width, cnt = _line_axes(lab, n)
    line = (length >= params.link_min_aspect * width) & (length >= params.link_min_length_um * ppu) & (cnt > 0)
    line[0] = False
    ids = np.flatnonzero(line)
    if ids.size < 2:
        return lab, roots
    ids = ids[np.argsort(-score[ids], kind="stable")][: params.link_max_pieces]
    sin_max = math.sin(math.radians(params.link_max_angle_deg))
    gap_max = params.link_max_gap_um * ppu
    off_max = max(params.link_max_offset_um * ppu, params.link_min_offset_px)
    h, w = lab.shape

    def find(a: int) -> int:
        while roots[a] != a:
            roots[a] = roots[roots[a]]
            a = roots[a]
        return a

    bridges = []
    for k, i in enumerate(ids):  # loop over pieces (bounded), never pixels
        for j in ids[k + 1:]:
            if pol[i] != pol[j]:
                continue
            vx, vy = cx[j] - cx[i], cy[j] - cy[i]
            dist = math.hypot(vx, vy)
            gap = dist - 0.5 * (length[i] + length[j])
            if dist == 0 or gap > gap_max or gap < -0.25 * min(length[i], length[j]):
                continue
            vx, vy = vx / dist, vy / dist
            ok = True
            for q in (i, j):
                sin_q = abs(ux[q] * vy - uy[q] * vx)
                if sin_q * 0.5 * length[q] > off_max or (sin_q > sin_max and 0.5 * length[q] * sin_max > off_max):
                    ok = False
                    break
            if not ok:
                continue
            # facing ends along the chord and the residual between them
            si = 1.0 if (ux[i] * vx + uy[i] * vy) >= 0 else -1.0
            sj = -1.0 if (ux[j] * vx + uy[j] * vy) >= 0 else 1.0
            p0 = (cx[i] + si * 0.5 * (length[i] - 1) * ux[i], cy[i] + si * 0.5 * (length[i] - 1) * uy[i])
            p1 = (cx[j] + sj * 0.5 * (length[j] - 1) * ux[j], cy[j] + sj * 0.5 * (length[j] - 1) * uy[j])
            m = max(int(math.ceil(math.hypot(p1[0] - p0[0], p1[1] - p0[1]))), 1) + 1
            xs = np.clip(np.rint(np.linspace(p0[0], p1[0], m)).astype(np.int64), 0, w - 1)
            ys = np.clip(np.rint(np.linspace(p0[1], p1[1], m)).astype(np.int64), 0, h - 1)
            free = lab[ys, xs] == 0
            if free.any() and float(np.mean(z_signed[ys[free], xs[free]])) * pol[i] < params.link_min_gap_z:
                continue
            ri, rj = find(int(i)), find(int(j))
            if ri != rj:
                roots[max(ri, rj)] = min(ri, rj)
            bridges.append((p0, p1, max(int(round(min(width[i], width[j]))), 1)))
    if not bridges:
        return lab, roots
    roots = np.array([find(a) for a in range(n)])
    out = roots[lab].astype(np.int32)
    for p0, p1, thick in bridges:
        # the bridge: pixels closer than thick / 2 to the segment p0-p1 (its box only)
        half = 0.5 * thick
        xa, xb = max(int(math.floor(min(p0[0], p1[0]) - half)), 0), min(int(math.ceil(max(p0[0], p1[0]) + half)) + 1, w)
        ya, yb = max(int(math.floor(min(p0[1], p1[1]) - half)), 0), min(int(math.ceil(max(p0[1], p1[1]) + half)) + 1, h)
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb]
        sx, sy = p1[0] - p0[0], p1[1] - p0[1]
        tt = np.clip(((xx - p0[0]) * sx + (yy - p0[1]) * sy) / max(sx * sx + sy * sy, 1e-9), 0.0, 1.0)
        on = np.hypot(xx - p0[0] - tt * sx, yy - p0[1] - tt * sy) < half
        sub = out[ya:yb, xa:xb]
        hit = sub[on]
        r = int(hit.max()) if hit.size else 0  # the bridge's ends lie on its pieces: their (shared) root
        if r:
            sub[on & (sub == 0) & union[ya:yb, xa:xb]] = r
    return out, roots


def _label_boxes(lab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-label bounding boxes ``(y0, x0, y1, x1)`` (inclusive) of labels ``0..n-1``; ``y1 = -1`` when empty."""
    fy, fx = np.nonzero(lab)
    fl = lab[fy, fx]
    y0 = np.full(n, lab.shape[0], np.int64)
    x0 = np.full(n, lab.shape[1], np.int64)
    y1 = np.full(n, -1, np.int64)
    x1 = np.full(n, -1, np.int64)
    np.minimum.at(y0, fl, fy)
    np.minimum.at(x0, fl, fx)
    np.maximum.at(y1, fl, fy)
    np.maximum.at(x1, fl, fx)
    return y0, x0, y1, x1


def _ring_tol(params: DetectionParams, ppu: float) -> tuple[float, int]:
    """Half-width of a ring's line around its circle (analysis px) and the odd kernel that dilates by it."""
    tol = max(params.ring_tol_um * ppu, params.ring_tol_min_px)
    return tol, 2 * int(math.ceil(tol)) + 1


def _complete_rings(
    lab: np.ndarray, n: int, pol: np.ndarray, eligible: np.ndarray, conf: np.ndarray, z_ring: np.ndarray,
    valid: np.ndarray, r_map: np.ndarray, params: DetectionParams, ppu: float,
) -> np.ndarray:
    """Join the pieces of rings of dirt: each eligible piece seeds a search for a circle through it.

    A dried residue ring is often found as a few arcs, each under the size limits.  The evidence is
    ``z_ring`` at ``ring_z`` of the piece's sign within ``valid`` (plus the eligible pieces of that
    sign).  The best circle through the seed (:func:`dscope.inspection.methods.ring_circle`, radius
    within the ring range, not covered by the seed alone, clear inside) counts when the evidence
    covers ``ring_min_coverage`` of its length, and still does when only the arcs count (evidence
    pieces with ``ring_min_along`` of their pixels on the ring: blobs a circle merely crosses do
    not), when the evidence off the ring stays under ``ring_max_background`` and when it is not
    concentric with the fiber.  The seed, the arcs' pixels on the ring and every eligible piece of
    that sign lying mostly on it become one defect.  Returns the relabelled map (the label count is
    unchanged; absorbed labels become empty).
    """
    fr = lab > 0
    if not fr.any():
        return lab
    y0, x0, y1, x1 = _label_boxes(lab, n)
    peak = _label_max(conf[fr], lab[fr], n)
    order = [int(i) for i in np.argsort(-peak) if i > 0 and eligible[i] and y1[i] >= 0][: params.ring_max_seeds]
    r_min = max(0.5 * params.ring_min_diameter_um * ppu, params.ring_min_radius_px)
    r_max = 0.5 * params.ring_max_diameter_um * ppu
    tol, kt = _ring_tol(params, ppu)
    reach = int(math.ceil(2 * r_max + tol))
    hs, ws = lab.shape
    rng = np.random.default_rng(0)
    out = lab.copy()
    gone = np.zeros(n, bool)
    for i in order:
        if gone[i]:
            continue
        sign = np.float32(pol[i])
        wy0, wy1 = max(int(y0[i]) - reach, 0), min(int(y1[i]) + reach + 1, hs)
        wx0, wx1 = max(int(x0[i]) - reach, 0), min(int(x1[i]) + reach + 1, ws)
        lw = out[wy0:wy1, wx0:wx1]
        same = (lw > 0) & (pol[lw] == sign) & eligible[lw]
        seed = lw == i
        sup = ((z_ring[wy0:wy1, wx0:wx1] * sign >= np.float32(params.ring_z)) & valid[wy0:wy1, wx0:wx1]) | same
        found = M.ring_circle(sup, seed, r_min, r_max, tol, params.ring_hypotheses, params.ring_samples, rng,
                              min_other=params.ring_min_other, max_interior=params.ring_max_interior)
        if found is None:
            continue
        cx, cy, r, cover, bgd = found
        if cover < params.ring_min_coverage or bgd > params.ring_max_background:
            continue
        icx, icy = int(round(cx)) + wx0, int(round(cy)) + wy0
        if 0 <= icx < ws and 0 <= icy < hs and r_map[icy, icx] < params.ring_concentric_frac * r:
            continue  # centred on the fiber: a core or zone boundary left in the residual
        dy = np.arange(wy1 - wy0, dtype=np.float32)[:, None] - np.float32(cy)
        dx = np.arange(wx1 - wx0, dtype=np.float32)[None, :] - np.float32(cx)
        on = np.abs(np.sqrt(dx * dx + dy * dy) - np.float32(r)) <= np.float32(tol)
        # the evidence crossed by the circle must lie along it: pieces of a ring are arcs of it,
        # blobs that a circle merely passes through (texture, the boundary's residual) are not
        nc, comp = cv2.connectedComponents(sup.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        share = np.bincount(comp[on], minlength=nc) / np.maximum(np.bincount(comp.ravel(), minlength=nc), 1)
        arcs = share >= params.ring_min_along
        arcs[0] = False
        # coverage of the circle by the arcs alone (and the seed)
        arc_mask = (arcs[comp] | seed).astype(np.uint8)
        arc_near = cv2.dilate(arc_mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kt, kt))) > 0
        if M.circle_hits(arc_near, np.array([cx]), np.array([cy]), np.array([r]), params.ring_samples).mean() \
                < params.ring_min_coverage:
            continue
        sup = sup & (arcs[comp] | seed)
        # pieces of the same sign lying mostly on the ring join it
        ids = np.unique(lw[same & on])
        for j in ids:
            if j == i:
                continue
            mj = lw == j
            if np.count_nonzero(mj & on) >= 0.5 * np.count_nonzero(mj):
                lw[mj] = i
                gone[j] = True
        lw[sup & on & (lw == 0)] = i
    return out


def empty_detection(roi: tuple[int, int, int, int], noise_sigma: float = 0.0) -> Detection:
    """A detection with no candidates (used when there is nothing to analyse)."""
    _, _, w, h = roi
    return Detection(
        roi_xywh=roi,
        confidence_analysis=np.zeros((h, w), np.float32),
        labels=np.zeros((h, w), np.int32),
        candidates=[],
        noise_sigma=float(noise_sigma),
    )


def detect(
    gray: np.ndarray, geometry: FiberGeometry, zones: list[ZoneMask], params: DetectionParams, px_per_um: float,
    graded_index: bool = False,
) -> Detection:
    """Find defect candidates inside the union of ``zones``.

    Parameters
    ----------
    gray : numpy.ndarray
        Full uint8 grey frame.
    geometry : FiberGeometry
        Fiber centre, cladding radius (semi-major) and ellipse.
    zones : list of ZoneMask
        Zones to analyse, all with the same ``roi_xywh``.
    params : DetectionParams
        Profile settings.
    px_per_um : float
        Image pixels per micrometre along the major axis.
    graded_index : bool
        The fiber type has a graded-index core: its normal centre dot is
        recognised within ``gi_dot_*`` instead of ``center_dot_*``.

    Returns
    -------
    Detection

    Examples
    --------
    >>> from dscope.inspection.types import FiberGeometry, ZoneMask
    >>> from dscope.config import load_config
    >>> p = load_config().profile("deep_inspection").detection
    >>> g = np.full((120, 120), 120, np.uint8)
    >>> geo = FiberGeometry(center_px=(60.0, 60.0), cladding_radius_px=50.0)
    >>> r = np.hypot(*np.meshgrid(np.arange(120) - 60.0, np.arange(120) - 60.0))
    >>> z = ZoneMask("cladding", 0, 125, 0, 50, r <= 50, (0, 0, 120, 120))
    >>> len(detect(g, geo, [z], p, 0.8).candidates)
    0
    """
    roi = _validate(gray, zones)
    if not (px_per_um > 0 and math.isfinite(px_per_um)):
        raise ValueError(f"px_per_um must be a positive number, got {px_per_um}")
    laps: dict[str, float] = {}
    t_last = [time.perf_counter()]

    def lap(stage: str) -> None:  # stage timings for the speed benchmark (no I/O)
        now = time.perf_counter()
        laps[stage] = laps.get(stage, 0.0) + 1e3 * (now - t_last[0])
        t_last[0] = now

    x0, y0, w, h = roi
    crop = gray[y0:y0 + h, x0:x0 + w]  # a view: OpenCV reads strided rows, no copy of the ROI
    # integer downscale factor: bounded work, exact pixel geometry
    kdown = max(1, int(math.ceil(max(w, h) / params.max_analysis_side_px)))
    scale = 1.0 / kdown
    if kdown > 1:
        ws, hs = max(w // kdown, 1), max(h // kdown, 1)
        img = cv2.resize(crop[: hs * kdown, : ws * kdown], (ws, hs), interpolation=cv2.INTER_AREA)
    else:
        img = np.ascontiguousarray(crop)
    hs, ws = img.shape
    ppu = px_per_um * scale
    half = (kdown - 1) / 2.0  # an analysis pixel is the mean of a kdown x kdown block: its centre
    r_map = M.normalized_radius_map(
        (hs, ws), (x0 + half, y0 + half), geometry.center_px, geometry.axis_ratio, geometry.angle_deg, scale
    )
    # zone membership at the analysis scale: from the zone radii (lazy zones are never realised at
    # full resolution), or sampled from masks that were given explicitly
    # (both sample the image pixel at offset kdown // 2 of each block, as the masks' subsampling does)
    r_zone = r_map if kdown % 2 == 1 else M.normalized_radius_map(
        (hs, ws), (x0 + kdown // 2, y0 + kdown // 2), geometry.center_px, geometry.axis_ratio, geometry.angle_deg, scale
    )
    zone_masks = []
    for z in zones:
        if z.realised:
            m = np.asarray(z.mask, bool)
            zone_masks.append(np.ascontiguousarray(m[kdown // 2: hs * kdown: kdown, kdown // 2: ws * kdown: kdown])
                              if kdown > 1 else m)
        else:
            zone_masks.append((r_zone >= np.float32(z.inner_px * scale)) & (r_zone < np.float32(z.outer_px * scale)))
    union = np.zeros((hs, ws), bool)
    zidx = np.zeros((hs, ws), np.int32)
    for k, m in enumerate(zone_masks):
        zidx[m & ~union] = k + 1
        union |= m
    if union.sum() < params.min_tile_px:
        return empty_detection(roi)

    lap("crop_downscale")
    # ---- background model and residual -----------------------------------------------------
    # modelled on the whole ROI (context beyond the zone borders), so that filters see real data there
    context = np.ones_like(union)
    bg, _ = M.radial_profile_background(
        img, r_map, context, params.radial_bin_px, params.min_bin_count,
        params.gain_degree, params.gain_step_px, params.gain_reject_sigma, params.center_flat_um * ppu,
        (params.gain_min, params.gain_max),
    )
    resid = img.astype(np.float32) - bg
    if params.smooth_sigma_px > 0:
        rs = cv2.GaussianBlur(resid, (0, 0), params.smooth_sigma_px)
    else:
        rs = resid
    glass = np.zeros_like(union)
    for z, m in zip(zones, zone_masks):
        if z.name in ("core", "cladding"):
            glass |= m
    if glass.sum() < params.min_tile_px:
        glass = union
    step = params.stats_step_px
    noise_sigma = M.robust_sigma(resid[::step, ::step][glass[::step, ::step]])

    lap("background")
    # ---- groups: zone x tile -------------------------------------------------------------------
    T = params.tile_grid
    rows_u, cols_u = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    bx0, bx1, by0, by1 = cols_u[0], cols_u[-1] + 1, rows_u[0], rows_u[-1] + 1
    tx = np.clip(((np.arange(ws) - bx0) * T) // max(bx1 - bx0, 1), 0, T - 1)
    ty = np.clip(((np.arange(hs) - by0) * T) // max(by1 - by0, 1), 0, T - 1)
    tile = (ty[:, None] * T + tx[None, :]).astype(np.int32)
    n_zones = len(zones)
    groups = (zidx - 1) * T * T + tile  # valid where union
    n_groups = n_zones * T * T
    sub = np.zeros_like(union)
    sub[::step, ::step] = True
    sub &= union
    g_sub = groups[sub]
    z_sub = zidx[sub] - 1
    gi = np.where(union, groups, 0)
    group_zone = np.arange(n_groups) // (T * T)

    sub_idx = np.flatnonzero(sub)

    def zone_stats(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zm, zsg = M.group_robust_stats(v, z_sub, n_zones, params.min_tile_px, (np.nan, np.nan))
        if np.isnan(zm).any():  # a zone with too few samples: the statistics of all analysed pixels
            zm = np.where(np.isnan(zm), np.float32(np.median(v)), zm).astype(np.float32)
            zsg = np.where(np.isnan(zsg), np.float32(M.robust_sigma(v)), zsg).astype(np.float32)
        return zm, zsg

    def zscore(resp: np.ndarray, tiles: bool = True) -> np.ndarray:
        v = resp.ravel().take(sub_idx)
        if not tiles:  # zone-wide statistics only (a region as large as a tile is not normalised away)
            zm, zsg = zone_stats(v)
            zi = np.maximum(zidx - 1, 0)
            out = np.subtract(resp, zm.astype(np.float32)[zi], dtype=np.float32)
            out *= (1.0 / np.maximum(zsg, params.min_sigma)).astype(np.float32)[zi]
            out *= inv_band
            return out
        # zone x tile, with the zone-wide statistics as the fallback of thinly sampled tiles
        med, sig = M.group_robust_stats(v, g_sub, n_groups, params.min_tile_px, (np.nan, np.nan))
        thin = np.isnan(med)  # too few samples in the tile: the zone's statistics
        if thin.any():
            zm, zsg = zone_stats(v)
            med[thin] = zm[group_zone[thin]]
            sig[thin] = zsg[group_zone[thin]]
        inv = (1.0 / np.maximum(sig, params.min_sigma)).astype(np.float32)
        out = np.subtract(resp, med.astype(np.float32)[gi], dtype=np.float32)
        out *= inv[gi]
        out *= inv_band
        return out

    lap("tiles")
    # radial noise profile: stricter where the residual varies more at that radius (boundary)
    sig_rad = M.radial_sigma_profile(rs, r_map, union, params.radial_bin_px, params.min_bin_count, params.sigma_quant)
    v = rs[sub]
    _, zsg = M.group_robust_stats(v, z_sub, n_zones, params.min_tile_px, (0.0, np.nan))
    if np.isnan(zsg).any():
        zsg = np.where(np.isnan(zsg), np.float32(M.robust_sigma(v)), zsg).astype(np.float32)
    zone_sig = np.maximum(zsg, params.min_sigma)[np.maximum(zidx - 1, 0)]
    band_factor = np.maximum(1.0, sig_rad / zone_sig).astype(np.float32)
    inv_band = (1.0 / band_factor).astype(np.float32)
    lap("radial_sigma")
    z_res = zscore(rs)

    r_clad = geometry.cladding_radius_px * scale
    band = np.abs(r_map - np.float32(r_clad)) <= np.float32(params.edge_band_um * ppu)

    lap("stats")
    strengths: dict[str, np.ndarray] = {}
    ms = params.methods
    if "do2mr" in ms:
        strengths["do2mr"] = M.strength(zscore(M.do2mr(rs, params.do2mr_window_px)), ms["do2mr"].z_low, ms["do2mr"].z_high)
        lap("do2mr")
    if "blackhat" in ms:
        k = _odd(params.blackhat_kernel_um * ppu, params.blackhat_kernel_min_px, params.blackhat_kernel_max_px)
        zb = zscore(M.black_hat(rs, k))
        zt = zscore(M.top_hat(rs, k))
        strengths["blackhat"] = M.strength(np.maximum(zb, zt), ms["blackhat"].z_low, ms["blackhat"].z_high)
        lap("blackhat")
    if "gradient" in ms:
        strengths["gradient"] = M.strength(
            zscore(M.morph_gradient(rs, params.gradient_kernel_px)), ms["gradient"].z_low, ms["gradient"].z_high
        )
        lap("gradient")
    zbl_signed = None
    if "blob" in ms:
        kb = _odd(params.blob_window_um * ppu, params.blob_window_min_px, params.blob_window_max_px)
        zbl_signed = zscore(M.local_mean(resid, kb), tiles=False)
        strengths["blob"] = M.strength(np.abs(zbl_signed), ms["blob"].z_low, ms["blob"].z_high)
        lap("blob")
    # line methods run at a coarser "line scale" (bounded cost, kernels <= 11 px)
    f = params.line_downscale
    hl, wl = max(hs // f, 1), max(ws // f, 1)

    def to_line(a: np.ndarray) -> np.ndarray:
        return a if f == 1 else cv2.resize(a[: hl * f, : wl * f], (wl, hl), interpolation=cv2.INTER_AREA)

    def from_line(a: np.ndarray, interp: int) -> np.ndarray:
        if f == 1:
            return a
        up = cv2.resize(a, (wl * f, hl * f), interpolation=interp)
        out = np.zeros((hs, ws), a.dtype)
        out[: hl * f, : wl * f] = up
        return out

    if "lei" in ms:
        L = _odd(params.lei_length_um * ppu / f, params.lei_length_min_px, params.lei_length_max_px)
        kern = M.line_kernels(L, params.lei_side_offset_px, params.lei_orientations)
        lb, ld = M.lei_response(to_line(rs), kern)
        lei = from_line(np.maximum(lb, ld), cv2.INTER_LINEAR)
        strengths["lei"] = M.strength(zscore(lei), ms["lei"].z_low, ms["lei"].z_high)
        lap("lei")
    if "skeleton" in ms:
        ridge = to_line(np.where(union, np.abs(z_res), 0).astype(np.float32)) >= params.skeleton_z
        minlen = max(int(round(params.skeleton_min_length_um * ppu / f)), 3)
        lines = M.skeleton_lines(
            ridge, minlen, params.skeleton_max_gap_px, params.skeleton_hough_threshold,
            params.skeleton_max_points, params.skeleton_max_lines, params.skeleton_thickness_px,
        )
        lines = from_line(lines.astype(np.uint8), cv2.INTER_NEAREST) > 0
        zs = np.where(lines, np.abs(z_res), 0).astype(np.float32)
        strengths["skeleton"] = M.strength(zs, ms["skeleton"].z_low, ms["skeleton"].z_high)
        lap("skeleton")

    if "ridge" in ms:
        resp = _ridge_response(crop, glass, kdown, (x0, y0), geometry, params)
        strengths["ridge"] = M.strength(zscore(resp), ms["ridge"].z_low, ms["ridge"].z_high)
        lap("ridge")
    sigma_wide_px = params.ridge_wide_sigma_um * px_per_um
    if "ridge_wide" in ms and sigma_wide_px >= params.ridge_wide_min_ratio * params.ridge_sigma_px:
        # the line-only Hessian measure (blobs and mottle give 0) at a scale of a few micrometres, on the
        # analysis grid (a wide scratch spans several analysis pixels; full resolution would cost kdown^2
        # more for nothing)
        resp = _ridge_response(crop, glass, kdown, (x0, y0), geometry, params,
                               sigma_px=sigma_wide_px, analysis_scale=True,
                               measure=M.hessian_line)
        strengths["ridge_wide"] = M.strength(zscore(resp), ms["ridge_wide"].z_low, ms["ridge_wide"].z_high)
        lap("ridge_wide")

    # ---- fusion (noisy-OR) ---------------------------------------------------------------------
    miss = np.ones((hs, ws), np.float32)
    for name, s in strengths.items():
        s[~union] = 0.0
        if name in EDGE_METHODS and params.edge_band_suppression < 1.0:
            s[band] *= np.float32(params.edge_band_suppression)
        miss *= 1.0 - np.float32(ms[name].weight) * s
    conf = (1.0 - miss).astype(np.float32)
    conf[~union] = 0.0

    lap("fusion")
    # ---- segmentation --------------------------------------------------------------------------
    grow = (conf >= params.confidence_low).astype(np.uint8)
    n, lab = cv2.connectedComponents(grow, connectivity=8, ltype=cv2.CV_32S)
    labels_s = np.zeros((hs, ws), np.int32)
    cands_info = []
    if n > 1:
        fg = lab > 0
        lab_fg = lab[fg]
        peak_conf = _label_max(conf[fg], lab_fg, n)
        keep = peak_conf >= params.confidence_threshold
        keep[0] = False
        # polarity of the region = sign of its most extreme residual (a small pit inside a wide
        # low-confidence halo of noise is not outvoted by the halo's sum)
        zpos = _label_max(z_res[fg], lab_fg, n)
        zneg = _label_max(-z_res[fg], lab_fg, n)
        pol = np.where(zneg > zpos, -1.0, 1.0).astype(np.float32)
        signed = rs * pol[lab]
        peak = _label_max(signed[fg], lab_fg, n)
        zsigned = z_res * pol[lab]
        ref_peak = peak[lab]
        if params.segment_local_px > 0:
            # half-maximum against the LOCAL peak (within segment_local_px), capped by the region's
            # peak: a weak pit next to a strong chip keeps its own half-maximum mask
            kl = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * params.segment_local_px + 1,) * 2)
            ref_peak = np.minimum(ref_peak, cv2.dilate(np.where(lab > 0, signed, 0).astype(np.float32), kl))
        refined = keep[lab] & (signed >= params.segment_fraction * ref_peak) & (zsigned >= params.segment_min_z)
        if params.piece_min_z > 0 and refined.any():
            # every connected piece of the refined mask needs evidence of its own: noise specks in the
            # halo of a strong defect pass the local half-maximum and would join it (and inflate its
            # enclosing circle), but their own residual peak is low, absolutely and against the region's
            nc, cl = cv2.connectedComponents(refined.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
            if nc > 2:
                fgc = cl > 0
                cl_fg = cl[fgc]
                region_z = _label_max(zsigned[fg], lab_fg, n)
                cz = _label_max(zsigned[fgc], cl_fg, nc)
                creg = _label_max(region_z[lab[fgc]], cl_fg, nc)
                weak = (cz < np.float32(params.piece_min_z)) & (cz < np.float32(params.piece_min_rel_z) * creg)
                weak[0] = False
                if weak.any():
                    refined &= ~weak[cl]
        lab_r = np.where(refined, lab, 0)
        # a small dark/bright spot exactly at the centre is the graded-index dot (normal); judged on the
        # whole region, before it is split into pieces
        dot_offset_um, dot_diam_um = ((params.gi_dot_max_offset_um, params.gi_dot_max_diameter_um) if graded_index
                                      else (params.center_dot_max_offset_um, params.center_dot_max_diameter_um))
        dot = _centre_dot(lab_r, n, r_map, dot_offset_um * ppu, dot_diam_um * ppu)
        if params.split_gap_px > 0 and refined.any():
            # pieces of a refined region further apart than the gap are separate defects (a weak
            # pit is not swallowed by a strong neighbour through their shared low-confidence halo)
            kg = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * params.split_gap_px + 1,) * 2)
            near_mask = cv2.dilate(refined.astype(np.uint8), kg)
            _, near = cv2.connectedComponents(near_mask, connectivity=8, ltype=cv2.CV_32S)
            key = near[refined].astype(np.int64) * n + lab_r[refined]
            uk, inv = np.unique(key, return_inverse=True)
            parent = np.concatenate([[0], (uk % n).astype(np.int64)])
            lab_r = np.zeros((hs, ws), np.int32)
            lab_r[refined] = inv.astype(np.int32) + 1
            n = uk.size + 1
            pol = pol[parent]
            dot = dot[parent]
            fg_r = lab_r > 0
            keep = _label_max(conf[fg_r], lab_r[fg_r], n) >= params.confidence_threshold
            keep[0] = False
        if params.merge_blob_z > 0 and zbl_signed is not None and n > 2:
            # only soft pieces (mean blob strength >= merge_min_blob_strength) merge: thin lines keep
            # their own pieces
            fr_m = lab_r > 0
            cnt_m = np.maximum(np.bincount(lab_r[fr_m], minlength=n), 1)
            blob_mean = np.bincount(lab_r[fr_m], weights=strengths["blob"][fr_m], minlength=n) / cnt_m
            lab_r, n, pol, dot, keep = _merge_by_support(lab_r, n, pol, dot, keep, zbl_signed, union,
                                                         params.merge_blob_z, params.split_gap_px,
                                                         blob_mean >= params.merge_min_blob_strength)
        if params.ring_z > 0 and n > 1 and params.ring_max_seeds > 0:
            # only pieces as wide as a residue ring's rim make rings: a curved scratch and a crack beside
            # it lie on a circle too, and their pixels are no ring's evidence
            fr_g = lab_r > 0
            dt = cv2.distanceTransform(fr_g.astype(np.uint8), cv2.DIST_L2, 3)
            wide = 2.0 * _label_max(dt[fr_g], lab_r[fr_g], n) >= np.float32(params.ring_min_piece_width_um * ppu)
            wide[0] = False
            if (keep & ~dot & wide).any():  # the ring evidence is built only when a piece can seed a ring
                sr = params.ring_smooth_um * ppu
                z_ring = zscore(cv2.GaussianBlur(resid, (0, 0), sr) if sr >= 0.3 else resid, tiles=False)
                _, kt = _ring_tol(params, ppu)
                lines = cv2.dilate((fr_g & ~wide[lab_r]).astype(np.uint8),
                                   cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kt, kt))) > 0
                lab_r = _complete_rings(lab_r, n, pol, keep & ~dot & wide, conf, z_ring, union & ~band & ~lines,
                                        r_map, params, ppu)
        counts = np.bincount(lab_r.ravel(), minlength=n)
        min_area = max(params.min_area_px, int(math.ceil(params.min_area_um2 * ppu * ppu)))
        # thin arcs lying on the cladding boundary are the boundary itself (rim line, edge misfit)
        in_band = np.bincount(lab_r[band].ravel(), minlength=n)
        rim = in_band >= params.rim_band_fraction * np.maximum(counts, 1)
        ok = (counts >= min_area) & keep & ~rim & ~dot
        ok[0] = False
        newid = np.zeros(n, np.int32)
        kept_ids = np.flatnonzero(ok)
        k_n = kept_ids.size
        newid[kept_ids] = np.arange(1, k_n + 1, dtype=np.int32)
        labels_s = newid[lab_r]
        pol_k = np.concatenate([[1.0], pol[kept_ids]]).astype(np.float32)
        if k_n > 1 and params.link_max_gap_um > 0:
            fg_k = labels_s > 0
            score_k = _label_max(conf[fg_k], labels_s[fg_k], k_n + 1)
            labels_s, roots = _link_collinear(labels_s, k_n + 1, pol_k, score_k, z_res, union, params, ppu)
            alive = np.flatnonzero(roots[1:] == np.arange(1, k_n + 1)) + 1
            if alive.size < k_n:  # renumber the survivors 1..k
                ren = np.zeros(k_n + 1, np.int32)
                ren[alive] = np.arange(1, alive.size + 1, dtype=np.int32)
                labels_s = ren[labels_s]
                pol_k = np.concatenate([[1.0], pol_k[alive]]).astype(np.float32)
                k_n = alive.size
        if k_n:
            fg2 = labels_s > 0
            l2 = labels_s[fg2]
            cnt2 = np.maximum(np.bincount(l2, minlength=k_n + 1), 1)
            score = _label_max(conf[fg2], l2, k_n + 1)
            ev = {name: np.bincount(l2, weights=s[fg2], minlength=k_n + 1) / cnt2 for name, s in strengths.items()}
            for j in range(1, k_n + 1):
                cands_info.append((j, "dark" if pol_k[j] < 0 else "bright", float(score[j]),
                                   {name: float(ev[name][j]) for name in ev}))

    lap("segmentation")
    # ---- back to ROI resolution ----------------------------------------------------------------
    # bounding boxes come from the analysis grid; labels are painted box by box (nearest-neighbour
    # upsampling of each region only: no full-ROI resize or scan of the labels)
    candidates: list[Candidate] = []
    labels = np.zeros((h, w), np.int32) if kdown > 1 else labels_s
    if cands_info:
        # per-label bounding boxes from the (few) foreground pixels of the analysis grid
        nl = int(labels_s.max()) + 1
        bb_y0, bb_x0, bb_y1, bb_x1 = _label_boxes(labels_s, nl)
    for lab_id, polarity, score, ev in cands_info:
        if lab_id >= nl or bb_y1[lab_id] < 0:
            continue
        sl = (slice(int(bb_y0[lab_id]), int(bb_y1[lab_id]) + 1), slice(int(bb_x0[lab_id]), int(bb_x1[lab_id]) + 1))
        ya, yb = sl[0].start * kdown, min(sl[0].stop * kdown, h)
        xa, xb = sl[1].start * kdown, min(sl[1].stop * kdown, w)
        if kdown > 1:
            m = labels_s[sl] == lab_id
            m_up = np.repeat(np.repeat(m, kdown, axis=0), kdown, axis=1)[: yb - ya, : xb - xa]
            labels[ya:yb, xa:xb][m_up] = lab_id
        candidates.append(Candidate(label=lab_id, bbox_xywh=(x0 + xa, y0 + ya, xb - xa, yb - ya), evidence=ev,
                                    polarity=polarity, score=score))
    lap("upsample_candidates")
    return Detection(
        roi_xywh=roi,
        confidence_analysis=conf.astype(np.float32, copy=False),
        labels=labels.astype(np.int32, copy=False),
        candidates=candidates,
        noise_sigma=float(noise_sigma),
        background=bg.astype(np.float32),
        analysis_scale=float(scale),
        diagnostics={"methods": sorted(strengths), "n_regions": int(n - 1), "timings_ms": laps,
                     "analysis_shape": (hs, ws)},
    )
