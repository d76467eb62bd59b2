"""Render synthetic fiber end-face images with exact ground truth.

Everything is vectorised NumPy/OpenCV.  Full-frame work is a fixed number of
array operations (background, illumination, blur, noise); fiber-specific work
runs on the fiber's bounding box only, and each defect is rasterised inside its
own bounding box (polygons at up to 4x supersampling, then area-downsampled;
lines by exact box-filter coverage of the distance to the centre line).

The fiber's *circular frame* is the one of
:meth:`dscope.inspection.types.FiberGeometry.to_normalized`: image points are
rotated onto the ellipse axes, the minor-axis coordinate is stretched by the
axis ratio and rotated back.  Defects are designed in that frame (so a 10 um pit
really is 10 um wide on the glass) and mapped into the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dscope.inspection.types import Ellipse
from dscope.synth.spec import (
    OUTSIDE_ZONE,
    DefectSpec,
    DefectTruth,
    SynthSpec,
    SynthTruth,
    zones_for,
)

# -- rendering constants (internal to the generator, not inspection thresholds) ------------
#: Supersampling factor for polygon defects (reduced for big boxes, see _SS_MAX_PIXELS).
SUPERSAMPLE = 4
#: Upper bound on the supersampled canvas of one defect, in pixels.
_SS_MAX_PIXELS = 1_000_000
#: Fraction of the peak coverage at or above which a pixel belongs to a defect's mask.
MASK_ALPHA = 0.5
#: Relative slow variation of the contrast along scratches and cracks (1 sigma).
LINE_CONTRAST_VARIATION = 0.15
#: Grain inside a chip relative to the ferrule grain.
CHIP_TEXTURE_FRACTION = 0.5
#: Contamination looks: compact dust particle, soft oil film, dried residue ring.
CONTAMINATION_STYLES = ("dust", "film", "ring")
#: Relative smooth contrast modulation inside contamination (1 sigma).
CONTAMINATION_MODULATION = 0.3
#: Residue ring: rim width / diameter, and contrast loss of the interior.
RING_WIDTH_FRACTION = 0.12
RING_INNER_DEPTH = 0.7
#: Candidate positions drawn per defect and zone (cheap pre-check each).
PLACEMENT_ATTEMPTS = 200
#: Shape builds per defect, and per image, at most (bound the render time when defects cannot fit).
MAX_SHAPE_BUILDS = 16
MAX_IMAGE_SHAPE_BUILDS = 64
#: Radial clearance of a pit's centre from the cladding edge, in nominal radii.
_PIT_EDGE_CLEARANCE = 1.3
#: Smallest radius of a blob outline relative to its nominal radius (see _blob_outline).
_MIN_RADIUS_FRACTION = 0.35
#: Free margin kept between two defects' masks (px).
DEFECT_GAP_PX = 3
#: Margin between a defect's box and the image border (px).
FRAME_MARGIN_PX = 2
#: Noise floor used for the CNR when the spec has no noise (quantisation, 1/sqrt(12)).
QUANT_NOISE_SIGMA = 1.0 / math.sqrt(12.0)
#: CNR at or above which (with width >= 1 px) a defect counts as detectable.
DETECTABLE_CNR = 2.0
DETECTABLE_WIDTH_PX = 1.0
#: Ferrule grain is drawn at this down-scale and resized (cheaper, and grain is > 1 px).
_TEXTURE_DOWNSCALE = 2
#: Cell size of the low-frequency mottle field (px).
_MOTTLE_CELL_PX = 48
#: Grey level of the "black" and "white" no-fiber frames.
_BLACK_LEVEL = 3.0
_WHITE_LEVEL = 252.0
#: Level range clipping of the glass and defect fills (keep them inside 8-bit range).
_LEVEL_MIN, _LEVEL_MAX = 4.0, 250.0


# =========================================================================================
# geometry helpers
# =========================================================================================
@dataclass(frozen=True)
class _Frame:
    """Affine map between image pixels and the fiber's circular frame."""

    cx: float
    cy: float
    c: float
    s: float
    q: float

    def to_norm(self, x, y):
        dx = x - self.cx
        dy = y - self.cy
        u = dx * self.c + dy * self.s
        v = (-dx * self.s + dy * self.c) * self.q
        return u * self.c - v * self.s, u * self.s + v * self.c

    def from_norm(self, nx, ny):
        u = nx * self.c + ny * self.s
        v = (-nx * self.s + ny * self.c) / self.q
        return self.cx + u * self.c - v * self.s, self.cy + u * self.s + v * self.c

    def radius_and_gradient(self, x, y):
        """Circular-frame radius and the image-space gradient magnitude of that radius.

        ``(a - r) / g`` is then the signed distance in image pixels to the ellipse
        ``r = a`` (first order), which gives anti-aliasing one pixel wide along
        both axes.
        """
        dx = x - self.cx
        dy = y - self.cy
        u = dx * self.c + dy * self.s
        v = (-dx * self.s + dy * self.c) * self.q  # scaled minor coordinate
        r = np.sqrt(u * u + v * v)
        g = np.sqrt(u * u + (self.q * self.q) * (v * v)) / np.maximum(r, 1e-6)
        return r, g

    def radius(self, x, y):
        dx = x - self.cx
        dy = y - self.cy
        u = dx * self.c + dy * self.s
        v = (-dx * self.s + dy * self.c) * self.q
        return np.sqrt(u * u + v * v)


def _zone_of(diam_um: np.ndarray, zones) -> np.ndarray:
    """Index of the zone holding each diameter (len(zones) = outside)."""
    outer = np.array([z[2] for z in zones])
    return np.searchsorted(outer, diam_um, side="right")


