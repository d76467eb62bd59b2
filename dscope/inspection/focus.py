"""Focus metrics on the fiber region (issue 7).

Pure functions: a grey image (and optionally the fiber geometry) in, a number
out.  Two classic sharpness measures are offered:

* ``laplacian_var`` -- variance of the Laplacian (Pech-Pacheco et al. 2000);
* ``tenengrad`` -- mean squared Sobel gradient magnitude (Tenenbaum 1970).

Both grow as the image gets sharper.  They are computed only on the fiber
region (an ellipse around the cladding, when the geometry is known) or, as a
fallback, on a central rectangle, so the ferrule texture and the frame border
do not dominate.  The region is pre-smoothed by a small Gaussian so
that sensor noise does not dominate.  Images of any bit depth are put on the
8-bit grey scale first, so the numbers of a Mono8 and a Mono12 camera are comparable.

The absolute value depends on the scene (contrast, noise, magnification);
what is meaningful is its change while the focus knob turns, or the ratio to
the peak of a focus session.  ``normalize_by_mean`` divides by the squared
mean grey level of the region, which removes the dependence on illumination
level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from dscope.errors import DScopeError, ImageError
from dscope.inspection.types import FiberGeometry
from dscope.params import StrictModel

#: Names accepted by :func:`focus_value` and ``FocusParams.metric``.
FOCUS_METRICS: tuple[str, ...] = ("laplacian_var", "tenengrad")


class FocusParams(StrictModel):
    """How the focus metric is computed (``camera.focus.measure`` in the config)."""

    metric: Literal["laplacian_var", "tenengrad"] = Field(
        "laplacian_var", description="laplacian_var (variance of the Laplacian) or tenengrad (mean squared Sobel gradient)"
    )
    presmooth_sigma_px: float = Field(
        1.0, ge=0, le=5, description="Gaussian pre-smoothing (sensor noise and fine texture suppression); 0 = off"
    )
    laplacian_ksize: Literal[1, 3, 5] = Field(3, description="aperture of cv2.Laplacian")
    sobel_ksize: Literal[3, 5, 7] = Field(3, description="aperture of cv2.Sobel for tenengrad")
    normalize_by_mean: bool = Field(
        False, description="divide by the squared mean grey level of the region (illumination-invariant)"
    )
    roi_radius_factor: float = Field(
        1.15, gt=0.2, le=4.0, description="region = ellipse of this many cladding radii around the fiber centre"
    )
    center_roi_fraction: float = Field(
        0.5, gt=0.05, le=1.0, description="fallback region (no geometry): central rectangle, this fraction of each side"
    )
    min_roi_side_px: int = Field(16, ge=8, le=4096, description="regions smaller than this are refused")


@dataclass(frozen=True)
class FocusMeasurement:
    """One focus measurement.

    ``roi_xywh`` is the bounding box of the measured region in image pixels;
    ``roi_source`` is ``"fiber"`` (ellipse around the cladding) or
    ``"center"`` (the fallback rectangle).
    """

    value: float
    metric_name: str
    roi_xywh: tuple[int, int, int, int]
    roi_source: str


def _to_gray_float(image: np.ndarray) -> np.ndarray:
    """Image as float32 on the 8-bit grey scale; refuses what is not an image."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        img = cv2.cvtColor(img, code)
    if img.ndim != 2:
        raise DScopeError("bad_argument", f"focus metric needs a 2-D grey image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32)
    if img.dtype == np.uint16:
        return img.astype(np.float32) * np.float32(255.0 / 65535.0)
    if np.issubdtype(img.dtype, np.floating):
        if not np.all(np.isfinite(img)):
            raise DScopeError("bad_argument", "focus metric: the image contains NaN or infinite values")
        return img.astype(np.float32)
    raise DScopeError("bad_argument", f"focus metric: unsupported pixel type {img.dtype}")


def _check_region(gray: np.ndarray, min_side_px: int) -> None:
    if min(gray.shape[:2]) < min_side_px:
        raise ImageError(
            "image_too_small", f"focus region {gray.shape[1]}x{gray.shape[0]} px is smaller than {min_side_px} px"
        )


def _masked_mean_var(values: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    if mask is None:
        mean, std = cv2.meanStdDev(values)
    else:
        m = (mask > 0).astype(np.uint8)
        if not m.any():
            raise DScopeError("bad_argument", "focus metric: the region mask is empty")
        mean, std = cv2.meanStdDev(values, mask=m)
    return float(mean[0, 0]), float(std[0, 0]) ** 2


def laplacian_variance(gray: np.ndarray, mask: np.ndarray | None = None, *, ksize: int = 3) -> float:
    """Variance of the Laplacian over the image (or the pixels where ``mask`` > 0).

    Parameters
    ----------
    gray : ndarray
        2-D grey image (uint8, uint16 or float on the 8-bit scale).
    mask : ndarray, optional
        Same shape as ``gray``; only pixels with ``mask > 0`` count.
    ksize : int
        Aperture of :func:`cv2.Laplacian` (1, 3 or 5).

    Returns
    -------
    float
        Larger is sharper; 0 for a flat image.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sharp = (rng.random((64, 64)) > 0.5).astype(np.uint8) * 255
    >>> import cv2
    >>> laplacian_variance(sharp) > laplacian_variance(cv2.GaussianBlur(sharp, (0, 0), 2))
    True
    """
    g = _to_gray_float(gray)
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=ksize, borderType=cv2.BORDER_REPLICATE)
    return _masked_mean_var(lap, mask)[1]


def tenengrad(gray: np.ndarray, mask: np.ndarray | None = None, *, ksize: int = 3) -> float:
    """Tenengrad: mean squared Sobel gradient magnitude over the image (or ``mask`` > 0).

    Parameters
    ----------
    gray : ndarray
        2-D grey image.
    mask : ndarray, optional
        Only pixels with ``mask > 0`` count.
    ksize : int
        Aperture of :func:`cv2.Sobel` (3, 5 or 7).

    Returns
    -------
    float
        Larger is sharper; 0 for a flat image.

    Examples
    --------
    >>> import numpy as np, cv2
    >>> img = np.zeros((64, 64), np.uint8); img[:, 32:] = 200
    >>> tenengrad(img) > tenengrad(cv2.GaussianBlur(img, (0, 0), 3))
    True
    """
    g = _to_gray_float(gray)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=ksize, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=ksize, borderType=cv2.BORDER_REPLICATE)
    mag2 = cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy))
    return _masked_mean_var(mag2, mask)[0]


