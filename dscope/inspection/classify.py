"""Characterization (measurement) and classification of detected defects (issue 4).

:func:`characterize` turns every candidate region of a :class:`Detection` into a
:class:`dscope.inspection.types.Defect`: shape features, local contrast, IEC
size, zone, and a class from feature rules whose limits live in the
``classification`` section of the configuration.

Measurement frame: lengths, widths, diameters and areas are measured in the
fiber's circular frame (:meth:`FiberGeometry.to_normalized`, pixels of the
major axis), so elliptical end faces (non-square pixels, angled polish) are
measured correctly; the ``_um`` twins are those values times ``um_per_px``.
Positions (centroid, contour, bounding box) stay in image pixels.

Class rules (in order):

1. touching the cladding edge, mostly inside the glass and not line-like:
   ``chip`` (missing glass breaking the rim) unless soft-edged, then
   ``contamination`` (a particle on the edge);
2. *line-like* (``skeleton_length**2 / area``, aspect ratio and length above
   their limits): ``crack`` if the skeleton is tortuous, branched or far from
   its convex hull (jagged), else ``scratch``;
3. soft-edged (boundary gradient / contrast below the limit): ``contamination``;
4. compact, round and solid: ``pit``;
5. anything else (irregular, amorphous): ``contamination``.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from dscope.inspection.detect import Detection
from dscope.inspection.methods import MAD_TO_SIGMA
from dscope.inspection.trees import TreeEnsemble
from dscope.inspection.types import Defect, FiberGeometry, Scale, ZoneMask
from dscope.params import StrictModel

#: Letter of each class in defect ids.
CLASS_LETTERS = {"scratch": "S", "pit": "P", "chip": "H", "crack": "K", "contamination": "C"}


#: Inputs of the logistic classifier, computed by :func:`feature_vector` (scale-free or in um).
LOGISTIC_FEATURES: tuple[str, ...] = (
    "log_elongation", "log_aspect_ratio", "solidity", "log_tortuosity", "log_branch_points", "circularity",
    "sharpness", "touches_edge", "outside_fraction", "dark", "log_length_um", "log_width_um", "log_diameter_um",
    "log_cnr", "log_jaggedness", "orientation_dev",
)


def feature_vector(f: dict) -> list[float]:
    """The :data:`LOGISTIC_FEATURES` of one defect's feature dictionary."""
    lg = lambda v: math.log(max(float(v), 1e-3))  # noqa: E731
    return [
        lg(f["elongation"]), lg(f["aspect_ratio"]), float(f["solidity"]), lg(f["tortuosity"]),
        math.log1p(float(f["branch_points"])), float(f["circularity"]), float(f["sharpness"]),
        float(bool(f["touches_edge"])), float(f["outside_fraction"]), float(f["polarity"] == "dark"),
        lg(f["length_um"]), lg(f["width_um"]), lg(f["diameter_um"]), lg(f["cnr"]),
        math.log(max(float(f.get("jaggedness", 0.0)), 0.01)),
        float(f.get("orientation_dev_deg", 0.0)) / 90.0,
    ]


class LogisticModel(StrictModel):
    """Multinomial logistic regression on standardised :data:`LOGISTIC_FEATURES` (trained offline)."""

    features: list[str]
    classes: list[str]
    mean: list[float]
    std: list[float]
    weights: list[list[float]]  # n_features x n_classes
    bias: list[float]
    trained_on: str = ""

    @model_validator(mode="after")
    def _shapes(self):
        nf, nc = len(self.features), len(self.classes)
        if list(self.features) != list(LOGISTIC_FEATURES):
            raise ValueError(f"features must be {list(LOGISTIC_FEATURES)}")
        if not set(self.classes) <= set(CLASS_LETTERS):
            raise ValueError(f"unknown classes in {self.classes}")
        if len(self.mean) != nf or len(self.std) != nf or len(self.weights) != nf or len(self.bias) != nc:
            raise ValueError("logistic model dimensions do not match its feature and class lists")
        if any(len(row) != nc for row in self.weights):
            raise ValueError("every weights row needs one value per class")
        return self


def _offsets(classes: list[str], offsets: dict[str, float] | None) -> np.ndarray:
    return np.array([float((offsets or {}).get(c, 0.0)) for c in classes])


def classify_trees(f: dict, model: TreeEnsemble, offsets: dict[str, float] | None = None) -> str:
    """Class with the highest boosted-trees score (the trees' features must be :data:`LOGISTIC_FEATURES`).

    ``offsets`` (class -> log-odds) are added to the scores first (a cost-sensitive decision).
    """
    sc = np.asarray(model.scores(feature_vector(f)), np.float64).ravel() + _offsets(model.classes, offsets)
    return model.classes[int(np.argmax(sc))]


def classify_logistic(f: dict, model: LogisticModel, offsets: dict[str, float] | None = None) -> str:
    """Class with the highest logistic score (plus ``offsets``, class -> log-odds)."""
    z = (np.asarray(feature_vector(f)) - np.asarray(model.mean)) / np.asarray(model.std)
    logits = z @ np.asarray(model.weights) + np.asarray(model.bias) + _offsets(model.classes, offsets)
    return model.classes[int(np.argmax(logits))]