def _zone_names(zones) -> list[str]:
    return [z[0] for z in zones] + [OUTSIDE_ZONE]


# =========================================================================================
# shape rasterisation (per defect box)
# =========================================================================================
@dataclass
class _Patch:
    x0: int
    y0: int
    alpha: np.ndarray  # float32 coverage in [0, 1]

    @property
    def shape(self):
        return self.alpha.shape

    def slices(self):
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def _box(xs, ys, pad, W, H):
    x0 = int(math.floor(np.min(xs) - pad))
    y0 = int(math.floor(np.min(ys) - pad))
    x1 = int(math.ceil(np.max(xs) + pad)) + 1
    y1 = int(math.ceil(np.max(ys) + pad)) + 1
    return max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)


def _polygon_alpha(polys_xy: list[np.ndarray], W: int, H: int, pad: float = 2.0, clip_fn=None):
    """Coverage of the union of polygons (image coords), supersampled and area-downsampled.

    ``clip_fn(x, y) -> bool array`` optionally intersects the shape with another
    region, evaluated at the supersampled pixel centres.
    """
    allp = np.concatenate(polys_xy, axis=0)
    x0, y0, x1, y1 = _box(allp[:, 0], allp[:, 1], pad, W, H)
    if x1 <= x0 or y1 <= y0:
        return None
    w, h = x1 - x0, y1 - y0
    ss = SUPERSAMPLE
    while ss > 1 and w * h * ss * ss > _SS_MAX_PIXELS:
        ss -= 1
    hc, wc = h * ss, w * ss
    canvas = np.zeros((hc, wc), bool)
    # image pixel j (centre x0 + j) is canvas pixels j*ss .. j*ss + ss - 1 (centres at canvas
    # coordinates j*ss + k): image X -> canvas (X - x0) * ss + (ss - 1) / 2
    for p in polys_xy:  # union of the polygons
        canvas |= _scanline_fill((p - [x0, y0]) * ss + (ss - 1) / 2.0, hc, wc)
    if clip_fn is not None:
        sx = x0 + (np.arange(wc, dtype=np.float64) + 0.5) / ss - 0.5
        sy = y0 + (np.arange(hc, dtype=np.float64) + 0.5) / ss - 0.5
        canvas &= clip_fn(sx[None, :], sy[:, None])
    alpha = canvas.astype(np.float32)
    if ss > 1:
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    return _Patch(x0, y0, alpha)


def _scanline_fill(poly: np.ndarray, hc: int, wc: int) -> np.ndarray:
    """Exact point-sampled polygon fill: pixel (r, c) is set when its centre (c, r) is inside.

    Vectorised scan-line (even-odd rule): the crossings of every row centre with
    every edge, sorted, paired, and turned into spans with a cumulative sum.
    Unlike :func:`cv2.fillPoly` it does not add the pixels the outline touches,
    so supersampled coverage is unbiased.
    """
    xa, ya = poly[:, 0], poly[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    r0 = max(int(math.ceil(ya.min())), 0)
    r1 = min(int(math.floor(ya.max())), hc - 1)
    out = np.zeros((hc, wc), bool)
    if r1 < r0:
        return out
    R = np.arange(r0, r1 + 1, dtype=np.float64)[:, None]
    spans = ((ya <= R) & (R < yb)) | ((yb <= R) & (R < ya))
    dy = np.where(yb == ya, 1.0, yb - ya)
    xc = np.where(spans, xa + (R - ya) / dy * (xb - xa), np.inf)
    xc.sort(axis=1)
    x_in, x_out = xc[:, 0::2], xc[:, 1::2]
    ok = np.isfinite(x_in) & np.isfinite(x_out)
    rows = np.broadcast_to(np.arange(r1 - r0 + 1)[:, None], x_in.shape)[ok]
    start = np.clip(np.ceil(x_in[ok]), 0, wc).astype(np.intp)
    stop = np.clip(np.ceil(x_out[ok]), 0, wc).astype(np.intp)
    diff = np.zeros((r1 - r0 + 1, wc + 1), np.int32)
    np.add.at(diff, (rows, start), 1)
    np.add.at(diff, (rows, stop), -1)
    out[r0:r1 + 1] = np.cumsum(diff[:, :wc], axis=1) > 0
    return out


def _polyline_alpha(lines_norm: list[np.ndarray], width_n: float, fr: _Frame, W: int, H: int):
    """Box-filter coverage of thick polylines designed in the circular frame.

    ``lines_norm`` are (N, 2) vertex arrays in the circular frame (relative to
    the fiber centre, px of the major axis); ``width_n`` the full line width in
    the same units.  Distances are measured in the circular frame, so the
    drawn width is the width on the glass.
    """
    img_lines = [np.stack(fr.from_norm(ln[:, 0], ln[:, 1]), axis=1) for ln in lines_norm]
    allp = np.concatenate(img_lines, axis=0)
    pad = width_n / 2 + 2
    x0, y0, x1, y1 = _box(allp[:, 0], allp[:, 1], pad, W, H)
    if x1 <= x0 or y1 <= y0:
        return None
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    half = width_n / 2.0
    for ln, il in zip(lines_norm, img_lines):
        for k in range(len(ln) - 1):
            a, b = ln[k], ln[k + 1]
            sx0, sy0, sx1, sy1 = _box(il[k:k + 2, 0], il[k:k + 2, 1], pad, W, H)
            if sx1 <= sx0 or sy1 <= sy0:
                continue
            xs = np.arange(sx0, sx1, dtype=np.float64)[None, :]
            ys = np.arange(sy0, sy1, dtype=np.float64)[:, None]
            nx, ny = fr.to_norm(xs, ys)
            abx, aby = b[0] - a[0], b[1] - a[1]
            L2 = abx * abx + aby * aby
            t = ((nx - a[0]) * abx + (ny - a[1]) * aby) / max(L2, 1e-12)
            t = np.clip(t, 0.0, 1.0)
            d = np.hypot(nx - (a[0] + t * abx), ny - (a[1] + t * aby))
            cov = np.clip(np.minimum(d + 0.5, half) - np.maximum(d - 0.5, -half), 0.0, 1.0).astype(np.float32)
            sub = alpha[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
            np.maximum(sub, cov, out=sub)
    return _Patch(x0, y0, alpha)


# =========================================================================================
# defect shapes (circular frame, px of the major axis)
# =========================================================================================
def _blob_outline(rng, radius: float, irregularity: float, n: int = 40) -> np.ndarray:
    """Closed outline with smooth random radius modulation (low harmonics)."""
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 6):
        r += irregularity * rng.uniform(0, 1) / (k - 1) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, _MIN_RADIUS_FRACTION, None) * radius
    return np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)