def center_roi(shape: tuple[int, ...], fraction: float) -> tuple[int, int, int, int]:
    """Central rectangle covering ``fraction`` of each side, as ``(x, y, w, h)``.

    Examples
    --------
    >>> center_roi((100, 200), 0.5)
    (50, 25, 100, 50)
    """
    h, w = int(shape[0]), int(shape[1])
    rw, rh = max(1, int(round(w * fraction))), max(1, int(round(h * fraction)))
    return (w - rw) // 2, (h - rh) // 2, rw, rh


def fiber_roi(
    shape: tuple[int, ...], geometry: FiberGeometry, radius_factor: float
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Bounding box ``(x, y, w, h)`` and mask (box-sized uint8) of the ellipse around the cladding.

    The ellipse follows ``geometry.cladding_ellipse`` when there is one (non-square
    pixels, angled polish) and is scaled by ``radius_factor``; it is clipped to
    the frame.

    Examples
    --------
    >>> from dscope.inspection.types import FiberGeometry
    >>> box, mask = fiber_roi((200, 300), FiberGeometry(center_px=(150.0, 100.0), cladding_radius_px=40.0), 1.0)
    >>> box
    (110, 60, 81, 81)
    >>> bool(mask[40, 40]), bool(mask[0, 0])
    (True, False)
    """
    h, w = int(shape[0]), int(shape[1])
    cx, cy = (float(v) for v in geometry.center_px)
    a = float(geometry.cladding_radius_px) * radius_factor
    if geometry.cladding_ellipse is not None:
        b = float(geometry.cladding_ellipse.semi_minor_px) * radius_factor
        angle = float(geometry.cladding_ellipse.angle_deg)
    else:
        b, angle = a, 0.0
    x0, x1 = max(0, int(np.floor(cx - a))), min(w, int(np.ceil(cx + a)) + 1)
    y0, y1 = max(0, int(np.floor(cy - a))), min(h, int(np.ceil(cy + a)) + 1)
    if x1 <= x0 or y1 <= y0:
        raise DScopeError("bad_argument", "focus region: the fiber lies outside the frame")
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(
        mask,
        (int(round(cx - x0)), int(round(cy - y0))),
        (max(1, int(round(a))), max(1, int(round(b)))),
        angle,
        0,
        360,
        255,
        thickness=-1,
    )
    return (x0, y0, x1 - x0, y1 - y0), mask


def focus_value(gray: np.ndarray, params: FocusParams, mask: np.ndarray | None = None) -> float:
    """The configured metric of ``gray`` (already cropped to the region), optionally masked.

    The region is first smoothed with ``params.presmooth_sigma_px`` (a
    Laplacian-of-Gaussian style measure): without it sensor noise and
    fine ferrule texture, which do not change with focus, dominate the sum.
    """
    if params.presmooth_sigma_px > 0:
        gray = cv2.GaussianBlur(
            _to_gray_float(gray), (0, 0), params.presmooth_sigma_px, borderType=cv2.BORDER_REPLICATE
        )
    if params.metric == "laplacian_var":
        v = laplacian_variance(gray, mask, ksize=params.laplacian_ksize)
    else:
        v = tenengrad(gray, mask, ksize=params.sobel_ksize)
    if params.normalize_by_mean:
        mean = _masked_mean_var(_to_gray_float(gray), mask)[0]
        v = v / max(mean * mean, 1.0)
    return float(v)


def measure_focus(
    gray: np.ndarray,
    params: FocusParams,
    geometry: FiberGeometry | None = None,
    roi_xywh: tuple[int, int, int, int] | None = None,
) -> FocusMeasurement:
    """Focus metric on the fiber region of a frame.

    Parameters
    ----------
    gray : ndarray
        Full 2-D grey frame.
    params : FocusParams
        Metric and region settings.
    geometry : FiberGeometry, optional
        Fiber found in this (or a recent) frame; the region is the ellipse of
        ``params.roi_radius_factor`` cladding radii around it.
    roi_xywh : tuple, optional
        Explicit rectangle, used when ``geometry`` is None.  Without either,
        the central ``params.center_roi_fraction`` rectangle is used.

    Returns
    -------
    FocusMeasurement

    Raises
    ------
    DScopeError
        ``bad_argument`` for a non-image, ``image_too_small`` when the region is
        smaller than ``params.min_roi_side_px``.

    Examples
    --------
    >>> import numpy as np, cv2
    >>> rng = np.random.default_rng(1)
    >>> img = (rng.random((120, 160)) * 255).astype(np.uint8)
    >>> p = FocusParams()
    >>> measure_focus(img, p).value > measure_focus(cv2.GaussianBlur(img, (0, 0), 2), p).value
    True
    """
    img = np.asarray(gray)
    if img.ndim < 2:
        raise DScopeError("bad_argument", f"focus metric needs a 2-D grey image, got shape {img.shape}")
    mask = None
    if geometry is not None:
        (x, y, w, h), mask = fiber_roi(img.shape, geometry, params.roi_radius_factor)
        source = "fiber"
    elif roi_xywh is not None:
        x, y, w, h = (int(v) for v in roi_xywh)
        x, y = max(0, x), max(0, y)
        w, h = min(w, img.shape[1] - x), min(h, img.shape[0] - y)
        source = "roi"
    else:
        x, y, w, h = center_roi(img.shape, params.center_roi_fraction)
        source = "center"
    if w <= 0 or h <= 0:
        raise DScopeError("bad_argument", "focus region lies outside the frame")
    crop = img[y : y + h, x : x + w]
    _check_region(crop, params.min_roi_side_px)
    return FocusMeasurement(focus_value(crop, params, mask), params.metric, (x, y, w, h), source)
