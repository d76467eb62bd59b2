"""Specification and ground-truth data types of the synthetic end-face generator.

A :class:`SynthSpec` describes one image completely (geometry, appearance,
defects, seed); :func:`dscope.synth.render` turns it into an image and a
:class:`SynthTruth`.  All grey levels in a spec and in the truth are on the
8-bit scale (0-255) even when ``bit_depth == 16`` (the 16-bit image is the
8-bit-scale rendering multiplied by 257).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from dscope.errors import DScopeError
from dscope.inspection.types import DEFECT_TYPES, Ellipse, FiberGeometry


class SynthSpecError(DScopeError, ValueError):
    """A synthetic-image specification is invalid (code ``bad_argument``)."""

    def __init__(self, message: str, **details):
        super().__init__("bad_argument", message, **details)


@dataclass(frozen=True)
class FiberTypeInfo:
    """Nominal geometry of a fiber type known to the generator.

    Names match the keys of ``fiber_types`` in ``config/config.json``.
    """

    mode: str  # "sm" | "mm" | "large_core"
    core_um: float
    cladding_um: float
    graded_index: bool = False


#: Fiber types the generator can draw (names as in config/config.json ``fiber_types``).
FIBER_TYPES: dict[str, FiberTypeInfo] = {
    "sm-pc": FiberTypeInfo("sm", 9.0, 125.0),
    "sm-apc": FiberTypeInfo("sm", 9.0, 125.0),
    "mm": FiberTypeInfo("mm", 50.0, 125.0, graded_index=True),
    "mm-62.5": FiberTypeInfo("mm", 62.5, 125.0, graded_index=True),
    "lc-200": FiberTypeInfo("large_core", 200.0, 220.0),
    "lc-1000": FiberTypeInfo("large_core", 1000.0, 1035.0),
}

#: IEC 61300-3-35 zones as (name, inner diameter um, outer diameter um).
ZONES_SM: tuple[tuple[str, float, float], ...] = (
    ("core", 0.0, 25.0),
    ("cladding", 25.0, 115.0),
    ("adhesive", 115.0, 135.0),
    ("contact", 135.0, 250.0),
)
ZONES_MM: tuple[tuple[str, float, float], ...] = (
    ("core", 0.0, 65.0),
    ("cladding", 65.0, 115.0),
    ("adhesive", 115.0, 135.0),
    ("contact", 135.0, 250.0),
)
#: Name given to points beyond the outer diameter of the contact zone.
OUTSIDE_ZONE = "outside"

#: Large-core fibers have no IEC zone table; the adhesive zone of the scaled
#: layout of :func:`zones_for` spans this margin either side of the cladding edge.
LARGE_CORE_EDGE_MARGIN_UM = 10.0


def zones_for(fiber_type: str, core_um: float, cladding_um: float) -> tuple[tuple[str, float, float], ...]:
    """Zone table (name, inner diameter um, outer diameter um) used for the truth of a fiber.

    Single-mode and multimode 125 um fibers use the IEC 61300-3-35 tables
    (:data:`ZONES_SM`, :data:`ZONES_MM`).  Large-core fibers use a scaled
    layout: core up to the core diameter, cladding up to ``cladding_um - 10``,
    adhesive ``cladding_um +- 10`` and contact up to ``2 * cladding_um``
    (mirroring 125 -> 250 um of the standard fibers).

    Examples
    --------
    >>> zones_for("sm-pc", 9, 125)[0]
    ('core', 0.0, 25.0)
    """
    info = FIBER_TYPES.get(fiber_type)
    mode = info.mode if info else ("sm" if core_um < 20 else "mm" if cladding_um <= 130 else "large_core")
    if mode == "sm":
        return ZONES_SM
    if mode == "mm":
        return ZONES_MM
    m = LARGE_CORE_EDGE_MARGIN_UM
    inner_clad = max(core_um, cladding_um - m)
    return (
        ("core", 0.0, float(core_um)),
        ("cladding", float(core_um), float(inner_clad)),
        ("adhesive", float(inner_clad), float(cladding_um + m)),
        ("contact", float(cladding_um + m), float(2 * cladding_um)),
    )


@dataclass
class DefectSpec:
    """One defect to draw.  ``None`` fields are drawn at render time from the spec's seed.

    Parameters
    ----------
    type : str
        ``scratch``, ``pit``, ``chip``, ``crack`` or ``contamination``.
    polarity : str
        ``dark`` or ``bright`` (dark-field lighting makes scratches bright).
    zone : str or None
        Zone in which to place the defect's centre (``core``, ``cladding``,
        ``adhesive``, ``contact``); ``None`` = anywhere on the glass.  Chips are
        always placed on the cladding edge.
    radius_um, angle_deg : float or None
        Position of the centre in the fiber's circular frame (distance from the
        fiber centre in um, angle counter-clockwise from +x as in
        :class:`dscope.inspection.types.Ellipse`).  Overrides ``zone``.
    size_um : float or None
        Diameter (pit, chip bite, contamination) or length (scratch, crack).
    width_um : float or None
        Line width of a scratch or crack.
    contrast : float or None
        Magnitude in grey levels of the deviation from the local background
        (before blur and illumination); the polarity gives its sign.
    curvature : float
        Scratch bow: sagitta / length (0 = straight).
    on_edge : bool
        Contamination sitting on the cladding edge.
    branches : int or None
        Number of side branches of a crack.
    orientation_deg : float or None
        Direction of a scratch (circular frame).
    style : str or None
        Contamination look: ``dust`` (compact particle), ``film`` (soft oil
        smear) or ``ring`` (dried residue, dark outline); ``None`` = random.
    """

    type: str
    polarity: str = "dark"
    zone: str | None = None
    radius_um: float | None = None
    angle_deg: float | None = None
    size_um: float | None = None
    width_um: float | None = None
    contrast: float | None = None
    curvature: float = 0.0
    on_edge: bool = False
    branches: int | None = None
    orientation_deg: float | None = None
    style: str | None = None

    def __post_init__(self):
        if self.type not in DEFECT_TYPES:
            raise SynthSpecError(f"unknown defect type {self.type!r}; choose one of {list(DEFECT_TYPES)}")
        if self.polarity not in ("dark", "bright"):
            raise SynthSpecError(f"defect polarity must be 'dark' or 'bright', got {self.polarity!r}")
        if self.zone is not None and self.zone not in ("core", "cladding", "adhesive", "contact"):
            raise SynthSpecError(f"unknown zone {self.zone!r}")
        for name in ("size_um", "width_um"):
            v = getattr(self, name)
            if v is not None and not (v > 0):
                raise SynthSpecError(f"defect {name} must be > 0, got {v!r}")
        if self.style is not None and (self.type != "contamination" or self.style not in ("dust", "film", "ring")):
            raise SynthSpecError(f"style {self.style!r} is only for contamination: dust, film or ring")
        for name in ("radius_um", "angle_deg", "curvature", "orientation_deg"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise SynthSpecError(f"defect {name} must be finite, got {v!r}")
        if self.radius_um is not None and self.radius_um < 0:
            raise SynthSpecError(f"defect radius_um must be >= 0, got {self.radius_um!r}")
        if self.branches is not None and self.branches < 0:
            raise SynthSpecError(f"crack branches must be >= 0, got {self.branches!r}")
        if self.contrast is not None and not (self.contrast >= 0):
            raise SynthSpecError(f"defect contrast is a magnitude and must be >= 0, got {self.contrast!r}")


NO_FIBER_KINDS = ("blank", "black", "white", "noise")
#: Image size limits of a spec (the pixel cap matches io.max_image_pixels of the shipped config).
MIN_SIDE_PX = 16
MAX_SIDE_PX = 20000
MAX_PIXELS = 50_000_000


@dataclass
class SynthSpec:
    """Everything needed to render one synthetic end-face image (seeded, reproducible).

    Grey levels are on the 8-bit scale.  Lengths ending in ``_um`` are in the
    fiber's circular frame; ``um_per_px`` is along the major axis.
    ``um_per_px=None`` means "cladding diameter = 35 % of the shorter image side".
    ``jpeg_quality`` applies to 8-bit output only (ignored when ``bit_depth == 16``).
    ``center_offset_px`` moves the fiber centre from the image centre
    ``((width - 1) / 2, (height - 1) / 2)``; ``ellipse_angle_deg`` is the major-axis
    direction (convention of :class:`dscope.inspection.types.Ellipse`).
    """

    width: int = 2048
    height: int = 1536
    bit_depth: int = 8
    seed: int = 0
    # what is in the frame
    has_fiber: bool = True
    no_fiber_kind: str = "blank"
    # fiber geometry
    fiber_type: str = "sm-pc"
    cladding_um: float | None = None
    core_um: float | None = None
    um_per_px: float | None = None
    center_offset_px: tuple[float, float] = (0.0, 0.0)
    axis_ratio: float = 1.0
    ellipse_angle_deg: float = 0.0
    core_visible: bool = True
    # appearance
    glass_polarity: str = "dark"
    ferrule_level: float = 160.0
    glass_contrast: float = 45.0
    glass_variation: float = 2.0
    core_delta: float = 6.0
    gi_dot: bool | None = None
    gi_dot_diameter_um: float = 3.0
    gi_dot_depth: float = 18.0
    epoxy_ring: bool = True
    epoxy_width_um: float = 3.0
    epoxy_delta: float = -30.0
    rim_line_depth: float = 25.0
    rim_line_width_px: float = 1.0
    ferrule_texture: float = 5.0
    texture_scale_px: float = 1.2
    ferrule_mottle: float = 2.5
    illum_gradient: float = 0.0
    illum_gradient_angle_deg: float = 0.0
    vignetting: float = 0.0
    blur_sigma_px: float = 0.8
    noise_sigma: float = 2.0
    shot_noise: float = 0.0
    jpeg_quality: int | None = None
    border_left_px: int = 0
    border_right_px: int = 0
    border_top_px: int = 0
    defects: list[DefectSpec] = field(default_factory=list)
    # bookkeeping (copied into the truth)
    scenario: str = "custom"
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        self.defects = [d if isinstance(d, DefectSpec) else DefectSpec(**d) for d in self.defects]
        self.center_offset_px = tuple(float(v) for v in self.center_offset_px)
        self.tags = tuple(self.tags)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise SynthSpecError(f"{f.name} must be a finite number, got {v!r}")
        if not all(math.isfinite(v) for v in self.center_offset_px) or len(self.center_offset_px) != 2:
            raise SynthSpecError(f"center_offset_px must be two finite numbers, got {self.center_offset_px!r}")
        if not (MIN_SIDE_PX <= self.width <= MAX_SIDE_PX and MIN_SIDE_PX <= self.height <= MAX_SIDE_PX):
            raise SynthSpecError(
                f"image size must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px per side, got {self.width}x{self.height}")
        if self.width * self.height > MAX_PIXELS:
            raise SynthSpecError(f"image of {self.width}x{self.height} px exceeds {MAX_PIXELS} pixels")
        if self.bit_depth not in (8, 16):
            raise SynthSpecError(f"bit_depth must be 8 or 16, got {self.bit_depth!r}")
        if self.no_fiber_kind not in NO_FIBER_KINDS:
            raise SynthSpecError(f"no_fiber_kind must be one of {list(NO_FIBER_KINDS)}, got {self.no_fiber_kind!r}")
        if self.has_fiber and self.fiber_type not in FIBER_TYPES and (self.cladding_um is None or self.core_um is None):
            raise SynthSpecError(
                f"unknown fiber_type {self.fiber_type!r}: give cladding_um and core_um "
                f"or use one of {list(FIBER_TYPES)}"
            )
        if self.glass_polarity not in ("dark", "bright"):
            raise SynthSpecError(f"glass_polarity must be 'dark' or 'bright', got {self.glass_polarity!r}")
        if not (1.0 <= self.axis_ratio <= 3.0):
            raise SynthSpecError(f"axis_ratio must be within 1..3, got {self.axis_ratio!r}")
        if self.um_per_px is not None and not (self.um_per_px > 0):
            raise SynthSpecError(f"um_per_px must be > 0, got {self.um_per_px!r}")
        if self.cladding_um is not None and self.core_um is not None and not (0 < self.core_um < self.cladding_um):
            raise SynthSpecError(f"need 0 < core_um < cladding_um, got {self.core_um}/{self.cladding_um}")
        for name in ("blur_sigma_px", "noise_sigma", "shot_noise", "glass_contrast", "ferrule_texture",
                     "ferrule_mottle", "glass_variation", "vignetting", "rim_line_width_px", "epoxy_width_um",
                     "texture_scale_px", "gi_dot_diameter_um"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise SynthSpecError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.jpeg_quality is not None and not (1 <= self.jpeg_quality <= 100):
            raise SynthSpecError(f"jpeg_quality must be 1..100 or None, got {self.jpeg_quality!r}")
        for name in ("border_left_px", "border_right_px", "border_top_px"):
            if getattr(self, name) < 0:
                raise SynthSpecError(f"{name} must be >= 0")
        if self.border_left_px + self.border_right_px >= self.width or self.border_top_px >= self.height:
            raise SynthSpecError("black borders cover the whole image")

    # -- derived geometry ------------------------------------------------------------
    @property
    def fiber_info(self) -> FiberTypeInfo | None:
        return FIBER_TYPES.get(self.fiber_type)

    @property
    def cladding_diameter_um(self) -> float:
        if self.cladding_um is not None:
            return float(self.cladding_um)
        return self.fiber_info.cladding_um

    @property
    def core_diameter_um(self) -> float:
        if self.core_um is not None:
            return float(self.core_um)
        return self.fiber_info.core_um

    @property
    def graded_index(self) -> bool:
        info = self.fiber_info
        return bool(info and info.graded_index)

    @property
    def effective_um_per_px(self) -> float:
        if self.um_per_px is not None:
            return float(self.um_per_px)
        return self.cladding_diameter_um / (DEFAULT_CLADDING_FRACTION * min(self.width, self.height))

    def to_dict(self) -> dict:
        """JSON-serialisable copy of the spec."""
        d = asdict(self)
        d["center_offset_px"] = list(self.center_offset_px)
        d["tags"] = list(self.tags)
        return d


#: Cladding diameter as a fraction of the shorter image side when ``um_per_px`` is None.
DEFAULT_CLADDING_FRACTION = 0.35


@dataclass
class DefectTruth:
    """Ground truth of one rendered defect (see the module docs of :mod:`dscope.synth`)."""

    id: int
    type: str
    polarity: str
    zone: str
    zones_touched: list[str]
    centroid_px: tuple[float, float]
    width_um: float
    length_um: float
    diameter_um: float
    area_px: int
    contrast: float
    cnr: float
    touches_cladding_edge: bool
    detectable: bool
    bbox_px: tuple[int, int, int, int] = (0, 0, 0, 0)
    style: str | None = None  # contamination look (dust, film, ring); None for other classes
    width_px: float = 0.0
    length_px: float = 0.0
    diameter_px: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centroid_px"] = [float(v) for v in self.centroid_px]
        d["bbox_px"] = [int(v) for v in self.bbox_px]
        return d


@dataclass
class SynthTruth:
    """Exact ground truth of a rendered image.

    ``labels`` is an int32 (H, W) image: 0 background, ``k`` the pixels of the
    defect with ``id == k``.  Grey-level quantities (``noise_sigma``, defect
    ``contrast``) are on the 8-bit scale.
    """

    has_fiber: bool
    center_px: tuple[float, float] | None
    cladding_radius_px: float | None
    ellipse: Ellipse | None
    core_radius_px: float | None
    core_visible: bool
    um_per_px: float | None
    fiber_type: str | None
    cladding_um: float | None
    core_um: float | None
    glass_polarity: str | None
    in_frame_fraction: float
    noise_sigma: float
    labels: np.ndarray
    defects: list[DefectTruth]
    zones: tuple[tuple[str, float, float], ...] = ()
    image_size: tuple[int, int] = (0, 0)
    bit_depth: int = 8
    scenario: str = "custom"
    tags: tuple[str, ...] = ()
    dropped_defects: int = 0
    seed: int = 0

    def geometry(self) -> FiberGeometry | None:
        """The truth as a :class:`dscope.inspection.types.FiberGeometry` (``None`` without a fiber)."""
        if not self.has_fiber:
            return None
        return FiberGeometry(
            center_px=tuple(self.center_px),
            cladding_radius_px=float(self.cladding_radius_px),
            cladding_ellipse=self.ellipse,
            core_radius_px=self.core_radius_px,
            core_visible=self.core_visible,
            quality=1.0,
            method="synth_truth",
            in_frame_fraction=self.in_frame_fraction,
            glass_polarity=self.glass_polarity or "unknown",
        )

    def to_dict(self) -> dict:
        """JSON-serialisable dict (no arrays)."""
        ell = None
        if self.ellipse is not None:
            e = self.ellipse
            ell = {
                "center_px": [float(e.center_px[0]), float(e.center_px[1])],
                "semi_major_px": float(e.semi_major_px),
                "semi_minor_px": float(e.semi_minor_px),
                "angle_deg": float(e.angle_deg),
            }
        return {
            "has_fiber": self.has_fiber,
            "center_px": None if self.center_px is None else [float(v) for v in self.center_px],
            "cladding_radius_px": None if self.cladding_radius_px is None else float(self.cladding_radius_px),
            "ellipse": ell,
            "core_radius_px": None if self.core_radius_px is None else float(self.core_radius_px),
            "core_visible": self.core_visible,
            "um_per_px": self.um_per_px,
            "fiber_type": self.fiber_type,
            "cladding_um": self.cladding_um,
            "core_um": self.core_um,
            "glass_polarity": self.glass_polarity,
            "in_frame_fraction": float(self.in_frame_fraction),
            "noise_sigma": float(self.noise_sigma),
            "zones": [{"name": n, "inner_um": a, "outer_um": b} for n, a, b in self.zones],
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "bit_depth": self.bit_depth,
            "scenario": self.scenario,
            "tags": list(self.tags),
            "dropped_defects": self.dropped_defects,
            "seed": self.seed,
            "defects": [d.to_dict() for d in self.defects],
        }
