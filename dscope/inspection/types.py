"""Plain data types passed between the inspection stages.

Every stage of :mod:`dscope.inspection` is a pure function: arrays and these
dataclasses in, these dataclasses out, no I/O.  Coordinates are image pixels,
``x`` to the right and ``y`` down, written ``(x, y)``.  Names carry their unit
(``_px``, ``_um``, ``_deg``, ``_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Defect classes, in the order used by reports and confusion matrices.
DEFECT_TYPES: tuple[str, ...] = ("scratch", "pit", "chip", "crack", "contamination")

#: Canonical IEC 61300-3-35 zone names, inner to outer.
ZONE_NAMES: tuple[str, ...] = ("core", "cladding", "adhesive", "contact")


@dataclass(frozen=True)
class FiberSpec:
    """What the user (or the fiber type) says the fiber is.

    Parameters
    ----------
    fiber_type : str
        Rule-set key such as ``"sm-pc"``, ``"sm-apc"``, ``"mm"`` or a custom name.
    core_um, cladding_um : float or None
        Known diameters in micrometres; ``None`` when unknown.
    dims_source : str
        ``"user"`` (typed by the user), ``"fiber_type"`` (nominal values of an
        explicitly chosen fiber type) or ``"none"``.
    """

    fiber_type: str
    core_um: float | None = None
    cladding_um: float | None = None
    dims_source: str = "none"


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in image pixels.

    ``semi_major_px >= semi_minor_px``; ``angle_deg`` is the direction of the
    major axis, counter-clockwise from the +x axis as seen with y down
    (the OpenCV convention of :func:`cv2.ellipse`).
    """

    center_px: tuple[float, float]
    semi_major_px: float
    semi_minor_px: float
    angle_deg: float

    @property
    def axis_ratio(self) -> float:
        return self.semi_major_px / max(self.semi_minor_px, 1e-9)


@dataclass
class FiberGeometry:
    """Where the fiber is in the image.

    ``cladding_radius_px`` is the semi-major axis when the cladding is an
    ellipse, so ``2 * cladding_radius_px`` is always the diameter that maps to
    the known cladding diameter.  ``cladding_ellipse`` is ``None`` when the
    boundary is a circle within the configured tolerance.
    """

    center_px: tuple[float, float]
    cladding_radius_px: float
    cladding_ellipse: Ellipse | None = None
    core_radius_px: float | None = None
    core_visible: bool = False
    quality: float = 0.0
    method: str = ""
    in_frame_fraction: float = 1.0
    glass_polarity: str = "unknown"  # "bright" or "dark" glass relative to ferrule
    diagnostics: dict = field(default_factory=dict)

    # -- ellipse-aware normalisation -------------------------------------------------
    @property
    def axis_ratio(self) -> float:
        return 1.0 if self.cladding_ellipse is None else self.cladding_ellipse.axis_ratio

    @property
    def angle_deg(self) -> float:
        return 0.0 if self.cladding_ellipse is None else self.cladding_ellipse.angle_deg

    def to_normalized(self, points_xy: np.ndarray) -> np.ndarray:
        """Map image points to the fiber's circular frame, in pixels of the major axis.

        The result is centred on the fiber and a point on the cladding boundary
        lands at distance ``cladding_radius_px`` whatever the ellipse, so radii
        and lengths in this frame convert to micrometres with a single
        ``um_per_px``.
        """
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        d = pts - np.asarray(self.center_px, dtype=np.float64)
        if self.cladding_ellipse is None:
            return d
        t = math.radians(self.angle_deg)
        c, s = math.cos(t), math.sin(t)
        u = d[:, 0] * c + d[:, 1] * s  # along major
        v = -d[:, 0] * s + d[:, 1] * c  # along minor
        v = v * self.axis_ratio
        return np.stack([u * c - v * s, u * s + v * c], axis=1)

    def normalized_radius(self, points_xy: np.ndarray) -> np.ndarray:
        """Distance from the center in the circular frame (pixels of the major axis)."""
        n = self.to_normalized(points_xy)
        return np.hypot(n[:, 0], n[:, 1])


@dataclass(frozen=True)
class Scale:
    """Micrometres per pixel along the cladding's major axis, and where it came from.

    ``source`` is one of ``"um_per_px"`` (given directly), ``"user_cladding"``,
    ``"fiber_type_nominal"``, ``"calibration"`` or ``"none"``.
    """

    um_per_px: float | None
    source: str = "none"
    uncertainty_um_per_px: float | None = None

    @property
    def known(self) -> bool:
        return self.um_per_px is not None


@dataclass(frozen=True)
class ZoneDef:
    """A zone as written in a rule set: an annulus between two diameters in um."""

    name: str
    inner_um: float
    outer_um: float


