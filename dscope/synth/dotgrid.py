"""Stage-micrometer dot-grid calibration target (for ``dscope calibrate`` tests)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from dscope.synth.spec import MAX_PIXELS, MAX_SIDE_PX, MIN_SIDE_PX, SynthSpecError

#: Default dot diameter as a fraction of the spacing.
DOT_DIAMETER_FRACTION = 0.4


def make_dot_grid(
    width: int = 1024,
    height: int = 768,
    spacing_um: float = 10.0,
    um_per_px: float = 0.5,
    rotation_deg: float = 0.0,
    dot_diameter_um: float | None = None,
    n_missing: int = 0,
    n_extra: int = 0,
    noise_sigma: float = 2.0,
    blur_sigma_px: float = 0.8,
    background_level: float = 200.0,
    dot_level: float = 40.0,
    offset_px: tuple[float, float] = (0.0, 0.0),
    axis_ratio: float = 1.0,
    axis_angle_deg: float = 0.0,
    seed: int = 0,
    bit_depth: int = 8,
) -> tuple[np.ndarray, dict]:
    """Render a square dot grid (stage micrometer) with known scale.

    Dots sit on a square lattice of pitch ``spacing_um``; the lattice axis
    points along ``(cos r, sin r)`` in image coordinates (x right, y down), the
    convention of :class:`dscope.inspection.types.Ellipse`.  ``n_missing``
    lattice dots are left out and ``n_extra`` spurious dots (dust) are added off
    the lattice.  ``axis_ratio`` > 1 squeezes the image along the direction
    ``axis_angle_deg + 90`` (non-square analog pixels), exactly like an
    elliptical fiber: ``um_per_px`` then holds along ``axis_angle_deg`` and the
    scale across it is ``um_per_px * axis_ratio``.

    Returns
    -------
    image : ndarray
        uint8 (or uint16 for ``bit_depth=16``) grey image.
    truth : dict
        ``um_per_px``, ``spacing_px``, ``spacing_um``, ``rotation_deg``,
        ``dot_diameter_px``, ``n_dots`` (lattice dots whose centre is inside the
        frame, missing ones excluded), ``n_missing``, ``n_extra``,
        ``dots_px`` (their centres, [x, y]), ``extra_dots_px``, ``axis_ratio``,
        ``axis_angle_deg``.

    Examples
    --------
    >>> img, t = make_dot_grid(200, 160, spacing_um=10, um_per_px=0.5)
    >>> img.shape, t["spacing_px"]
    ((160, 200), 20.0)
    """
    sides_ok = MIN_SIDE_PX <= width <= MAX_SIDE_PX and MIN_SIDE_PX <= height <= MAX_SIDE_PX
    if not sides_ok or width * height > MAX_PIXELS:
        raise SynthSpecError(f"image size must be {MIN_SIDE_PX}..{MAX_SIDE_PX} px per side and at most "
                             f"{MAX_PIXELS} pixels, got {width}x{height}")
    if not all(math.isfinite(v) for v in (spacing_um, um_per_px, rotation_deg, axis_angle_deg, noise_sigma,
                                          blur_sigma_px, background_level, dot_level, *offset_px)):
        raise SynthSpecError("dot-grid parameters must be finite numbers")
    if noise_sigma < 0 or blur_sigma_px < 0:
        raise SynthSpecError("noise_sigma and blur_sigma_px must be >= 0")
    if not (spacing_um > 0 and um_per_px > 0):
        raise SynthSpecError("spacing_um and um_per_px must be > 0")
    if bit_depth not in (8, 16):
        raise SynthSpecError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if not (1.0 <= axis_ratio <= 3.0):
        raise SynthSpecError(f"axis_ratio must be within 1..3, got {axis_ratio!r}")
    sp = spacing_um / um_per_px
    dd = (dot_diameter_um if dot_diameter_um is not None else DOT_DIAMETER_FRACTION * spacing_um) / um_per_px
    if not (2.0 <= sp <= min(width, height) / 2.0):
        raise SynthSpecError(f"dot spacing of {sp:.2f} px must be within 2 px and half the image side")
    if not (0 < dd < sp):
        raise SynthSpecError("the dot diameter must be > 0 and smaller than the spacing")
    rng = np.random.default_rng(seed)
    th = math.radians(rotation_deg)
    c, s = math.cos(th), math.sin(th)
    cx = (width - 1) / 2.0 + offset_px[0]
    cy = (height - 1) / 2.0 + offset_px[1]
    xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(cx)
    ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(cy)
    # image -> physical (circular) frame, as FiberGeometry.to_normalized does for the fiber
    ta = math.radians(axis_angle_deg)
    ca, sa, q = np.float32(math.cos(ta)), np.float32(math.sin(ta)), np.float32(axis_ratio)
    pu = xs * ca + ys * sa
    pv = (-xs * sa + ys * ca) * q
    nx, ny = pu * ca - pv * sa, pu * sa + pv * ca
    u = (nx * np.float32(c) + ny * np.float32(s)) / np.float32(sp)
    v = (-nx * np.float32(s) + ny * np.float32(c)) / np.float32(sp)
    iu, iv = np.rint(u), np.rint(v)
    d = np.hypot(u - iu, v - iv) * np.float32(sp)
    cov = np.clip(np.float32(dd / 2.0 + 0.5) - d, 0, 1)

    # lattice dots with centres in the frame
    def to_img(fu, fv):  # lattice coordinates -> image pixels
        gx, gy = sp * (fu * c - fv * s), sp * (fu * s + fv * c)
        uu = gx * math.cos(ta) + gy * math.sin(ta)
        vv = (-gx * math.sin(ta) + gy * math.cos(ta)) / axis_ratio
        return cx + uu * math.cos(ta) - vv * math.sin(ta), cy + uu * math.sin(ta) + vv * math.cos(ta)

    corners = np.array([[-cx, -cy], [width - cx, -cy], [-cx, height - cy], [width - cx, height - cy]])
    cu = corners[:, 0] * math.cos(ta) + corners[:, 1] * math.sin(ta)
    cvq = (-corners[:, 0] * math.sin(ta) + corners[:, 1] * math.cos(ta)) * axis_ratio
    cnx, cny = cu * math.cos(ta) - cvq * math.sin(ta), cu * math.sin(ta) + cvq * math.cos(ta)
    uc = (cnx * c + cny * s) / sp
    vc = (-cnx * s + cny * c) / sp
    iu_r = np.arange(math.floor(uc.min()), math.ceil(uc.max()) + 1)
    iv_r = np.arange(math.floor(vc.min()), math.ceil(vc.max()) + 1)
    II, JJ = np.meshgrid(iu_r, iv_r)
    px, py = to_img(II, JJ)
    inside = (px >= 0) & (px <= width - 1) & (py >= 0) & (py <= height - 1)
    dots_i, dots_j = II[inside], JJ[inside]
    n_in = int(inside.sum())
    n_missing = int(min(max(n_missing, 0), n_in))
    miss = rng.choice(n_in, size=n_missing, replace=False) if n_missing else np.zeros(0, int)
    keep = np.ones(n_in, bool)
    keep[miss] = False
    if n_missing:
        span_j = int(iv_r[-1] - iv_r[0] + 1)
        key = (iu - iu_r[0]) * span_j + (iv - iv_r[0])
        miss_key = (dots_i[miss] - iu_r[0]) * span_j + (dots_j[miss] - iv_r[0])
        cov[np.isin(key, miss_key.astype(np.float32))] = 0
    img = np.float32(background_level) + cov * np.float32(dot_level - background_level)
    extra = []
    for _ in range(max(n_extra, 0)):
        # off-lattice position: half a pitch from the lattice points
        fu, fv = rng.uniform(uc.min(), uc.max()), rng.uniform(vc.min(), vc.max())
        fu, fv = math.floor(fu) + 0.5, math.floor(fv) + 0.5
        ex, ey = to_img(fu, fv)
        if 0 <= ex < width and 0 <= ey < height:
            r = max(dd / 2.0 * rng.uniform(0.4, 1.2), 1.0)
            cv2.circle(img, (int(round(ex * 16)), int(round(ey * 16))), int(round(r * 16)), float(dot_level),
                       -1, cv2.LINE_AA, 4)
            extra.append([float(ex), float(ey)])
    if blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma_px)
    if noise_sigma > 0:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
    if bit_depth == 16:
        out = np.clip(img * 257.0 + 0.5, 0, 65535).astype(np.uint16)
    else:
        out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    kept_x, kept_y = px[inside][keep], py[inside][keep]
    truth = {
        "um_per_px": float(um_per_px),
        "spacing_um": float(spacing_um),
        "spacing_px": float(sp),
        "rotation_deg": float(rotation_deg),
        "dot_diameter_px": float(dd),
        "n_dots": int(keep.sum()),
        "n_missing": n_missing,
        "n_extra": len(extra),
        "dots_px": [[float(x), float(y)] for x, y in zip(kept_x, kept_y)],
        "extra_dots_px": extra,
        "axis_ratio": float(axis_ratio),
        "axis_angle_deg": float(axis_angle_deg),
    }
    return out, truth