def _scratch_line(rng, length: float, curvature: float, orientation_deg: float, n: int = 25) -> np.ndarray:
    t = np.linspace(-0.5, 0.5, n)
    x = t * length
    y = curvature * length * (1 - 4 * t * t)  # parabolic bow, sagitta = curvature * length
    y = y - y.mean()
    th = math.radians(orientation_deg)
    c, s = math.cos(th), math.sin(th)
    return np.stack([x * c - y * s, x * s + y * c], axis=1)


def _crack_lines(rng, length: float, start_dir: float, branches: int, step: float) -> list[np.ndarray]:
    """Jagged random walk (plus branches) starting at the origin."""
    def walk(p0, heading, L):
        n = max(int(L / step), 2)
        turns = rng.normal(0.0, 0.45, n)
        heads = heading + np.cumsum(turns) * 0.5 + turns
        steps = rng.uniform(0.6, 1.4, n) * step
        pts = np.concatenate([[p0], p0 + np.cumsum(np.stack([np.cos(heads), np.sin(heads)], 1) * steps[:, None], 0)])
        return pts
    main = walk(np.zeros(2), start_dir, length)
    lines = [main]
    for _ in range(branches):
        k = int(rng.integers(1, len(main) - 1)) if len(main) > 2 else 1
        side = rng.choice([-1.0, 1.0])
        lines.append(walk(main[k], start_dir + side * rng.uniform(0.5, 1.1), length * rng.uniform(0.2, 0.5)))
    return lines


# =========================================================================================
# render
# =========================================================================================
def _noise_field(rng, H: int, W: int, cell: float, sigma_cells: float = 0.0) -> np.ndarray:
    """Smooth unit-variance random field with correlation length ~``cell`` px."""
    h = max(int(math.ceil(H / cell)) + 2, 2)
    w = max(int(math.ceil(W / cell)) + 2, 2)
    small = rng.standard_normal((h, w), dtype=np.float32)
    if sigma_cells > 0:
        small = cv2.GaussianBlur(small, (0, 0), sigma_cells)
        small /= max(float(small.std()), 1e-6)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def _texture(rng, H: int, W: int, scale_px: float) -> np.ndarray:
    """Fine ceramic grain: blurred white noise at half resolution, unit variance."""
    ds = _TEXTURE_DOWNSCALE
    h, w = (H + ds - 1) // ds, (W + ds - 1) // ds
    t = rng.standard_normal((h, w), dtype=np.float32)
    if scale_px > 0:
        t = cv2.GaussianBlur(t, (0, 0), max(scale_px / ds, 0.3))
    t /= max(float(t.std()), 1e-6)
    return cv2.resize(t, (W, H), interpolation=cv2.INTER_LINEAR)[:H, :W]


def _gain(spec: SynthSpec, H: int, W: int):
    """Multiplicative illumination (linear gradient times radial vignetting), or a scalar 1.

    Both factors are separable sums in x and y, so the full frame costs three
    broadcast operations.
    """
    if not spec.illum_gradient and not spec.vignetting:
        return np.float32(1.0)
    x = np.arange(W, dtype=np.float32) - np.float32(W / 2)
    y = np.arange(H, dtype=np.float32) - np.float32(H / 2)
    th = math.radians(spec.illum_gradient_angle_deg)
    k = np.float32(spec.illum_gradient / 2.0 / (0.5 * max(W, H)))
    lin = (1.0 + k * math.cos(th) * x)[None, :] + (k * math.sin(th) * y)[:, None]
    if not spec.vignetting:
        return lin
    v = np.float32(spec.vignetting / ((W / 2) ** 2 + (H / 2) ** 2))
    vig = (1.0 - v * x * x)[None, :] - (v * y * y)[:, None]
    return lin * vig if spec.illum_gradient else vig


def _levels(spec: SynthSpec) -> tuple[float, float, float]:
    """(ferrule, glass, epoxy) mean grey levels."""
    F = float(spec.ferrule_level)
    sign = 1.0 if spec.glass_polarity == "bright" else -1.0
    G = float(np.clip(F + sign * spec.glass_contrast, _LEVEL_MIN, _LEVEL_MAX))
    E = float(np.clip(F + spec.epoxy_delta, _LEVEL_MIN, _LEVEL_MAX))
    return F, G, E