class ZoneMask:
    """A zone realised on one image.

    ``mask`` covers the region of interest ``roi_xywh`` (not the full frame);
    ``inner_px``/``outer_px`` are radii along the major axis.  The mask may be
    given as an array or as a zero-argument callable that builds it: it is then
    realised on first access only (the detector works from the radii at its own
    analysis scale, so a fast profile never pays for full-resolution masks).

    Examples
    --------
    >>> calls = []
    >>> z = ZoneMask("core", 0, 10, 0, 2, lambda: calls.append(1) or np.ones((3, 3), bool), (0, 0, 3, 3))
    >>> z.realised, len(calls)
    (False, 0)
    >>> int(z.mask.sum()), int(z.mask.sum()), len(calls), z.realised
    (9, 9, 1, True)
    """

    __slots__ = ("name", "inner_um", "outer_um", "inner_px", "outer_px", "roi_xywh", "_mask", "_build")

    def __init__(self, name: str, inner_um: float, outer_um: float, inner_px: float, outer_px: float,
                 mask, roi_xywh: tuple[int, int, int, int]):
        self.name = name
        self.inner_um = inner_um
        self.outer_um = outer_um
        self.inner_px = inner_px
        self.outer_px = outer_px
        self.roi_xywh = roi_xywh
        if callable(mask):
            self._mask, self._build = None, mask
        else:
            self._mask, self._build = mask, None

    @property
    def realised(self) -> bool:
        """Whether the mask array exists yet."""
        return self._mask is not None

    @property
    def mask(self) -> np.ndarray:
        """Boolean ROI-sized mask of the zone (built on first access when given lazily)."""
        if self._mask is None:
            self._mask = self._build()
            self._build = None
        return self._mask

    def contains_radius(self, radius_px: np.ndarray) -> np.ndarray:
        """Whether circular-frame radii (major-axis px) fall in this zone's annulus ``[inner, outer)``."""
        r = np.asarray(radius_px)
        return (r >= self.inner_px) & (r < self.outer_px)

    def __repr__(self) -> str:
        return (f"ZoneMask({self.name!r}, inner_um={self.inner_um}, outer_um={self.outer_um}, "
                f"inner_px={self.inner_px:.2f}, outer_px={self.outer_px:.2f}, roi_xywh={self.roi_xywh})")


@dataclass
class Defect:
    """One measured and classified defect.

    Sizes in ``_px`` are always filled; the ``_um`` twins are ``None`` without a
    micrometre scale.  ``diameter`` is the smallest enclosing circle (the IEC
    size of a non-linear defect); a scratch's IEC size is its ``width``.
    """

    id: str
    type: str
    zone: str
    zones_touched: list[str]
    centroid_px: tuple[float, float]
    contour_px: np.ndarray  # (N, 2) int, image pixels
    bbox_px: tuple[int, int, int, int]  # x, y, w, h
    area_px: float
    length_px: float
    width_px: float
    diameter_px: float
    orientation_deg: float
    aspect_ratio: float
    circularity: float
    solidity: float
    tortuosity: float
    contrast: float
    cnr: float
    confidence: float
    detected_by: list[str]
    polarity: str = "dark"
    touches_cladding_edge: bool = False
    radial_position_um: float | None = None
    #: (min, max) circular-frame radius of the pixel footprint (major-axis px / um from the fiber
    #: centre): where the defect reaches radially, for zone membership within a guard band
    radial_extent_px: tuple[float, float] | None = None
    radial_extent_um: tuple[float, float] | None = None
    area_um2: float | None = None
    length_um: float | None = None
    width_um: float | None = None
    diameter_um: float | None = None
    centroid_um: tuple[float, float] | None = None  # relative to fiber center, x right, y down
    features: dict = field(default_factory=dict)

    @property
    def iec_size_px(self) -> float:
        return self.width_px if self.type in ("scratch", "crack") else self.diameter_px

    @property
    def iec_size_um(self) -> float | None:
        return self.width_um if self.type in ("scratch", "crack") else self.diameter_um


@dataclass
class Violation:
    """One broken limit of a rule set."""

    zone: str
    rule: str
    message: str
    defect_ids: list[str] = field(default_factory=list)


@dataclass
class Grade:
    """Verdict of grading one image against one rule set."""

    status: str  # PASS | FAIL | UNGRADED
    violations: list[Violation] = field(default_factory=list)
    reason: str | None = None
    guard_band_px: float | None = None  # decision rule applied (0 = sizes as measured); None = not graded


@dataclass
class InspectionResult:
    """Everything the pipeline learned about one image (no I/O, no JSON)."""

    status: str  # PASS | FAIL | ERROR | UNGRADED
    error: dict | None
    warnings: list[str]
    fiber_spec: FiberSpec
    rule_set: str
    profile: str
    geometry: FiberGeometry | None
    scale: Scale
    zones: list[ZoneMask]
    defects: list[Defect]
    grade: Grade | None
    timings_s: dict[str, float]
    image_shape: tuple[int, int]
    focus_metric: float | None = None
    illumination: dict = field(default_factory=dict)