class ClassificationParams(StrictModel):
    """Section ``classification``: measurement settings, class limits and confidence calibration."""

    edge_band_um: float = Field(ge=0, description="a defect within this distance of the cladding boundary touches it")
    ring_gap_px: int = Field(ge=0, le=20, description="gap between a defect and its local-background ring")
    ring_width_px: int = Field(ge=1, le=30, description="width of the local-background ring")
    ring_edge_exclusion_um: float = Field(default=0.0, ge=0, le=50, description="min_cnr gate: a defect below "
                                          "min_cnr against its whole ring is kept when its pixels on either side "
                                          "of the cladding boundary reach it against the ring pixels on that "
                                          "side, farther than this from it (0 = whole ring only); features use "
                                          "the whole ring")
    min_ring_px: int = Field(ge=3, description="fewer ring pixels: the detection's glass noise is used instead")
    sharpness_smooth_sigma_px: float = Field(gt=0, le=3, description="Gaussian smoothing before the boundary gradient")
    depth_percentile: float = Field(ge=50, le=100, description="percentile of a line's mask values taken as its depth")
    profile_margin_px: int = Field(ge=0, le=10, description="cross-section integration reaches this far past the mask")
    pixel_extent_px: float = Field(ge=0, le=2, description="added to centre-to-centre sizes (pixel footprint)")
    min_noise_sigma: float = Field(gt=0, description="floor of the local noise used for contrast-to-noise")
    min_cnr: float = Field(ge=0, description="defects below this contrast-to-noise against their own local "
                           "background are not reported (haze, mottling); not applied on the cladding edge band")
    class_score_offsets: dict[str, float] = Field(default_factory=dict, description="class -> log-odds added "
                                                  "to the learnt classifier's scores before the decision "
                                                  "(cost-sensitive: a crack reported as a scratch passes a "
                                                  "connector that must fail, the reverse only costs a re-clean)")
    shading_min_diameter_um: float = Field(default=0.0, ge=0, description="shading gate: a faint region "
                                           "(contrast-to-noise under shading_max_cnr) at least this wide that none "
                                           "of shading_methods supports (mean strength under shading_max_support) is "
                                           "a smooth swell of the background, not dirt: the region path sees "
                                           "extended dirt and the edge paths see its rim, while the top-hat and "
                                           "line paths answer to any broad bump (0 = off)")
    shading_max_cnr: float = Field(default=4.0, ge=0, description="the shading gate applies below this")
    shading_methods: list[str] = Field(default_factory=lambda: ["do2mr", "gradient", "blob"],
                                       description="methods whose support makes a faint wide region real")
    shading_max_support: float = Field(default=0.1, ge=0, le=1, description="mean strength under which a "
                                       "method does not support the region")
    skeleton_smooth_px: float = Field(gt=0, le=3, description="polygon tolerance smoothing the skeleton before its length")
    orientation_sigma_px: float = Field(default=1.0, gt=0, le=3, description="Gaussian scale of the Hessian "
                                        "giving a line's local direction (orientation_dev_deg feature)")
    skeleton_max_halfwidth_px: float = Field(default=0.0, ge=0, le=50, description="regions wider than twice "
                                             "this are thinned on a binned mask (bounded cost; 0 = never)")
    line_min_elongation: float = Field(gt=1, description="skeleton_length^2 / area at which a defect is line-like")
    line_min_length_um: float = Field(ge=0, description="shortest line-like defect (shorter: compact)")
    line_min_aspect_ratio: float = Field(ge=1, description="minAreaRect length / width of a line-like defect")
    line_min_sharpness: float = Field(ge=0, description="line-like defects softer than this are contamination")
    crack_min_tortuosity: float = Field(gt=1, description="skeleton length / end-to-end distance of a crack")
    crack_min_branches: int = Field(ge=1, description="skeleton branch points that make a line a crack")
    crack_max_solidity: float = Field(ge=0, le=1, description="a line this far from its convex hull is jagged: a crack")
    chip_max_outside_fraction: float = Field(ge=0, le=1, description="share of a chip's area beyond the boundary")
    chip_min_sharpness: float = Field(ge=0, description="edge sharpness below which an edge defect is dirt")
    chip_max_elongation: float = Field(gt=0, description="edge defects more line-like than this are lines")
    chip_max_aspect_ratio: float = Field(ge=1, description="edge defects more elongated than this are lines")
    contamination_max_sharpness: float = Field(ge=0, description="compact defects softer than this are contamination")
    pit_min_circularity: float = Field(ge=0, le=1)
    pit_min_solidity: float = Field(ge=0, le=1)
    pit_max_aspect_ratio: float = Field(ge=1)
    pit_dark_only: bool = Field(description="pits (missing glass) are darker than the background")
    classifier: Literal["rules", "logistic", "trees"] = Field(
        description="feature rules, the trained logistic model, or the trained boosted trees (trees_model)"
    )
    logistic: LogisticModel | None = Field(default=None, description="weights from benchmarks/train_classifier.py")
    trees_model: str | None = Field(default=None, description="file of boosted trees (benchmarks/train_classifier.py "
                                    "--model trees): a path, or a name in models/ beside the config file (else in "
                                    "the shipped config folder); needed when classifier is 'trees'")
    trees: TreeEnsemble | None = Field(default=None, exclude=True, description="the loaded trees_model (set by "
                                       "dscope.config.load_config, not written in the file)")
    logistic_shape_guard: bool = Field(default=False, description="a trained classifier's class (logistic or "
                                       "trees) the defect's shape rules out is replaced by the feature rules' "
                                       "class (see shape_allows): "
                                       "scratch/crack need a line (elongation >= line_min_elongation, or a short "
                                       "straight piece: elongation >= guard_short_line_min_elongation and aspect "
                                       ">= line_min_aspect_ratio), a chip needs the cladding edge and elongation "
                                       "below chip_max_elongation")
    guard_short_line_min_elongation: float = Field(default=1.5, gt=0, description="least skeleton_length^2 / "
                                                   "area of a short straight line piece (with the aspect ratio)")
    confidence_calibration: list[tuple[float, float]] = Field(
        min_length=2, description="[detection score, share real] knots; confidence = piecewise-linear interpolation"
    )

    @field_validator("class_score_offsets")
    @classmethod
    def _known_classes(cls, v):
        unknown = sorted(set(v) - set(CLASS_LETTERS))
        if unknown:
            raise ValueError(f"unknown classes {unknown}; classes are {sorted(CLASS_LETTERS)}")
        return v

    @field_validator("confidence_calibration")
    @classmethod
    def _monotone(cls, v):
        xs = [a for a, _ in v]
        if any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError("confidence_calibration scores must increase strictly")
        if any(not (0 <= p <= 1) or not (0 <= s <= 1) for s, p in v):
            raise ValueError("confidence_calibration values must lie in [0, 1]")
        return v