def _no_fiber(spec: SynthSpec, rng) -> tuple[np.ndarray, float]:
    H, W = spec.height, spec.width
    kind = spec.no_fiber_kind
    if kind == "noise":
        return rng.uniform(0, 255, (H, W)).astype(np.float32), 0.0
    if kind == "black":
        base = np.full((H, W), _BLACK_LEVEL, np.float32)
    elif kind == "white":
        base = np.full((H, W), _WHITE_LEVEL, np.float32)
    else:
        tex = _texture(rng, H, W, spec.texture_scale_px)
        base = np.float32(spec.ferrule_level) + np.float32(spec.ferrule_texture) * tex
        if spec.ferrule_mottle:
            base += np.float32(spec.ferrule_mottle) * _noise_field(rng, H, W, _MOTTLE_CELL_PX)
        base = base * _gain(spec, H, W)
    return base, spec.noise_sigma


def _finish(spec: SynthSpec, clean: np.ndarray, rng, noise_sigma: float) -> np.ndarray:
    """Blur is done by the caller; add sensor noise, quantise, JPEG, borders."""
    H, W = clean.shape
    if noise_sigma > 0 or spec.shot_noise > 0:
        n = rng.standard_normal((H, W), dtype=np.float32)
        if spec.shot_noise > 0:
            std = np.maximum(clean, 0)
            std *= np.float32(spec.shot_noise)
            std += np.float32(noise_sigma**2)
            np.sqrt(std, out=std)
            n *= std
        else:
            n *= np.float32(noise_sigma)
        n += clean
        clean = n
    if spec.bit_depth == 16:
        clean = clean * np.float32(257.0)
        np.clip(clean, 0, 65535, out=clean)
        clean += np.float32(0.5)
        img = clean.astype(np.uint16)
    else:
        clean = np.clip(clean, 0, 255)
        clean += np.float32(0.5)
        img = clean.astype(np.uint8)
        if spec.jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)])
            if ok:
                img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if spec.border_left_px:
        img[:, : spec.border_left_px] = 0
    if spec.border_right_px:
        img[:, W - spec.border_right_px:] = 0
    if spec.border_top_px:
        img[: spec.border_top_px, :] = 0
    return img


