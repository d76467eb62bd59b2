"""Individual defect detectors and their building blocks (pure functions).

Every function takes arrays (and plain numbers) and returns arrays; nothing
here reads a configuration, logs or touches files.  All work is vectorised
NumPy / OpenCV; the only Python loops run over a handful of orientations,
zones or tiles, never over pixels.

The detectors work on a *residual* image: the grey image minus a background
model made of the median radial profile of the end face (median over angle at
each radius of the fiber's circular frame) times a smooth illumination gain.
The residual is flat across the zone boundaries, the core step, the dark rim
line of the cladding and the graded-index centre dot, so those normal features
do not trigger the detectors.

Conventions: ``r_map`` is the normalised radius (pixels of the major axis) of
every pixel of the analysed region; masks are ``bool``; responses are
``float32``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: MAD -> standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826


# ----------------------------------------------------------------------------------------------
# geometry helpers
# ----------------------------------------------------------------------------------------------
def normalized_radius_map(
    shape: tuple[int, int],
    origin_xy: tuple[float, float],
    center_px: tuple[float, float],
    axis_ratio: float,
    angle_deg: float,
    scale: float = 1.0,
) -> np.ndarray:
    """Normalised radius of every pixel of a (possibly downscaled) region.

    Same mapping as :meth:`FiberGeometry.normalized_radius`, evaluated in
    float32 on a grid: pixel ``(i, j)`` of the region is the image point
    ``origin + (j, i) / scale``; the result is in pixels of the region's scale.

    Parameters
    ----------
    shape : (h, w)
        Region size.
    origin_xy : (x0, y0)
        Image coordinates of the region's pixel (0, 0).
    center_px : (x, y)
        Fiber centre, image pixels.
    axis_ratio, angle_deg : float
        Ellipse of the cladding (1 and 0 for a circle).
    scale : float
        Region pixels per image pixel (1 = full resolution).

    Returns
    -------
    numpy.ndarray
        float32 ``(h, w)``.

    Examples
    --------
    >>> r = normalized_radius_map((5, 5), (0, 0), (2, 2), 1.0, 0.0)
    >>> float(r[2, 4])
    2.0
    """
    h, w = shape
    xs = (np.arange(w, dtype=np.float32) / np.float32(scale) + np.float32(origin_xy[0]) - np.float32(center_px[0]))
    ys = (np.arange(h, dtype=np.float32) / np.float32(scale) + np.float32(origin_xy[1]) - np.float32(center_px[1]))
    t = math.radians(angle_deg)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    u = xs[None, :] * c + ys[:, None] * s
    v = (-xs[None, :] * s + ys[:, None] * c) * np.float32(axis_ratio)
    return np.sqrt(u * u + v * v) * np.float32(scale)


# ----------------------------------------------------------------------------------------------
# robust statistics
# ----------------------------------------------------------------------------------------------
def binned_median(values_u8: np.ndarray, bins: np.ndarray, n_bins: int, min_count: int) -> np.ndarray:
    """Median of uint8 values per integer bin, by a 2-D histogram (O(N), no sort).

    Bins holding fewer than ``min_count`` values are filled by linear
    interpolation from their neighbours.  The median is interpolated inside
    its grey level so that the profile is not quantised to integers.

    Parameters
    ----------
    values_u8 : numpy.ndarray
        1-D uint8 values.
    bins : numpy.ndarray
        1-D integer bin of each value, ``0 <= bins < n_bins``.
    n_bins : int
        Number of bins.
    min_count : int
        Minimum population of a bin to trust its median.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_bins,)`` medians.

    Examples
    --------
    >>> v = np.array([1, 2, 3, 10, 10, 10], np.uint8)
    >>> b = np.array([0, 0, 0, 1, 1, 1])
    >>> np.round(binned_median(v, b, 2, 1), 1).tolist()
    [2.0, 10.0]
    """
    key = bins.astype(np.int32)  # n_bins * 256 < 2**31
    key <<= 8
    key |= values_u8
    hist = np.bincount(key.ravel(), minlength=n_bins * 256)[: n_bins * 256].reshape(n_bins, 256)
    cum = np.cumsum(hist, axis=1)  # integer counts: exact and cheaper than float
    counts = cum[:, -1].astype(np.float64)
    half = counts / 2.0
    idx = np.argmax(cum >= half[:, None], axis=1)
    below = np.where(idx > 0, cum[np.arange(n_bins), np.maximum(idx - 1, 0)], 0.0)
    inbin = np.maximum(hist[np.arange(n_bins), idx], 1.0)
    med = idx - 0.5 + (half - below) / inbin
    good = counts >= max(min_count, 1)
    out = np.asarray(med, dtype=np.float32)
    if not good.any():
        return np.zeros(n_bins, np.float32)
    gi = np.flatnonzero(good)
    out = np.interp(np.arange(n_bins), gi, out[gi]).astype(np.float32)
    return out


def group_robust_stats(
    values: np.ndarray, groups: np.ndarray, n_groups: int, min_count: int, fallback: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Median and MAD-sigma of ``values`` per group (two lexsorts, no Python loop).

    Groups with fewer than ``min_count`` samples get ``fallback`` (median, sigma).

    Returns
    -------
    (median, sigma) : tuple of numpy.ndarray
        float32 ``(n_groups,)`` each.
    """
    med = np.full(n_groups, fallback[0], np.float32)
    sig = np.full(n_groups, fallback[1], np.float32)
    if values.size == 0:
        return med, sig
    g = np.asarray(groups, np.int64)
    v = np.asarray(values, np.float64)
    counts = np.bincount(g, minlength=n_groups)[:n_groups]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ok = counts >= max(min_count, 1)
    if not ok.any():
        return med, sig

    def _sorted_median(vals: np.ndarray) -> np.ndarray:
        # median of every group with ONE plain sort: key = group offset + value (groups stay in
        # contiguous blocks, values ascending inside a block)
        lo_v = float(vals.min())
        span = float(vals.max()) - lo_v + 1.0
        srt = np.sort(g * span + (vals - lo_v))
        lo = np.minimum(starts + np.maximum(counts - 1, 0) // 2, vals.size - 1)
        hi = np.minimum(starts + counts // 2, vals.size - 1)
        gid = np.arange(n_groups, dtype=np.float64) * span
        return 0.5 * (srt[lo] + srt[hi]) - gid + lo_v

    m = _sorted_median(v)
    mad = _sorted_median(np.abs(v - m[np.minimum(g, n_groups - 1)]))
    med[ok] = m[ok]
    sig[ok] = (MAD_TO_SIGMA * mad[ok]).astype(np.float32)
    return med, sig


def robust_sigma(values: np.ndarray) -> float:
    """MAD-based standard deviation of a 1-D sample (0 for an empty sample)."""
    if values.size == 0:
        return 0.0
    m = np.median(values)
    return float(MAD_TO_SIGMA * np.median(np.abs(values - m)))


# ----------------------------------------------------------------------------------------------
# background model
# ----------------------------------------------------------------------------------------------
def _flatten_center(profile: np.ndarray, bin_px: float, center_flat_px: float) -> np.ndarray:
    k = min(int(math.ceil(center_flat_px / bin_px)), profile.size - 1)
    if k > 0:
        profile = profile.copy()
        profile[:k] = profile[k]
    return profile


def _profile_lookup(profile: np.ndarray, r_map: np.ndarray, bin_px: float) -> np.ndarray:
    """Linear interpolation of a binned radial profile (bin centres at ``(k + 0.5) * bin_px``)."""
    prof = np.asarray(profile, np.float32)
    f = r_map * np.float32(1.0 / bin_px)
    f -= np.float32(0.5)
    np.clip(f, 0, prof.size - 1, out=f)
    i0 = f.astype(np.int32)
    f -= i0  # fractional part
    step = np.diff(prof, append=prof[-1:])  # profile[i + 1] - profile[i] (0 past the end)
    out = step[i0]
    out *= f
    out += prof[i0]
    return out


def radial_profile_background(
    gray: np.ndarray,
    r_map: np.ndarray,
    mask: np.ndarray,
    bin_px: float,
    min_bin_count: int,
    gain_degree: int,
    gain_step_px: int,
    gain_reject_sigma: float,
    center_flat_px: float = 0.0,
    gain_limits: tuple[float, float] = (0.0, np.inf),
) -> tuple[np.ndarray, np.ndarray]:
    """Background = median radial profile (over angle) x smooth illumination gain.

    The profile is the median, over all angles, of the grey values at each
    normalised radius, so defects (a minority of any ring) do not bias it.  An
    illumination gradient is modelled as a multiplicative polynomial gain of
    degree ``gain_degree`` (0 = none) fitted, with outlier rejection, to
    ``gray / profile`` on a sub-sampled grid.

    Parameters
    ----------
    gray : numpy.ndarray
        uint8 region.
    r_map : numpy.ndarray
        Normalised radius of each pixel.
    mask : numpy.ndarray
        bool, the pixels used for the model (the analysed zones).
    bin_px : float
        Radial bin width.
    min_bin_count : int
        Minimum pixels per radial bin.
    gain_degree : int
        Degree of the illumination polynomial (0, 1 or 2).
    gain_step_px : int
        Sub-sampling step of the gain fit.
    gain_reject_sigma : float
        Residuals beyond this many sigmas are excluded from the gain fit.
    center_flat_px : float
        Inside this radius the profile is held at its value just outside it:
        a ring of a few pixels near the centre is too small for a median that
        a central pit would not dominate.

    Returns
    -------
    (background, profile) : tuple of numpy.ndarray
        float32 background of the region, and the radial profile (per bin).

    Examples
    --------
    >>> g = np.full((20, 20), 100, np.uint8)
    >>> r = normalized_radius_map((20, 20), (0, 0), (10, 10), 1.0, 0.0)
    >>> bg, _ = radial_profile_background(g, r, np.ones_like(g, bool), 1.0, 1, 0, 2, 3.0)
    >>> float(np.abs(bg - 100).max()) < 1
    True
    """
    bins_all = np.minimum((r_map / np.float32(bin_px)).astype(np.int32), np.int32(1 << 20))
    n_bins = int(bins_all[mask].max()) + 1 if mask.any() else 1
    bins_all = np.minimum(bins_all, n_bins - 1)
    vals = gray[mask]
    b = bins_all[mask]
    profile = _flatten_center(binned_median(vals, b, n_bins, min_bin_count), bin_px, center_flat_px)
    prof_img = _profile_lookup(profile, r_map, bin_px)
    if gain_degree <= 0:
        return prof_img.astype(np.float32), profile
    # --- multiplicative gain fitted on a sub-sampled grid ---------------------------------------
    h, w = gray.shape
    step = max(int(gain_step_px), 1)
    sub = np.zeros_like(mask)
    sub[::step, ::step] = True
    sel = sub & mask & (prof_img > 1.0)
    ys, xs = np.nonzero(sel)
    if ys.size < 20:
        return prof_img.astype(np.float32), profile
    ratio = gray[ys, xs].astype(np.float64) / prof_img[ys, xs]
    xn = xs / max(w - 1, 1) * 2.0 - 1.0
    yn = ys / max(h - 1, 1) * 2.0 - 1.0
    cols = [np.ones_like(xn), xn, yn]
    if gain_degree >= 2:
        cols += [xn * xn, xn * yn, yn * yn]
    A = np.stack(cols, axis=1)
    keep = np.ones(ratio.size, bool)
    coef = np.zeros(A.shape[1])
    coef[0] = 1.0
    for _ in range(2):  # two robust passes
        coef, *_ = np.linalg.lstsq(A[keep], ratio[keep], rcond=None)
        res = ratio - A @ coef
        s = robust_sigma(res[keep]) or 1e-6
        keep = np.abs(res) <= gain_reject_sigma * s
        if keep.sum() < A.shape[1] * 4:
            break
    gx = (np.arange(w, dtype=np.float32) / max(w - 1, 1) * 2 - 1)[None, :]
    gy = (np.arange(h, dtype=np.float32) / max(h - 1, 1) * 2 - 1)[:, None]
    gain = np.float32(coef[0]) + np.float32(coef[1]) * gx + np.float32(coef[2]) * gy
    if gain_degree >= 2:
        gain = gain + np.float32(coef[3]) * gx * gx + np.float32(coef[4]) * gx * gy + np.float32(coef[5]) * gy * gy
    gain = np.clip(gain, gain_limits[0], gain_limits[1]).astype(np.float32)
    # second profile on the de-shaded image
    flat = np.clip(gray.astype(np.float32) / gain, 0, 255).astype(np.uint8)
    profile = _flatten_center(binned_median(flat[mask], b, n_bins, min_bin_count), bin_px, center_flat_px)
    return (_profile_lookup(profile, r_map, bin_px) * gain).astype(np.float32), profile


def radial_sigma_profile(
    residual: np.ndarray, r_map: np.ndarray, mask: np.ndarray, bin_px: float, min_bin_count: int, quant: float
) -> np.ndarray:
    """Robust noise (MAD-sigma of the residual over angle) at each radius, per pixel.

    Near the cladding boundary a slightly misfit geometry leaves a thin ring of
    residual; this profile rises there, so thresholds scaled by it become
    stricter on the boundary itself while chips (far larger deviations) still
    pass.

    Returns
    -------
    numpy.ndarray
        float32 sigma of each pixel's radius (0 outside the data range).
    """
    bins_all = (r_map / np.float32(bin_px)).astype(np.int32)
    n_bins = int(bins_all[mask].max()) + 1 if mask.any() else 1
    bins_all = np.minimum(bins_all, n_bins - 1)
    a = np.minimum(np.abs(residual[mask]) / np.float32(quant), 255).astype(np.uint8)
    mad = binned_median(a, bins_all[mask], n_bins, min_bin_count) * np.float32(quant)
    return (MAD_TO_SIGMA * np.maximum(mad, 0))[bins_all].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# detectors
# ----------------------------------------------------------------------------------------------
def do2mr(image: np.ndarray, window_px: int) -> np.ndarray:
    """DO2MR residual: max filter minus min filter in a square window (Mei et al. 2018).

    Parameters
    ----------
    image : numpy.ndarray
        uint8 or float32 image.
    window_px : int
        Side of the square window (odd, >= 3).

    Returns
    -------
    numpy.ndarray
        float32 residual, >= 0.

    Examples
    --------
    >>> im = np.zeros((9, 9), np.float32); im[4, 4] = 10
    >>> float(do2mr(im, 3)[4, 3])
    10.0
    """
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (int(window_px), int(window_px)))
    img = np.asarray(image, dtype=np.float32)
    return cv2.subtract(cv2.dilate(img, k), cv2.erode(img, k))


def black_hat(image: np.ndarray, kernel_px: int) -> np.ndarray:
    """Dark features smaller than the kernel: closing(image) - image (square kernel).

    Examples
    --------
    >>> im = np.full((15, 15), 50, np.float32); im[7, 7] = 10
    >>> float(black_hat(im, 5)[7, 7])
    40.0
    """
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (int(kernel_px), int(kernel_px)))
    return cv2.morphologyEx(np.asarray(image, np.float32), cv2.MORPH_BLACKHAT, k)