def _linear_map(geometry: FiberGeometry) -> np.ndarray:
    """2x2 matrix of the (linear) image -> circular-frame map."""
    c = np.asarray(geometry.center_px, np.float64)
    pts = np.stack([c + (1.0, 0.0), c + (0.0, 1.0)])
    return geometry.to_normalized(pts).T  # columns = images of e_x, e_y


def _shift(s: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = s[y + dy, x + dx]`` (False outside)."""
    out = np.zeros_like(s)
    H, W = s.shape
    ys0, ys1 = max(0, -dy), min(H, H - dy)
    xs0, xs1 = max(0, -dx), min(W, W - dx)
    out[ys0:ys1, xs0:xs1] = s[ys0 + dy:ys1 + dy, xs0 + dx:xs1 + dx]
    return out


#: The 8 neighbours in circular order (dy, dx).
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


_K3 = np.ones((3, 3), np.uint8)
_NB8 = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.float32)


def _neighbour_count(s: np.ndarray) -> np.ndarray:
    """Number of set 8-neighbours of every pixel (outside the patch counts as unset)."""
    return cv2.filter2D(s.astype(np.uint8), cv2.CV_16S, _NB8, borderType=cv2.BORDER_CONSTANT)


def _skeleton_features(
    mask: np.ndarray, A: np.ndarray, smooth_px: float, max_halfwidth_px: float = 0.0
) -> tuple[float, float, int, np.ndarray, float]:
    """Skeleton length (circular frame), tortuosity, branch count, skeleton mask, jaggedness.

    Length counts 4-neighbour steps and only those diagonal steps that are not
    the hypotenuse of an L (so staircases are not counted twice).  Branch
    points are skeleton pixels with a crossing number >= 3, counted once per
    connected cluster.  Tortuosity = length / largest end-to-end distance.
    """
    m8 = mask.astype(np.uint8)
    half_w = float(cv2.distanceTransform(np.pad(m8, 1), cv2.DIST_L2, 3).max())
    if max_halfwidth_px > 0 and half_w > max_halfwidth_px:
        # wide region (blob, chip): its skeleton is found on a binned mask (bounded thinning cost)
        f = int(math.ceil(half_w / max_halfwidth_px))
        hb, wb = max(m8.shape[0] // f, 1), max(m8.shape[1] // f, 1)
        small = cv2.resize(m8[: hb * f, : wb * f].astype(np.float32), (wb, hb), interpolation=cv2.INTER_AREA)
        m8 = (small >= 0.5).astype(np.uint8)
        if not m8.any():
            m8 = (small > 0).astype(np.uint8)
        A = A * f
        half_w /= f
    skel = cv2.ximgproc.thinning(m8 * 255) > 0
    if not skel.any():
        return 0.0, 1.0, 0, skel, 0.0
    # prune spurs shorter than the half-width: peel end pixels k times, then regrow the kept ends
    k = int(math.ceil(half_w))
    pruned = skel.copy()
    removed = []
    for _ in range(k):  # k ~ half-width in px, a handful of vectorised passes
        cnt = _neighbour_count(pruned)
        end = pruned & (cnt <= 1)
        if not end.any() or np.count_nonzero(pruned) - np.count_nonzero(end) < 2:
            break
        pruned &= ~end
        removed.append(end)
    if removed:
        # regrow along the removed pixels only from the surviving main-path ends
        for _ in range(len(removed)):
            ends_now = pruned & (_neighbour_count(pruned) <= 1)
            near_end = cv2.dilate(ends_now.astype(np.uint8), _K3) > 0
            pruned |= skel & near_end & ~pruned
        skel = pruned
    nb = [_shift(skel, dy, dx) for dy, dx in _RING]
    # length: trace the skeleton's outline (each branch walked twice), smooth it, halve it
    cnts, _ = cv2.findContours(skel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    length = 0.0
    for c in cnts:  # one per skeleton component (usually 1)
        cn = (A @ c.reshape(-1, 2).T.astype(np.float64)).T.astype(np.float32)
        poly = cv2.approxPolyDP(cn.reshape(-1, 1, 2), smooth_px, True)
        length += cv2.arcLength(poly, True) / 2.0
    count = sum(n.astype(np.int8) for n in nb)
    crossing = sum((~nb[i] & nb[(i + 1) % 8]).astype(np.int8) for i in range(8))
    ends = skel & ((count == 1) | ((count == 2) & (crossing == 1)))
    bp = (skel & (crossing >= 3)).astype(np.uint8)
    branches = int(cv2.connectedComponents(bp, connectivity=8)[0] - 1) if bp.any() else 0
    ys, xs = np.nonzero(ends)
    if ys.size >= 2:
        pts = (A @ np.stack([xs, ys]).astype(np.float64)).T[:64]
        d = float(np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max())
    else:
        ys, xs = np.nonzero(skel)
        pts = (A @ np.stack([xs, ys]).astype(np.float64)).T
        d = float(np.sqrt(((pts.max(0) - pts.min(0)) ** 2).sum())) if pts.shape[0] > 1 else 0.0
    tort = length / d if d > 0 else 1.0
    return float(length), max(float(tort), 1.0), branches, skel, _jaggedness(skel, A, 2.0 * half_w)


def _skeleton_parabola(skel: np.ndarray, A: np.ndarray):
    """Parabola fitted to a skeleton along its principal axis, in the circular frame (``A``).

    Returns ``(vt, s, v, span, coef)``: the principal axes (rows of ``vt``),
    every pixel's position along the first axis over the span (``s``) and
    across it (``v``), the span, and ``v ~ polyval(coef, s)`` (degree 2);
    ``None`` for fewer than 6 pixels or a zero span.  Pixels are those of
    ``np.nonzero(skel)``, in that order.
    """
    ys, xs = np.nonzero(skel)
    if xs.size < 6:
        return None
    pts = (A @ np.stack([xs, ys]).astype(np.float64)).T
    pts -= pts.mean(0)
    _, _, vt = np.linalg.svd(pts, full_matrices=False)
    u, v = pts @ vt[0], pts @ vt[1]
    span = float(np.ptp(u))
    if span <= 0:
        return None
    return vt, u / span, v, span, np.polyfit(u / span, v, 2)


def _jaggedness(skel: np.ndarray, A: np.ndarray, width_px: float) -> float:
    """How far a line's skeleton strays from a smooth curve, in line widths.

    The skeleton (mapped by ``A`` to the circular frame) is fitted with a
    parabola along its principal axis; the RMS distance of its pixels from it,
    over ``max(width_px, 1)``, is returned.  A straight or bowed scratch lies
    on the parabola within the pixel grid (~0.3 px); a crack's kinks and
    branches leave it.  Fewer than 6 skeleton pixels: 0.

    Examples
    --------
    >>> sk = np.zeros((9, 40), bool); sk[4, 2:38] = True
    >>> _jaggedness(sk, np.eye(2), 1.0) < 0.05
    True
    >>> zz = np.zeros((9, 40), bool); xs = np.arange(2, 38); zz[np.where((xs // 6) % 2, 2, 6), xs] = True
    >>> _jaggedness(zz, np.eye(2), 1.0) > 1.0
    True
    """
    fit = _skeleton_parabola(skel, A)
    if fit is None:
        return 0.0
    _, s, v, _, coef = fit
    resid = v - np.polyval(coef, s)
    return float(np.sqrt(np.mean(resid * resid)) / max(width_px, 1.0))


def _orientation_deviation(skel: np.ndarray, res: np.ndarray, A: np.ndarray, sigma_px: float) -> float:
    """RMS angle (degrees) between a line's local ridge direction and its smooth fitted course.

    The local direction at every skeleton pixel is that of the Hessian of the
    smoothed contrast patch ``res`` (defect positive): the eigenvector of its
    larger eigenvalue, i.e. along the ridge.  The smooth course is the
    parabola fitted to the skeleton along its principal axis (circular frame,
    ``A``; :func:`_skeleton_parabola`, as for :func:`_jaggedness`).  A straight or bowed scratch follows its
    parabola (deviation from noise only); a crack's segments turn by tens of
    degrees at every kink even where the detected mask is too wide for its
    skeleton to show them.  ``skel`` may be coarser than ``res`` (binned
    wide region): ``res`` is resampled to it.  Fewer than 6 skeleton pixels: 0.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:21, 0:60].astype(np.float32)
    >>> line = np.exp(-((yy - 10) ** 2) / 2.0)
    >>> sk = np.zeros((21, 60), bool); sk[10, 5:55] = True
    >>> _orientation_deviation(sk, line, np.eye(2), 1.0) < 1.0
    True
    >>> zz = np.where((xx // 10) % 2 == 0, 6 + (xx % 10), 16 - (xx % 10))  # zig-zag, 45 degree segments
    >>> zig = np.exp(-((yy - zz) ** 2) / 2.0).astype(np.float32)
    >>> skz = np.zeros((21, 60), bool); skz[zz[0, 5:55].astype(int), np.arange(5, 55)] = True
    >>> _orientation_deviation(skz, zig, np.eye(2), 1.0) > 25.0
    True
    """
    fit = _skeleton_parabola(skel, A)
    if fit is None:
        return 0.0
    vt, s, _, span, (c2, c1, _) = fit
    ys, xs = np.nonzero(skel)
    r = res.astype(np.float32)
    if r.shape != skel.shape:
        r = cv2.resize(r, (skel.shape[1], skel.shape[0]), interpolation=cv2.INTER_AREA)
    sm = cv2.GaussianBlur(r, (0, 0), sigma_px)
    # Sobel's 2nd and mixed kernels carry the same factor 4: the angle needs no rescaling of hxy
    hxx = cv2.Sobel(sm, cv2.CV_32F, 2, 0, ksize=3)[ys, xs]
    hyy = cv2.Sobel(sm, cv2.CV_32F, 0, 2, ksize=3)[ys, xs]
    hxy = cv2.Sobel(sm, cv2.CV_32F, 1, 1, ksize=3)[ys, xs]
    theta = 0.5 * np.arctan2(2.0 * hxy, hxx - hyy)  # direction of the larger eigenvalue: along a ridge
    d = A @ np.stack([np.cos(theta), np.sin(theta)]).astype(np.float64)
    tangent = np.arctan((2.0 * c2 * s + c1) / span)
    local = np.arctan2(vt[1] @ d, vt[0] @ d)
    dev = (local - tangent + np.pi / 2) % np.pi - np.pi / 2  # line directions: modulo 180 degrees
    return float(np.degrees(np.sqrt(np.mean(dev * dev))))


def calibrate_confidence(score: float, table: list[tuple[float, float]]) -> float:
    """Map a fused detection score to a calibrated confidence (piecewise linear, clipped to [0, 1]).

    Examples
    --------
    >>> calibrate_confidence(0.5, [(0.0, 0.0), (1.0, 1.0)])
    0.5
    """
    xs = [a for a, _ in table]
    ys = [b for _, b in table]
    return float(np.clip(np.interp(score, xs, ys), 0.0, 1.0))


def is_line_like(f: dict, params: ClassificationParams) -> bool:
    """Whether the feature dictionary describes a line (long, thin): the precondition of scratch and crack."""
    return (
        f["elongation"] >= params.line_min_elongation
        and f["aspect_ratio"] >= params.line_min_aspect_ratio
        and f["length_um"] >= params.line_min_length_um
    )


def shape_allows(cls: str, f: dict, params: ClassificationParams) -> bool:
    """Whether class ``cls`` is physically possible for a defect of this shape.

    Scratches and cracks are lines: either clearly elongated along their skeleton
    (``skeleton_length**2 / area >= line_min_elongation``; a tortuous crack has a
    squat bounding rectangle, so the aspect ratio is not asked for), or a short
    straight piece (elongation at least ``guard_short_line_min_elongation`` AND a
    bounding-rectangle aspect ratio of at least ``line_min_aspect_ratio``).  A chip
    is missing glass at the cladding edge: it touches the edge and is not a long
    line (elongation below ``chip_max_elongation``).  Pits and contamination have
    no shape precondition.

    Examples
    --------
    >>> from dscope.config import load_config
    >>> p = load_config().classification
    >>> f = dict(elongation=1.0, aspect_ratio=1.2, length_um=3.0, touches_edge=False)
    >>> shape_allows("crack", f, p), shape_allows("chip", f, p), shape_allows("pit", f, p)
    (False, False, True)
    """
    if cls in ("scratch", "crack"):
        return f["elongation"] >= params.line_min_elongation or (
            f["elongation"] >= params.guard_short_line_min_elongation
            and f["aspect_ratio"] >= params.line_min_aspect_ratio
        )
    if cls == "chip":
        return bool(f["touches_edge"]) and f["elongation"] < params.chip_max_elongation
    return True


def classify_features(f: dict, params: ClassificationParams) -> str:
    """Class of one defect from its feature dictionary (rules with limits from the config).

    Examples
    --------
    >>> from dscope.config import load_config
    >>> p = load_config().classification
    >>> f = dict(elongation=40.0, length_um=50.0, tortuosity=1.0, branch_points=0, touches_edge=False,
    ...          outside_fraction=0.0, sharpness=0.3, circularity=0.1, solidity=0.9, aspect_ratio=20.0, polarity="dark")
    >>> classify_features(f, p)
    'scratch'
    """
    if (
        f["touches_edge"]
        and f["outside_fraction"] <= params.chip_max_outside_fraction
        and f["elongation"] < params.chip_max_elongation
        and f["aspect_ratio"] <= params.chip_max_aspect_ratio
    ):
        return "chip" if f["sharpness"] >= params.chip_min_sharpness else "contamination"
    line_like = is_line_like(f, params)
    if line_like and f["sharpness"] < params.line_min_sharpness:
        return "contamination"  # a soft streak (smear, film edge), not a cut in the glass
    if line_like:
        if (
            f["tortuosity"] >= params.crack_min_tortuosity
            or f["branch_points"] >= params.crack_min_branches
            or f["solidity"] < params.crack_max_solidity
        ):
            return "crack"
        return "scratch"
    if f["sharpness"] < params.contamination_max_sharpness:
        return "contamination"
    if (
        f["circularity"] >= params.pit_min_circularity
        and f["solidity"] >= params.pit_min_solidity
        and f["aspect_ratio"] <= params.pit_max_aspect_ratio
        and (f["polarity"] == "dark" or not params.pit_dark_only)
    ):
        return "pit"
    return "contamination"


def classify(f: dict, params: ClassificationParams) -> str:
    """Class of one defect by the configured classifier (``rules``, ``logistic`` or ``trees``).

    A trained model's answer that the defect's shape rules out (:func:`shape_allows`)
    is replaced by the feature rules' class when ``logistic_shape_guard`` is on.
    A trained classifier whose model is missing falls back to the rules.

    Examples
    --------
    >>> from dscope.config import load_config
    >>> p = load_config().classification
    >>> f = dict(elongation=1.2, aspect_ratio=1.1, length_um=8.0, tortuosity=1.0, branch_points=0,
    ...          touches_edge=False, outside_fraction=0.0, sharpness=0.4, circularity=0.9, solidity=0.97,
    ...          polarity="dark", width_um=8.0, diameter_um=8.2, cnr=12.0)
    >>> classify(f, p)
    'pit'
    """
    if params.classifier == "trees" and params.trees is not None:
        cls = classify_trees(f, params.trees, params.class_score_offsets)
    elif params.classifier == "logistic" and params.logistic is not None:
        cls = classify_logistic(f, params.logistic, params.class_score_offsets)
    else:
        return classify_features(f, params)
    if params.logistic_shape_guard and not shape_allows(cls, f, params):
        cls = classify_features(f, params)
    return cls


def characterize(
    gray: np.ndarray,
    detection: Detection,
    geometry: FiberGeometry,
    zones: list[ZoneMask],
    scale: Scale,
    px_per_um: float,
    params: ClassificationParams,
) -> list[Defect]:
    """Measure and classify every candidate of ``detection``.

    Parameters
    ----------
    gray : numpy.ndarray
        Full uint8 frame (the one given to :func:`detect`).
    detection : Detection
        Output of :func:`dscope.inspection.detect.detect`.
    geometry : FiberGeometry
        Fiber geometry (centre, semi-major radius, ellipse).
    zones : list of ZoneMask
        The analysed zones (ROI-sized masks).
    scale : Scale
        Micrometre scale; ``_um`` fields stay ``None`` when unknown.
    px_per_um : float
        Pixels per micrometre used for zoning (also without a known scale).
    params : ClassificationParams
        Section ``classification``.

    Returns
    -------
    list of Defect
        Ids ``S1, P2, H3, K4, C5 ...``: class letter, numbered in raster order of the centroids.
    """
    x0, y0, w, h = detection.roi_xywh
    labels = detection.labels
    A = _linear_map(geometry)
    det_a = abs(float(np.linalg.det(A)))  # area scale image px -> circular-frame px^2
    um = scale.um_per_px if scale.known else None
    ppu = px_per_um if px_per_um > 0 else 1.0
    r_clad = geometry.cladding_radius_px
    band_px = params.edge_band_um * ppu
    pad = params.ring_gap_px + params.ring_width_px + params.profile_margin_px + 2
    k_gap = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * params.ring_gap_px + 1,) * 2)
    k_ring = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * (params.ring_gap_px + params.ring_width_px) + 1,) * 2
    )
    k_prof = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * params.profile_margin_px + 1,) * 2)
    zone_list = list(zones)
    r_outer = max((z.outer_px for z in zone_list), default=0.0)
    r_inner = min((z.inner_px for z in zone_list), default=0.0)

    def touches_outer(bbox_xywh) -> bool:
        """Whether a box reaches beyond the outer radius of the analysed zones (its far corner)."""
        bx, by, bw, bh = bbox_xywh
        corners = np.array([[bx, by], [bx + bw, by], [bx, by + bh], [bx + bw, by + bh]], np.float64)
        return bool(np.max(geometry.normalized_radius(corners)) >= r_outer)

    def patch_radii(ys: np.ndarray, xs: np.ndarray, oy: int, ox: int) -> np.ndarray:
        """Circular-frame radii of patch pixels ``(ys, xs)`` whose patch starts at ROI ``(oy, ox)``."""
        return geometry.normalized_radius(np.stack([xs + ox + x0, ys + oy + y0], 1).astype(np.float64))
    out: list[Defect] = []
    for cand in detection.candidates:  # loop over defects, never pixels
        bx, by, bw, bh = cand.bbox_xywh
        cx0 = max(bx - x0 - pad, 0)
        cy0 = max(by - y0 - pad, 0)
        cx1 = min(bx - x0 + bw + pad, w)
        cy1 = min(by - y0 + bh + pad, h)
        m = labels[cy0:cy1, cx0:cx1] == cand.label
        area_img = int(np.count_nonzero(m))
        if area_img == 0:
            continue
        pol = -1.0 if cand.polarity == "dark" else 1.0
        res = detection.residual_patch(gray, cy0, cy1, cx0, cx1) * np.float32(pol)
        m8 = m.astype(np.uint8)
        others = (labels[cy0:cy1, cx0:cx1] > 0) & ~m
        ring = (cv2.dilate(m8, k_ring) > 0) & ~(cv2.dilate(m8, k_gap) > 0) & ~others
        if zone_list and (cy0 <= 0 or cx0 <= 0 or cy1 >= h or cx1 >= w or touches_outer(cand.bbox_xywh)):
            # at the border of the analysed region the ring may lie on the rest of an object that reaches
            # beyond it (a particle across the contact zone's edge): local background from analysed pixels only
            ry, rx = np.nonzero(ring)
            r_ring = patch_radii(ry, rx, cy0, cx0)
            outside = (r_ring >= r_outer) | (r_ring < r_inner)
            if np.count_nonzero(~outside) >= params.min_ring_px:
                ring[ry[outside], rx[outside]] = False

        def ring_stats(ring: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
            ring_vals = res[ring]
            enough = ring_vals.size >= params.min_ring_px
            bg_level = float(np.median(ring_vals)) if enough else 0.0
            noise = MAD_TO_SIGMA * float(np.median(np.abs(ring_vals - bg_level))) if enough else 0.0
            noise = max(noise, 0.0 if enough else detection.noise_sigma, params.min_noise_sigma)
            inside = res[mask] - bg_level
            contrast = float(np.percentile(inside, 90)) if inside.size else 0.0
            return bg_level, noise, contrast

        bg_level, noise, contrast = ring_stats(ring, m)
        gate_cnr = contrast / noise
        if params.ring_edge_exclusion_um > 0 and gate_cnr < params.min_cnr:
            # keep/drop gate: each side of the cladding boundary the defect occupies is judged on its own,
            # its pixels there against the ring pixels there (the rim line and the ferrule beyond it are
            # not the glass's noise, and vice versa: a particle across the boundary is as clear on the
            # glass as it is faint on a textured ferrule); the features below keep the whole ring
            ry, rx = np.nonzero(ring)
            r_ring = patch_radii(ry, rx, cy0, cx0)
            my, mx = np.nonzero(m)
            r_m = patch_radii(my, mx, cy0, cx0)
            excl = params.ring_edge_exclusion_um * ppu
            for ring_side, m_side in ((r_ring < r_clad - excl, r_m < r_clad), (r_ring > r_clad + excl, r_m >= r_clad)):
                if np.count_nonzero(ring_side) < params.min_ring_px or np.count_nonzero(m_side) < params.min_ring_px:
                    continue
                ring_s = np.zeros_like(ring)
                ring_s[ry[ring_side], rx[ring_side]] = True
                mask_s = np.zeros_like(m)
                mask_s[my[m_side], mx[m_side]] = True
                _, n_side, c_side = ring_stats(ring_s, mask_s)
                gate_cnr = max(gate_cnr, c_side / n_side)
        inside = res[m] - bg_level
        # geometry of the mask
        ys, xs = np.nonzero(m)
        gx = xs + cx0 + x0
        gy = ys + cy0 + y0
        centroid = (float(gx.mean()), float(gy.mean()))
        cnts, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cnt = max(cnts, key=cv2.contourArea) if cnts else np.stack([xs, ys], 1)[:, None, :]
        allpts = np.concatenate([c.reshape(-1, 2) for c in cnts]) if cnts else np.stack([xs, ys], 1)
        contour_img = (cnt.reshape(-1, 2) + (cx0 + x0, cy0 + y0)).astype(np.int32)
        pts_n = geometry.to_normalized(allpts + (cx0 + x0, cy0 + y0)).astype(np.float32)
        ext = params.pixel_extent_px
        (_, _), radius = cv2.minEnclosingCircle(pts_n)
        diameter = 2.0 * radius + ext
        (rw, rh), rang = cv2.minAreaRect(pts_n)[1:]
        rect_len, rect_wid = max(rw, rh) + ext, min(rw, rh) + ext
        cnt_n = geometry.to_normalized(contour_img).astype(np.float32)
        poly_area = float(cv2.contourArea(cnt_n)) if len(cnt_n) >= 3 else 0.0
        perim = float(cv2.arcLength(cnt_n, True)) if len(cnt_n) >= 2 else 0.0
        hull_area = float(cv2.contourArea(cv2.convexHull(cnt_n))) if len(cnt_n) >= 3 else 0.0
        area_n = area_img * det_a
        # circularity / solidity on the pixel footprint (perimeter of pixel edges ~ polygon + pi * extent)
        perim_fp = perim + math.pi * ext
        circularity = float(min(1.0, 4 * math.pi * area_n / max(perim_fp * perim_fp, 1e-6)))
        solidity = float(min(1.0, poly_area / hull_area)) if hull_area > 0 else 1.0
        aspect = float(rect_len / max(rect_wid, 1e-6))
        # orientation of the long axis in the image (degrees, [0, 180), OpenCV convention y down)
        if len(contour_img) >= 2:
            _, (ew, eh), eang = cv2.minAreaRect(contour_img.astype(np.float32))
            orientation = float((eang if ew >= eh else eang + 90.0) % 180.0)
        else:
            orientation = 0.0
        skel_len, tort, branches, skel, jag = _skeleton_features(
            m, A, params.skeleton_smooth_px, params.skeleton_max_halfwidth_px)
        skel_len_ext = skel_len + ext
        orient_dev = _orientation_deviation(skel, res, A, params.orientation_sigma_px)
        elongation = skel_len_ext * skel_len_ext / max(area_n, 1e-6)
        # cross-section width: integrated contrast / (depth x length)
        prof_mask = (cv2.dilate(m8, k_prof) > 0) & ~others
        integral = float((res[prof_mask] - bg_level).sum()) * det_a  # signed: noise averages out
        # ridge depth: the upper part of the mask's values (the skeleton can sit a pixel off the ridge)
        depth = float(np.percentile(inside, params.depth_percentile)) if inside.size else contrast
        width_prof = integral / max(depth * skel_len_ext, 1e-6) if depth > 0 else rect_wid
        if not (math.isfinite(width_prof) and width_prof > 0):
            # a net integral of the wrong sign (a faint line beside a strong opposite-polarity neighbour
            # or background step in the ring): no cross-section estimate, the rectangle's width stands
            width_prof = rect_wid
        # edge sharpness: boundary gradient per unit contrast
        sm = cv2.GaussianBlur(res, (0, 0), params.sharpness_smooth_sigma_px)
        gxm = cv2.Sobel(sm, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        gym = cv2.Sobel(sm, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        gmag = np.sqrt(gxm * gxm + gym * gym)
        edge = (cv2.dilate(m8, None) > 0) & ~(cv2.erode(m8, None) > 0)
        sharpness = float(np.median(gmag[edge]) / max(contrast, 1e-6)) if edge.any() else 0.0
        # radial relations
        rr = patch_radii(ys, xs, cy0, cx0)
        touches = bool(np.any(np.abs(rr - r_clad) <= band_px))
        outside_fraction = float(np.mean(rr > r_clad + band_px))
        r_c = float(geometry.normalized_radius(np.array([centroid]))[0])
        zone_name = "outside"
        for z in zone_list:
            if z.contains_radius(r_c):
                zone_name = z.name
                break
        else:
            if zone_list:
                zone_name = min(zone_list, key=lambda z: min(abs(r_c - z.inner_px), abs(r_c - z.outer_px))).name
        # zones the defect's pixels reach (radii of its pixel centres: the zone masks' own rule)
        touched = [z.name for z in zone_list if bool(np.any(z.contains_radius(rr)))]
        # radial reach of the pixel footprint (pixel centres +- half the pixel extent)
        extent = (max(float(rr.min()) - ext / 2.0, 0.0), float(rr.max()) + ext / 2.0)
        to_um = um if um else 1.0 / ppu  # without a scale: the zoning scale (features only)
        length_um = skel_len_ext * to_um
        feats = dict(
            elongation=float(elongation), tortuosity=float(tort), branch_points=int(branches), jaggedness=float(jag),
            orientation_dev_deg=float(orient_dev),
            touches_edge=touches, outside_fraction=outside_fraction, sharpness=sharpness,
            circularity=circularity, solidity=solidity, aspect_ratio=aspect, polarity=cand.polarity,
            length_um=float(length_um),
            width_um=float(min(width_prof, rect_wid) * to_um), diameter_um=float(diameter * to_um),
            cnr=float(contrast / noise),
        )
        if gate_cnr < params.min_cnr and not touches:
            continue
        if (params.shading_min_diameter_um > 0 and gate_cnr < params.shading_max_cnr and not touches
                and diameter >= params.shading_min_diameter_um * ppu
                and all(cand.evidence.get(k, 0.0) < params.shading_max_support for k in params.shading_methods)
                and any(k in cand.evidence for k in params.shading_methods)):
            continue
        cls = classify(feats, params)
        line = cls in ("scratch", "crack")
        length_px = skel_len_ext if line else rect_len
        width_px = float(min(width_prof, rect_wid)) if line else rect_wid
        conf = calibrate_confidence(cand.score, params.confidence_calibration)
        d = Defect(
            id="",
            type=cls,
            zone=zone_name,
            zones_touched=touched,
            centroid_px=centroid,
            contour_px=contour_img,
            bbox_px=tuple(int(v) for v in cand.bbox_xywh),
            area_px=float(area_n),
            length_px=float(length_px),
            width_px=float(width_px),
            diameter_px=float(diameter),
            orientation_deg=orientation,
            aspect_ratio=aspect,
            circularity=circularity,
            solidity=solidity,
            tortuosity=float(tort),
            contrast=float(contrast),
            cnr=float(contrast / noise),
            confidence=conf,
            detected_by=sorted(k for k, v in cand.evidence.items() if v > 0),
            polarity=cand.polarity,
            touches_cladding_edge=touches,
            radial_extent_px=extent,
            features={
                **feats,
                "score": float(cand.score),
                "evidence": dict(cand.evidence),
                "skeleton_length_px": float(skel_len_ext),
                "rect_width_px": float(rect_wid),
                "profile_width_px": float(width_prof),
                "noise_sigma": float(noise),
            },
        )
        if um:
            d.radial_position_um = r_c * um
            d.radial_extent_um = (extent[0] * um, extent[1] * um)
            d.area_um2 = area_n * um * um
            d.length_um = d.length_px * um
            d.width_um = d.width_px * um
            d.diameter_um = d.diameter_px * um
            cn = geometry.to_normalized(np.array([centroid]))[0]
            d.centroid_um = (float(cn[0] * um), float(cn[1] * um))
        out.append(d)
    return assign_ids(out)


def assign_ids(defects: list[Defect]) -> list[Defect]:
    """Order defects in raster order of their centroids and name them ``S1, P2, H3 ...`` (class letter + rank).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> ds = [SimpleNamespace(id="", type=t, centroid_px=c) for t, c in [("pit", (5.0, 9.0)), ("scratch", (7.0, 2.0))]]
    >>> [d.id for d in assign_ids(ds)]
    ['S1', 'P2']
    """
    ordered = sorted(defects, key=lambda d: (d.centroid_px[1], d.centroid_px[0]))
    for i, d in enumerate(ordered, start=1):
        d.id = f"{CLASS_LETTERS[d.type]}{i}"
    return ordered