def render(spec: SynthSpec) -> tuple[np.ndarray, SynthTruth]:
    """Render one synthetic end-face image and its exact ground truth.

    Parameters
    ----------
    spec : SynthSpec
        Complete description of the image; rendering is deterministic for a
        given spec (all randomness comes from ``spec.seed``).

    Returns
    -------
    image : ndarray
        ``uint8`` (H, W), or ``uint16`` when ``spec.bit_depth == 16``.
    truth : SynthTruth
        Geometry, per-defect truth and the int32 label image.

    Examples
    --------
    >>> from dscope.synth import SynthSpec, DefectSpec, render
    >>> img, truth = render(SynthSpec(width=320, height=240, defects=[DefectSpec("pit", size_um=8)]))
    >>> img.shape, img.dtype.name, truth.has_fiber, len(truth.defects)
    ((240, 320), 'uint8', True, 1)
    """
    rng = np.random.default_rng(spec.seed)
    H, W = spec.height, spec.width
    labels = np.zeros((H, W), np.int32)
    if not spec.has_fiber:
        clean, sigma = _no_fiber(spec, rng)
        if spec.blur_sigma_px > 0 and spec.no_fiber_kind != "noise":
            clean = cv2.GaussianBlur(clean, (0, 0), spec.blur_sigma_px)
        img = _finish(spec, clean, rng, sigma)
        truth = SynthTruth(
            has_fiber=False, center_px=None, cladding_radius_px=None, ellipse=None, core_radius_px=None,
            core_visible=False, um_per_px=None, fiber_type=None, cladding_um=None, core_um=None,
            glass_polarity=None, in_frame_fraction=0.0, noise_sigma=float(sigma), labels=labels, defects=[],
            image_size=(W, H), bit_depth=spec.bit_depth, scenario=spec.scenario, tags=spec.tags, seed=spec.seed,
        )
        return img, truth

    # ---- geometry --------------------------------------------------------------------------
    upp = spec.effective_um_per_px
    clad_um, core_um = spec.cladding_diameter_um, spec.core_diameter_um
    a = clad_um / 2.0 / upp  # cladding semi-major (px)
    rc = core_um / 2.0 / upp
    q = float(spec.axis_ratio)
    th = math.radians(spec.ellipse_angle_deg)
    cx = (W - 1) / 2.0 + spec.center_offset_px[0]
    cy = (H - 1) / 2.0 + spec.center_offset_px[1]
    fr = _Frame(cx, cy, math.cos(th), math.sin(th), q)
    zones = zones_for(spec.fiber_type, core_um, clad_um)
    F, G, E = _levels(spec)
    ep_w = spec.epoxy_width_um / upp if spec.epoxy_ring else 0.0
    rim_w = max(spec.rim_line_width_px, 1e-3)

    xs_full = np.arange(W, dtype=np.float32)[None, :]
    ys_full = np.arange(H, dtype=np.float32)[:, None]
    vis_x0, vis_x1, vis_y0 = spec.border_left_px, W - spec.border_right_px, spec.border_top_px

    # ---- background: ferrule grain + mottle ------------------------------------------------
    tex = _texture(rng, H, W, spec.texture_scale_px)
    base = np.float32(F) + np.float32(spec.ferrule_texture) * tex
    mottle = _noise_field(rng, H, W, _MOTTLE_CELL_PX)
    if spec.ferrule_mottle:
        base += np.float32(spec.ferrule_mottle) * mottle

    # ---- fiber region (bounding box of the ellipse + ring + rim line) ------------------------
    reach = a + ep_w + 4 * rim_w + 3
    ex = math.hypot(reach * math.cos(th), reach / q * math.sin(th))
    ey = math.hypot(reach * math.sin(th), reach / q * math.cos(th))
    bx0, bx1 = max(int(cx - ex) - 1, 0), min(int(cx + ex) + 2, W)
    by0, by1 = max(int(cy - ey) - 1, 0), min(int(cy + ey) + 2, H)
    in_frame = 0.0
    if bx1 > bx0 and by1 > by0:
        sub = base[by0:by1, bx0:bx1]
        r, grad = fr.radius_and_gradient(xs_full[:, bx0:bx1], ys_full[by0:by1, :])
        r, grad = r.astype(np.float32), grad.astype(np.float32)
        inv_g = np.float32(1.0) / grad  # circular-frame px -> image px near the boundaries
        tex_s = tex[by0:by1, bx0:bx1]
        if spec.epoxy_ring and ep_w > 0:
            cov_e = np.clip((a + ep_w - r) * inv_g + 0.5, 0, 1)
            epoxy = np.float32(E) + np.float32(0.4 * spec.ferrule_texture) * tex_s
            sub += cov_e * (epoxy - sub)
        cov_g = np.clip((a - r) * inv_g + 0.5, 0, 1)
        glass = np.float32(G) + np.float32(spec.glass_variation) * mottle[by0:by1, bx0:bx1]
        if spec.core_visible and rc > 0:
            cov_c = np.clip((rc - r) * inv_g + 0.5, 0, 1)
            if spec.graded_index:
                prof = np.clip(1.0 - (r / np.float32(max(rc, 1e-6))) ** 2, 0, 1)
                glass += np.float32(spec.core_delta) * (0.5 * cov_c + 0.5 * prof)
            else:
                glass += np.float32(spec.core_delta) * cov_c
            gi_dot = spec.graded_index if spec.gi_dot is None else spec.gi_dot
            if gi_dot:
                sd = max(spec.gi_dot_diameter_um / upp / 2.0, 0.5)
                glass -= np.float32(spec.gi_dot_depth) * np.exp(-0.5 * (r / np.float32(sd)) ** 2)
        sub += cov_g * (glass - sub)
        if spec.rim_line_depth:
            dist = (r - np.float32(a)) * inv_g  # image px from the boundary
            sub -= np.float32(spec.rim_line_depth) * np.exp(-0.5 * (dist / np.float32(rim_w)) ** 2)
        # in-frame fraction of the cladding area (visible part of the frame)
        inside = r < a
        vx0, vx1 = max(vis_x0 - bx0, 0), max(min(vis_x1 - bx0, bx1 - bx0), 0)
        vy0 = max(vis_y0 - by0, 0)
        in_frame = float(np.count_nonzero(inside[vy0:, vx0:vx1])) / (math.pi * a * (a / q))
        in_frame = min(in_frame, 1.0)

    # ---- defects ---------------------------------------------------------------------------
    drng = np.random.default_rng([spec.seed, 1])
    delta = np.zeros((H, W), np.float32)
    placed: list[tuple[DefectSpec, _Patch, np.ndarray, dict, np.ndarray]] = []
    dropped = 0
    vis = (vis_x0, vis_x1, vis_y0)
    budget = [MAX_IMAGE_SHAPE_BUILDS]  # shape builds left for this image
    for ds in spec.defects:
        res = _place_defect(ds, drng, fr, a, upp, zones, labels, (base, tex, spec.ferrule_texture), (F, G, E), W, H,
                            vis, budget)
        if res is None:
            dropped += 1
            continue
        patch, mask, dpatch, info = res
        k = len(placed) + 1
        ys_, xs_ = patch.slices()
        labels[ys_, xs_][mask] = k
        delta[ys_, xs_] += dpatch
        placed.append((ds, patch, mask, info, dpatch))

    # ---- illumination, optics --------------------------------------------------------------
    gain = _gain(spec, H, W)
    clean = (base + delta) * gain if not np.isscalar(gain) else base + delta
    if spec.blur_sigma_px > 0:
        clean = cv2.GaussianBlur(clean, (0, 0), spec.blur_sigma_px)

    # ---- defect truth ----------------------------------------------------------------------
    geom = _truth_geometry(spec, cx, cy, a, q, rc, in_frame, upp, clad_um, core_um, zones, labels)
    names = _zone_names(zones)
    truths = []
    for k, (ds, patch, mask, info, dpatch) in enumerate(placed, start=1):
        truths.append(_measure(k, ds, patch, mask, info, dpatch, fr, a, upp, zones, names, spec, clean, gain))
    geom.defects = truths
    geom.dropped_defects = dropped

    img = _finish(spec, clean, rng, spec.noise_sigma)
    return img, geom


def _truth_geometry(spec, cx, cy, a, q, rc, in_frame, upp, clad_um, core_um, zones, labels) -> SynthTruth:
    ell = None
    if q > 1.0 + 1e-9:
        ell = Ellipse(center_px=(cx, cy), semi_major_px=a, semi_minor_px=a / q, angle_deg=float(spec.ellipse_angle_deg))
    return SynthTruth(
        has_fiber=True, center_px=(cx, cy), cladding_radius_px=a, ellipse=ell, core_radius_px=rc,
        core_visible=bool(spec.core_visible), um_per_px=upp, fiber_type=spec.fiber_type, cladding_um=clad_um,
        core_um=core_um, glass_polarity=spec.glass_polarity, in_frame_fraction=in_frame,
        noise_sigma=float(spec.noise_sigma), labels=labels, defects=[], zones=zones,
        image_size=(spec.width, spec.height), bit_depth=spec.bit_depth, scenario=spec.scenario, tags=spec.tags,
        seed=spec.seed,
    )