def top_hat(image: np.ndarray, kernel_px: int) -> np.ndarray:
    """Bright features smaller than the kernel: image - opening(image) (square kernel)."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (int(kernel_px), int(kernel_px)))
    return cv2.morphologyEx(np.asarray(image, np.float32), cv2.MORPH_TOPHAT, k)


def local_mean(image: np.ndarray, window_px: int) -> np.ndarray:
    """Signed mean of the residual in a square window (box filter): soft, extended defects.

    Large low-contrast regions (oil, dust films, soft-edged dirt) have no sharp
    edge or small-scale extremum for the morphological and line detectors, but
    their mean residual over a window stands far above the window-averaged
    noise (which falls with the square root of the window area).

    Parameters
    ----------
    image : numpy.ndarray
        Residual (image minus background), float.
    window_px : int
        Side of the averaging window (px).

    Returns
    -------
    numpy.ndarray
        float32 signed local mean (negative on dark regions).

    Examples
    --------
    >>> im = np.zeros((21, 21), np.float32); im[5:16, 5:16] = -3
    >>> float(local_mean(im, 5)[10, 10])
    -3.0
    """
    return cv2.boxFilter(np.asarray(image, np.float32), cv2.CV_32F, (int(window_px), int(window_px)),
                         borderType=cv2.BORDER_REFLECT)


def morph_gradient(image: np.ndarray, kernel_px: int) -> np.ndarray:
    """Morphological gradient (dilation - erosion) with an elliptical kernel.

    Examples
    --------
    >>> im = np.zeros((11, 11), np.float32); im[:, 6:] = 8
    >>> float(morph_gradient(im, 3)[5, 5])
    8.0
    """
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(kernel_px), int(kernel_px)))
    return cv2.morphologyEx(np.asarray(image, np.float32), cv2.MORPH_GRADIENT, k)


def line_kernels(length_px: int, side_offset_px: int, n_orientations: int) -> list[np.ndarray]:
    """Linear-enhancement-inspector kernels: ``2 * centre-line mean - mean of the two side lines``.

    Each kernel is float32, odd-sized; convolving with it gives the LEI
    strength of Mei et al. (2018) for one orientation (bright lines positive).

    Examples
    --------
    >>> ks = line_kernels(9, 3, 12)
    >>> len(ks), abs(float(ks[0].sum()) - 1.0) < 1e-6  # 2 x 1 - 1: a flat image gives its own level
    (12, True)
    """
    half = length_px // 2
    size = 2 * (half + side_offset_px) + 1
    c0 = size // 2
    out = []
    for i in range(n_orientations):  # a handful of orientations
        th = math.pi * i / n_orientations
        dx, dy = math.cos(th), math.sin(th)
        nx, ny = -dy, dx
        centre = np.zeros((size, size), np.float32)
        side = np.zeros((size, size), np.float32)
        for off, img in ((0, centre), (side_offset_px, side), (-side_offset_px, side)):
            p0 = (c0 + off * nx - half * dx, c0 + off * ny - half * dy)
            p1 = (c0 + off * nx + half * dx, c0 + off * ny + half * dy)
            sh = 4  # sub-pixel drawing
            cv2.line(
                img,
                (int(round(p0[0] * (1 << sh))), int(round(p0[1] * (1 << sh)))),
                (int(round(p1[0] * (1 << sh))), int(round(p1[1] * (1 << sh)))),
                1.0,
                1,
                cv2.LINE_8,
                sh,
            )
        k = 2.0 * centre / max(centre.sum(), 1e-6) - side / max(side.sum(), 1e-6)
        out.append(k.astype(np.float32))
    return out


def lei_response(image: np.ndarray, kernels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Oriented line responses: max over orientations for bright lines and for dark lines.

    Parameters
    ----------
    image : numpy.ndarray
        float32 image (typically the residual).
    kernels : list of numpy.ndarray
        From :func:`line_kernels`.

    Returns
    -------
    (bright, dark) : tuple of numpy.ndarray
        float32 maps, each the maximum of the (sign-adjusted) responses.
    """
    img = np.asarray(image, np.float32)
    bright = np.full(img.shape, -np.inf, np.float32)
    dark = np.full(img.shape, -np.inf, np.float32)
    for k in kernels:
        r = cv2.filter2D(img, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
        np.maximum(bright, r, out=bright)
        np.maximum(dark, -r, out=dark)
    return bright, dark


def skeleton_lines(
    binary: np.ndarray,
    min_length_px: int,
    max_gap_px: int,
    hough_threshold: int,
    max_points: int,
    max_lines: int,
    thickness_px: int,
) -> np.ndarray:
    """Edge/skeleton path: thin a binary ridge map and keep only pixels on verified line segments.

    The binary map is thinned (``cv2.ximgproc.thinning``); probabilistic Hough
    (``HoughLinesP``) then keeps straight segments at least ``min_length_px``
    long.  Work is bounded: with more than ``max_points`` skeleton pixels (a
    noise frame) only the largest skeleton components, up to ``max_points``
    pixels in all, are kept, and at most ``max_lines`` segments are used.

    Returns
    -------
    numpy.ndarray
        bool mask of the verified segments (drawn ``thickness_px`` wide) that
        also lie on the input ridge.
    """
    b = (np.asarray(binary) > 0).astype(np.uint8) * 255
    out = np.zeros(b.shape, bool)
    if not b.any():
        return out
    skel = cv2.ximgproc.thinning(b, thinningType=cv2.ximgproc.THINNING_ZHANGSUEN)
    n_pts = int(cv2.countNonZero(skel))
    if n_pts == 0:
        return out
    if n_pts > max_points:
        # bounded work: keep only the largest skeleton components
        n, lab, stats, _ = cv2.connectedComponentsWithStats(skel, connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        order = np.argsort(-areas)
        keep_n = int(np.searchsorted(np.cumsum(areas[order]), max_points, side="right"))
        keep = np.zeros(n, bool)
        keep[order[:keep_n] + 1] = True
        skel = np.where(keep[lab], np.uint8(255), np.uint8(0))
        if not skel.any():
            return out
    lines = cv2.HoughLinesP(
        skel, 1, math.pi / 180, int(hough_threshold), minLineLength=int(min_length_px), maxLineGap=int(max_gap_px)
    )
    if lines is None:
        return out
    canvas = np.zeros(b.shape, np.uint8)
    for x1, y1, x2, y2 in np.asarray(lines).reshape(-1, 4)[: int(max_lines)]:  # bounded number of segments
        cv2.line(canvas, (int(x1), int(y1)), (int(x2), int(y2)), 255, int(thickness_px))
    return (canvas > 0) & (b > 0)


def strength(z: np.ndarray, z_low: float, z_high: float) -> np.ndarray:
    """Map a z-score to a [0, 1] evidence strength (linear ramp between two z levels).

    Examples
    --------
    >>> strength(np.array([0.0, 3.0, 9.0], np.float32), 2.0, 6.0).tolist()
    [0.0, 0.25, 1.0]
    """
    out = np.subtract(z, np.float32(z_low), dtype=np.float32)
    out *= np.float32(1.0 / (z_high - z_low))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _hessian_terms(image: np.ndarray, sigma_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Half trace and eigenvalue half-spread of the Hessian of the image smoothed by ``sigma_px``.

    The eigenvalues are ``half_tr +- disc`` (three separable filters, float32).
    """
    img = np.asarray(image, np.float32)
    sm = cv2.GaussianBlur(img, (0, 0), float(sigma_px))
    dxx = cv2.Sobel(sm, cv2.CV_32F, 2, 0, ksize=3)
    dyy = cv2.Sobel(sm, cv2.CV_32F, 0, 2, ksize=3)
    dxy = cv2.Sobel(sm, cv2.CV_32F, 1, 1, ksize=3) * np.float32(0.25)
    return (dxx + dyy) * np.float32(0.5), cv2.magnitude((dxx - dyy) * np.float32(0.5), dxy)


def hessian_ridge(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Thin-line (ridge/valley) strength from the Hessian eigenvalues, both polarities.

    The image is smoothed with a Gaussian of ``sigma_px``; the eigenvalue of the
    Hessian with the larger magnitude measures how sharply the grey level bends
    across a line: positive for dark lines (valleys), negative for bright lines
    (ridges).  The result is that largest eigenvalue magnitude,
    ``|trace| / 2 + sqrt(((Dxx - Dyy) / 2)**2 + Dxy**2)``, i.e. the curvature
    across the line whatever its polarity (a compact pit also responds).  Orientation-free and cheap (three separable filters), so it
    can run at full resolution where a sub-pixel-wide scratch still exists.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 or float32 image.
    sigma_px : float
        Gaussian scale (about half the widest line of interest).

    Returns
    -------
    numpy.ndarray
        float32 ridge strength (grey levels per px^2), >= 0.

    Examples
    --------
    >>> im = np.full((21, 21), 100, np.float32); im[:, 10] = 60
    >>> r = hessian_ridge(im, 1.0)
    >>> bool(r[10, 10] > 5 * r[10, 3] + 1)
    True
    """
    half_tr, disc = _hessian_terms(image, sigma_px)
    # eigenvalues half_tr +- disc: the larger magnitude is |half_tr| + disc
    return (np.abs(half_tr) + disc).astype(np.float32)


def hessian_line(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Line-only Hessian strength: curvature across a line minus curvature along it, both polarities.

    With the Hessian eigenvalues ``l1``, ``l2`` (``|l1| >= |l2|``) of the image
    smoothed by ``sigma_px`` the result is ``|l1| - |l2| = 2 * min(|trace| / 2, disc)``:
    a straight line (``l2 = 0``) keeps its full curvature ``|l1|``, a round blob
    (``l1 = l2``) and a saddle (``l1 = -l2``) give 0.  Unlike :func:`hessian_ridge`
    a compact pit or a patch of mottle does not respond, so the measure adds
    evidence for lines only.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 or float32 image.
    sigma_px : float
        Gaussian scale (about a third of the line width it is tuned to).

    Returns
    -------
    numpy.ndarray
        float32 line strength (grey levels per px^2), >= 0.

    Examples
    --------
    >>> im = np.full((41, 41), 100, np.float32); im[:, 20] = 60; im[8:11, 8:11] = 40
    >>> r = hessian_line(im, 1.0)
    >>> bool(r[30, 20] > 5 * r[9, 9] + 1)
    True
    """
    half_tr, disc = _hessian_terms(image, sigma_px)
    return (np.float32(2.0) * np.minimum(np.abs(half_tr), disc)).astype(np.float32)



def circumcircles(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circumcircles of batches of point triplets (arrays (K, 2)); returns cx, cy, r (NaN when collinear).

    Examples
    --------
    >>> cx, cy, r = circumcircles(np.array([[0.0, 0.0], [0, 0]]), np.array([[2.0, 0.0], [1, 1]]),
    ...                           np.array([[0.0, 2.0], [2, 2]]))
    >>> [round(float(v), 3) for v in (cx[0], cy[0], r[0])], bool(np.isnan(r[1]))
    ([1.0, 1.0, 1.414], True)
    """
    ax, ay = p1[:, 0], p1[:, 1]
    bx, by = p2[:, 0], p2[:, 1]
    cx, cy = p3[:, 0], p3[:, 1]
    d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    d = np.where(np.abs(d) < 1e-9, np.nan, d)
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    return ux, uy, np.hypot(ax - ux, ay - uy)


def circle_hits(mask: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, n_samples: int) -> np.ndarray:
    """Whether ``mask`` is set at ``n_samples`` points along each circle (points off the array: False).

    ``cx``, ``cy`` and ``r`` are arrays of the same length (one row of the result per circle).

    Examples
    --------
    >>> m = np.zeros((20, 20), bool); m[:, 10:] = True
    >>> circle_hits(m, np.array([10.0]), np.array([10.0]), np.array([5.0]), 4).tolist()
    [[True, True, False, True]]
    """
    t = np.linspace(0.0, 2.0 * np.pi, int(n_samples), endpoint=False)
    qx = np.rint(np.asarray(cx, np.float64)[:, None] + np.asarray(r, np.float64)[:, None] * np.cos(t)[None, :])
    qy = np.rint(np.asarray(cy, np.float64)[:, None] + np.asarray(r, np.float64)[:, None] * np.sin(t)[None, :])
    qx, qy = qx.astype(np.int64), qy.astype(np.int64)
    h, w = mask.shape
    inside = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
    hit = np.zeros(qx.shape, bool)
    hit[inside] = mask[qy[inside], qx[inside]]
    return hit


def ring_circle(
    support: np.ndarray, seed: np.ndarray, r_min_px: float, r_max_px: float, tol_px: float,
    n_hypotheses: int, n_samples: int, rng: np.random.Generator, *, min_other: float = 0.0,
    max_interior: float = 1.0,
) -> tuple[float, float, float, float, float] | None:
    """The circle through a seed region that is best covered by a support mask (a ring of dirt).

    A dried residue ring is often found only in pieces: its outline is faint and broken, and each
    piece alone is a small arc.  Circles are hypothesised through one seed pixel and two support
    pixels (RANSAC) and scored by their coverage: the share of points sampled along the circle that
    lie on the support (dilated by ``tol_px``), over all the points (a circle leaving the window
    or the analysed area is not favoured).  A ring is an outline: circles whose coverage comes
    mostly from the seed itself (a compact spot covers any small circle around it), or whose
    inside is support too (a filled blob), are not rings.

    Parameters
    ----------
    support : ndarray of bool
        Low-threshold evidence of the seed's polarity in a window around the seed.
    seed : ndarray of bool
        The seed region in the same window (part of ``support``).
    r_min_px, r_max_px : float
        Radius range of the ring.
    tol_px : float
        Half-width of the ring line accepted around the circle.
    n_hypotheses, n_samples : int
        RANSAC hypotheses and points sampled along each circle (bounded work).
    rng : numpy.random.Generator
        Seeded generator (deterministic results).
    min_other : float
        Coverage the support must reach away from the seed (the seed dilated by ``tol_px``).
    max_interior : float
        Largest share of support on points sampled inside the circle (at half and three
        quarters of the radius, and ``2 * tol_px`` inside the ring line).

    Returns
    -------
    tuple or None
        ``(cx, cy, r, coverage, background)`` in window pixels, ``background`` the share of
        the window's pixels off the ring within ``tol_px`` of support (the chance level of the
        coverage);
        ``None`` when no circle in the radius range through the seed meets ``min_other`` and
        ``max_interior``.

    Examples
    --------
    >>> yy, xx = np.mgrid[:80, :80]
    >>> rr = np.hypot(xx - 40, yy - 40)
    >>> ring = (np.abs(rr - 25) <= 1.5) & ((np.arctan2(yy - 40, xx - 40) % 0.9) < 0.6)
    >>> seed = ring & (xx > 60)
    >>> cx, cy, r, cov, bgd = ring_circle(ring, seed, 10, 35, 2.0, 300, 72, np.random.default_rng(0),
    ...                                   min_other=0.3, max_interior=0.3)
    >>> round(r), cov > 0.6, bgd < 0.05
    (25, True, True)

    A filled disk is not a ring:

    >>> disk = rr <= 25
    >>> ring_circle(disk, disk & (xx > 60), 10, 35, 2.0, 300, 72, np.random.default_rng(0),
    ...             min_other=0.3, max_interior=0.3) is None
    True
    """
    sy, sx = np.nonzero(seed)
    py, px = np.nonzero(support)
    if sy.size == 0 or py.size < 3:
        return None
    n = int(n_hypotheses)
    i0 = rng.integers(0, sy.size, n)
    i1 = rng.integers(0, py.size, n)
    i2 = rng.integers(0, py.size, n)
    ux, uy, r = circumcircles(np.stack([sx[i0], sy[i0]], 1).astype(np.float64),
                              np.stack([px[i1], py[i1]], 1).astype(np.float64),
                              np.stack([px[i2], py[i2]], 1).astype(np.float64))
    ok = np.isfinite(r) & (r >= r_min_px) & (r <= r_max_px)
    if not ok.any():
        return None
    ux, uy, r = ux[ok], uy[ok], r[ok]
    h, w = support.shape
    k = 2 * int(math.ceil(tol_px)) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    near = cv2.dilate(support.astype(np.uint8), disk) > 0
    near_seed = cv2.dilate(seed.astype(np.uint8), disk) > 0
    on = circle_hits(near, ux, uy, r, n_samples)
    cover = on.mean(axis=1)  # over ALL samples: a circle leaving the window is not favoured
    other = (on & ~circle_hits(near_seed, ux, uy, r, n_samples)).mean(axis=1)
    inner = [circle_hits(support, ux, uy, f * r, n_samples) for f in (0.5, 0.75)]
    inner.append(circle_hits(support, ux, uy, np.maximum(r - 2.0 * tol_px, 0.0), n_samples))
    interior = np.mean([m.mean(axis=1) for m in inner], axis=0)
    good = (other >= min_other) & (interior <= max_interior)
    if not good.any():
        return None
    j = int(np.argmax(np.where(good, cover, -1.0)))
    dx = np.arange(w, dtype=np.float32)[None, :] - np.float32(ux[j])
    dy = np.arange(h, dtype=np.float32)[:, None] - np.float32(uy[j])
    off = np.abs(np.sqrt(dx * dx + dy * dy) - np.float32(r[j])) > np.float32(2.0 * tol_px + 1.0)
    bgd = float(near[off].mean()) if off.any() else 1.0  # chance coverage: the dilated support
    return float(ux[j]), float(uy[j]), float(r[j]), float(cover[j]), bgd


def max_pool(a: np.ndarray, k: int) -> np.ndarray:
    """Block maximum of a 2-D array over ``k x k`` blocks (the partial last row/column block dropped).

    Examples
    --------
    >>> max_pool(np.arange(16, dtype=np.float32).reshape(4, 4), 2).tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    if k <= 1:
        return a
    h, w = a.shape[0] // k, a.shape[1] // k
    return a[: h * k, : w * k].reshape(h, k, w, k).max(axis=(1, 3))