# =========================================================================================
# defect placement
# =========================================================================================
_DEFAULT_SIZE_UM = {  # (low, high) of the drawn size when the DefectSpec leaves it open
    "scratch": (15.0, 80.0),
    "pit": (2.0, 15.0),
    "chip": (8.0, 25.0),
    "crack": (10.0, 40.0),
    "contamination": (5.0, 30.0),
}
_DEFAULT_CONTRAST = {  # grey levels
    "scratch": (10.0, 40.0),
    "pit": (25.0, 70.0),
    "chip": (15.0, 40.0),
    "crack": (12.0, 40.0),
    "contamination": (8.0, 30.0),
}
_SCRATCH_WIDTH_UM = (0.5, 6.0)
_SCRATCH_WIDTH_PX = (1.0, 8.0)
_CRACK_WIDTH_PX = (1.0, 2.0)


def _zone_radius_range(zone, zones, a_px, upp):
    for n, lo, hi in zones:
        if n == zone:
            return lo / 2.0 / upp, hi / 2.0 / upp
    return 0.0, a_px


def _place_defect(ds: DefectSpec, rng, fr: _Frame, a, upp, zones, labels, bg, levels, W, H, vis, budget):
    """Draw shape + position until it fits (inside the visible frame, no overlap)."""
    F, G, E = levels
    lo_c, hi_c = _DEFAULT_CONTRAST[ds.type]
    contrast = float(ds.contrast) if ds.contrast is not None else float(rng.uniform(lo_c, hi_c))
    sign = 1.0 if ds.polarity == "bright" else -1.0
    lo_s, hi_s = _DEFAULT_SIZE_UM[ds.type]
    if ds.size_um is not None:
        size_um = float(ds.size_um)
    else:
        size_um = float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s))))
    size_n = size_um / upp
    zone_order = [ds.zone] if ds.zone else [None]
    if ds.zone:
        zone_order.append(None)  # fall back to anywhere on the glass + surroundings
    vis_x0, vis_x1, vis_y0 = vis
    builds = 0
    for zone in zone_order:
        for attempt in range(PLACEMENT_ATTEMPTS):
            # -- position in the circular frame
            if ds.type == "chip" or (ds.type == "contamination" and ds.on_edge):
                r0 = a
            elif ds.radius_um is not None and attempt == 0 and zone == zone_order[0]:
                r0 = ds.radius_um / upp
            else:
                if zone is None:
                    rlo, rhi = 0.0, a * 1.6
                else:
                    rlo, rhi = _zone_radius_range(zone, zones, a, upp)
                r0 = math.sqrt(rng.uniform(rlo * rlo, rhi * rhi))
            if ds.type == "pit" and abs(r0 - a) < _PIT_EDGE_CLEARANCE * size_n / 2.0 + FRAME_MARGIN_PX:
                # a dig must not straddle the rim (that is a chip): move it to the nearer side
                clear = _PIT_EDGE_CLEARANCE * size_n / 2.0 + FRAME_MARGIN_PX
                r0 = a + clear if r0 >= a else max(a - clear, 0.0)
            if ds.angle_deg is not None and attempt == 0:
                phi = math.radians(ds.angle_deg)
            else:
                phi = rng.uniform(0, 2 * math.pi)
            p0 = np.array([r0 * math.cos(phi), r0 * math.sin(phi)])
            # cheap pre-check of the position before the (costlier) shape build
            ix, iy = fr.from_norm(p0[0], p0[1])
            rmin = _MIN_RADIUS_FRACTION * size_n / 2.0 if ds.type in ("pit", "contamination") else 0.0
            m = FRAME_MARGIN_PX + rmin
            if not (vis_x0 + m <= ix <= vis_x1 - 1 - m and vis_y0 + m <= iy <= H - 1 - m):
                continue
            jx0, jx1 = int(ix - rmin - DEFECT_GAP_PX), int(ix + rmin + DEFECT_GAP_PX) + 1
            jy0, jy1 = int(iy - rmin - DEFECT_GAP_PX), int(iy + rmin + DEFECT_GAP_PX) + 1
            if labels[max(jy0, 0):jy1, max(jx0, 0):jx1].any():
                continue
            if builds >= MAX_SHAPE_BUILDS or budget[0] <= 0:
                return None
            builds += 1
            budget[0] -= 1
            built = _build_shape(ds, rng, fr, p0, phi, a, upp, size_n, bg, levels, sign, contrast, W, H)
            if built is None:
                continue
            patch, mask, dpatch, info = built
            if not mask.any():
                continue
            ys_, xs_ = patch.slices()
            # inside the visible frame with a margin
            px0, py0 = patch.x0, patch.y0
            cols = np.flatnonzero(mask.any(axis=0))
            rows = np.flatnonzero(mask.any(axis=1))
            if (cols[0] + px0 < vis_x0 + FRAME_MARGIN_PX or cols[-1] + px0 > vis_x1 - 1 - FRAME_MARGIN_PX
                    or rows[0] + py0 < vis_y0 + FRAME_MARGIN_PX or rows[-1] + py0 > H - 1 - FRAME_MARGIN_PX):
                continue
            if ds.type == "pit":
                mys, mxs = np.nonzero(mask)
                if _straddles_edge(mys + py0, mxs + px0, fr, a):
                    continue  # a dig on the rim is a chip: keep pits off the cladding edge
            # no overlap (with a gap) with the defects placed so far
            occ = labels[ys_, xs_] > 0
            if occ.any():
                k = 2 * DEFECT_GAP_PX + 1
                grown = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
                if (grown & occ).any():
                    continue
                if (dpatch != 0).any() and ((np.abs(dpatch) > 0) & occ).any():
                    # soft tails must not darken another defect's pixels either
                    dpatch = np.where(occ, 0, dpatch).astype(np.float32)
            return patch, mask, dpatch, info
    return None


def _straddles_edge(ys, xs, fr: _Frame, a: float, tol_px: float = 1.0) -> bool:
    rn = fr.radius(xs.astype(np.float64), ys.astype(np.float64))
    return bool(rn.min() <= a + tol_px and rn.max() >= a - tol_px)


def _build_shape(ds, rng, fr: _Frame, p0, phi, a, upp, size_n, bg, levels, sign, contrast, W, H):
    base, tex, tex_amp = bg
    F, G, E = levels
    t = ds.type
    info: dict = {}
    if t in ("scratch", "crack"):
        if t == "scratch":
            if ds.width_um is not None:
                w_um = float(ds.width_um)
            else:
                w_px = math.exp(rng.uniform(math.log(_SCRATCH_WIDTH_PX[0]), math.log(_SCRATCH_WIDTH_PX[1] / 2)))
                w_um = float(np.clip(w_px * upp, *_SCRATCH_WIDTH_UM))
            ori = ds.orientation_deg if ds.orientation_deg is not None else rng.uniform(0, 180)
            line = _scratch_line(rng, size_n, ds.curvature, ori) + p0
            lines = [line]
        else:
            w_um = float(ds.width_um) if ds.width_um is not None else float(rng.uniform(*_CRACK_WIDTH_PX)) * upp
            branches = ds.branches if ds.branches is not None else int(rng.integers(0, 3))
            # cracks start at the point and run roughly towards the centre (from the edge) or anywhere
            heading = phi + math.pi + rng.normal(0, 0.4) if np.hypot(*p0) > 0.5 * a else rng.uniform(0, 2 * math.pi)
            step = max(size_n / 12.0, 1.5)
            lines = [ln + p0 for ln in _crack_lines(rng, size_n, heading, branches, step)]
        w_n = w_um / upp
        patch = _polyline_alpha(lines, w_n, fr, W, H)
        if patch is None:
            return None
        length_n = float(sum(np.sum(np.hypot(*np.diff(ln, axis=0).T)) for ln in lines))
        info.update(width_um=w_um, length_um=length_n * upp, drawn_lines=True)
        # real scratches are not uniform: slow +-LINE_CONTRAST_VARIATION modulation along the line
        h, w = patch.alpha.shape
        mod = 1.0 + LINE_CONTRAST_VARIATION * np.clip(_noise_field(rng, h, w, max(size_n / 3.0, 4.0)), -1.5, 1.5)
        dpatch = (sign * contrast) * patch.alpha * mod.astype(np.float32)
    elif t == "pit":
        irr = rng.uniform(0.0, 0.25)
        outline = _blob_outline(rng, size_n / 2.0, irr, n=32) + p0
        poly = np.stack(fr.from_norm(outline[:, 0], outline[:, 1]), axis=1)
        patch = _polygon_alpha([poly], W, H)
        if patch is None:
            return None
        dpatch = (sign * contrast) * patch.alpha
    elif t == "chip":
        # bite: an irregular disc centred just outside / on the rim, intersected with the glass
        off = rng.uniform(-0.1, 0.45) * size_n / 2.0
        cen = p0 / max(np.hypot(*p0), 1e-9) * (a + off)
        outline = _blob_outline(rng, size_n / 2.0, rng.uniform(0.05, 0.3), n=36) + cen
        poly = np.stack(fr.from_norm(outline[:, 0], outline[:, 1]), axis=1)
        patch = _polygon_alpha([poly], W, H, clip_fn=lambda x, y: fr.radius(x, y) < a)
        if patch is None:
            return None
        ys_, xs_ = patch.slices()
        local = base[ys_, xs_]
        if ds.polarity == "dark":
            target = np.clip(min(F, G, E) - contrast, _LEVEL_MIN / 2, _LEVEL_MAX)
        else:
            target = np.clip(max(F, G, E) + contrast, _LEVEL_MIN, 255.0)
        # the bite shows what lies below the glass: adhesive / ferrule grain
        target = np.float32(target) + np.float32(CHIP_TEXTURE_FRACTION * tex_amp) * tex[ys_, xs_]
        dpatch = patch.alpha * (target - local)
    elif t == "contamination":
        style = ds.style or str(rng.choice(CONTAMINATION_STYLES))
        info["style"] = style
        if style == "dust":  # compact particle, fairly sharp
            n_lobes, irr, soft_rng = 1, (0.1, 0.35), (0.4, 1.0)
        elif style == "film":  # oil / smear: several lobes, very soft
            n_lobes, irr, soft_rng = int(rng.integers(2, 5)), (0.3, 0.6), (1.5, 3.5)
        else:  # "ring": dried residue, contrast concentrated on its outline
            n_lobes, irr, soft_rng = int(rng.integers(1, 3)), (0.15, 0.4), (0.6, 1.5)
        polys = []
        for i in range(n_lobes):
            off = np.zeros(2) if i == 0 else rng.normal(0, size_n / 4.0, 2)
            rad = size_n / 2.0 * (1.0 if i == 0 else rng.uniform(0.4, 0.8))
            outline = _blob_outline(rng, rad, rng.uniform(*irr), n=40) + p0 + off
            polys.append(np.stack(fr.from_norm(outline[:, 0], outline[:, 1]), axis=1))
        soft = float(min(rng.uniform(*soft_rng), max(size_n / 6.0, 0.4)))
        patch = _polygon_alpha(polys, W, H, pad=3 * soft + 2)
        if patch is None:
            return None
        hard = patch.alpha
        patch.alpha = cv2.GaussianBlur(hard, (0, 0), soft)
        h, w = patch.alpha.shape
        # amorphous interior: smooth modulation
        mod = 1.0 + CONTAMINATION_MODULATION * _noise_field(rng, h, w, max(size_n / 4.0, 2.0))
        if style == "ring":
            k = max(int(round(RING_WIDTH_FRACTION * size_n)), 1)
            # interior = farther than k px from the outline (distance transform: O(pixels) for any k)
            dist = cv2.distanceTransform((hard >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
            inner = cv2.GaussianBlur((dist > k).astype(np.float32), (0, 0), soft)
            mod = mod * (1.0 - RING_INNER_DEPTH * np.clip(inner / np.maximum(patch.alpha, 1e-6), 0, 1))
        dpatch = (sign * contrast) * patch.alpha * mod.astype(np.float32)
    else:  # pragma: no cover - DefectSpec validates the type
        return None
    peak = float(patch.alpha.max())
    if peak <= 0:
        return None
    # half of the peak coverage: the shape itself for solid shapes (peak 1), the half-maximum
    # contour for soft or sub-pixel ones
    mask = patch.alpha >= MASK_ALPHA * peak
    return patch, mask, dpatch.astype(np.float32), info


# =========================================================================================
# measurement
# =========================================================================================
def _measure(k, ds, patch, mask, info, dpatch, fr: _Frame, a, upp, zones, names, spec, clean, gain) -> DefectTruth:
    mys, mxs = np.nonzero(mask)
    xs = mxs.astype(np.float64) + patch.x0
    ys = mys.astype(np.float64) + patch.y0
    cxm, cym = float(xs.mean()), float(ys.mean())
    nx, ny = fr.to_norm(xs, ys)
    # outer boundary pixels carry the enclosing circle and rectangle (far fewer points)
    cnts, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    bnd = np.concatenate([c.reshape(-1, 2) for c in cnts], axis=0).astype(np.float64) + [patch.x0, patch.y0]
    bx, by = fr.to_norm(bnd[:, 0], bnd[:, 1])
    pts = np.stack([bx, by], axis=1).astype(np.float32)
    if len(pts) >= 3:
        pts = cv2.convexHull(pts).reshape(-1, 2)
    (_, _), r_mec = cv2.minEnclosingCircle(pts)
    diameter_n = 2.0 * float(r_mec) + 1.0  # +1: pixel extent
    if len(pts) >= 3:
        (_, _), (rw, rh), _ = cv2.minAreaRect(pts)
        rect_w, rect_l = min(rw, rh) + 1.0, max(rw, rh) + 1.0
    else:
        rect_w, rect_l = 1.0, diameter_n
    if info.get("drawn_lines"):
        width_um = float(info["width_um"])
        length_um = float(info["length_um"])
    else:
        width_um = rect_w * upp
        length_um = rect_l * upp
    diameter_um = diameter_n * upp
    rn = np.hypot(nx, ny)
    zi = _zone_of(2.0 * rn * upp, zones)
    touched = [names[i] for i in sorted(set(int(v) for v in np.unique(zi)))]
    cz = _zone_of(np.array([2.0 * math.hypot(*fr.to_norm(cxm, cym)) * upp]), zones)[0]
    touches_edge = _straddles_edge(ys, xs, fr, a)
    # contrast: mean over the mask of the rendered (illuminated, blurred) deviation
    # this defect's own deviation (other defects' soft tails belong to the background),
    # through the same illumination and blur as the image
    pad = int(math.ceil(3 * spec.blur_sigma_px)) + 1
    H, W = clean.shape
    h, w = mask.shape
    y0, x0 = max(patch.y0 - pad, 0), max(patch.x0 - pad, 0)
    y1, x1 = min(patch.y0 + h + pad, H), min(patch.x0 + w + pad, W)
    d = np.zeros((y1 - y0, x1 - x0), np.float32)
    d[patch.y0 - y0:patch.y0 - y0 + h, patch.x0 - x0:patch.x0 - x0 + w] = dpatch
    g = gain if np.isscalar(gain) else gain[y0:y1, x0:x1]
    dg = (d * g).astype(np.float32)
    if spec.blur_sigma_px > 0:
        dg = cv2.GaussianBlur(dg, (0, 0), spec.blur_sigma_px)
    sl = (mys + patch.y0 - y0, mxs + patch.x0 - x0)
    # honour clipping of the final clean image: background = clean - deviation
    bg = clean[y0:y1, x0:x1][sl] - dg[sl]
    with_def = np.clip(clean[y0:y1, x0:x1][sl], 0, 255)
    contrast = float(np.mean(with_def - np.clip(bg, 0, 255)))
    bg_level = float(np.mean(np.clip(bg, 0, 255)))
    sigma = math.sqrt(spec.noise_sigma**2 + spec.shot_noise * max(bg_level, 0.0))
    cnr = abs(contrast) / max(sigma, QUANT_NOISE_SIGMA)
    width_px = width_um / upp
    return DefectTruth(
        id=k, type=ds.type, polarity=ds.polarity, zone=names[int(cz)], zones_touched=touched,
        centroid_px=(cxm, cym), width_um=width_um, length_um=length_um, diameter_um=diameter_um,
        area_px=int(len(xs)), contrast=contrast, cnr=float(cnr), touches_cladding_edge=touches_edge,
        detectable=bool(cnr >= DETECTABLE_CNR and width_px >= DETECTABLE_WIDTH_PX),
        bbox_px=(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)),
        width_px=float(width_px), length_px=float(length_um / upp), diameter_px=float(diameter_n),
        style=info.get("style"),
    )
