"""Image normalisation and illumination checks (pure functions)."""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from dscope.params import StrictModel


class PreprocessParams(StrictModel):
    """Settings of :func:`to_gray8` and :func:`illumination_check`."""

    sixteen_bit_percentile_low: float = Field(ge=0, le=50)
    sixteen_bit_percentile_high: float = Field(ge=50, le=100)
    dark_mean_level: float = Field(ge=0, le=255, description="mean grey below which the image is underexposed")
    bright_mean_level: float = Field(ge=0, le=255, description="mean grey above which the image is overexposed")
    clipped_fraction_warn: float = Field(gt=0, le=1, description="share of pixels at 0 or 255 that triggers a warning")
    min_dynamic_range: float = Field(ge=0, le=255, description="p99 - p1 grey levels below which contrast is poor")
    histogram_stride_px: int = Field(
        ge=1, le=16, description="the exposure histogram samples every n-th pixel of every n-th row"
    )


def to_gray8(image: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """Convert any decoded image to single-channel 8-bit grey.

    Colour images (BGR or BGRA, as decoded by OpenCV) are converted with the
    standard luma weights; 16-bit and float images are stretched between the
    configured percentiles so that the full 8-bit range is used.

    Examples
    --------
    >>> import numpy as np
    >>> p = PreprocessParams(sixteen_bit_percentile_low=0.1, sixteen_bit_percentile_high=99.9,
    ...     dark_mean_level=20, bright_mean_level=235, clipped_fraction_warn=0.05, min_dynamic_range=20,
    ...     histogram_stride_px=2)
    >>> to_gray8(np.full((4, 4, 3), 200, np.uint8), p).dtype
    dtype('uint8')
    """
    img = np.asarray(image)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            raise ValueError(f"unsupported channel count {img.shape[2]}")
    elif img.ndim != 2:
        raise ValueError(f"unsupported image dimensions {img.shape}")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    f = img.astype(np.float32)
    lo, hi = np.percentile(f, [params.sixteen_bit_percentile_low, params.sixteen_bit_percentile_high])
    if hi <= lo:
        hi = lo + 1.0
    out = (f - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def illumination_check(gray: np.ndarray, params: PreprocessParams) -> tuple[dict, list[str]]:
    """Histogram statistics and human warnings about exposure and contrast.

    Returns
    -------
    stats : dict
        ``mean``, ``p1``, ``p99``, ``clipped_dark_fraction``, ``clipped_bright_fraction``.
    warnings : list of str
        Empty when the illumination looks usable.
    """
    step = params.histogram_stride_px
    sample = gray if step == 1 else np.ascontiguousarray(gray[::step, ::step])
    hist = cv2.calcHist([sample], [0], None, [256], [0, 256]).ravel()
    n = float(hist.sum()) or 1.0
    cdf = np.cumsum(hist) / n
    p1 = float(np.searchsorted(cdf, 0.01))
    p99 = float(np.searchsorted(cdf, 0.99))
    mean = float((hist * np.arange(256)).sum() / n)
    dark = float(hist[0] / n)
    bright = float(hist[255] / n)
    stats = {
        "mean": round(mean, 2),
        "p1": p1,
        "p99": p99,
        "clipped_dark_fraction": round(dark, 5),
        "clipped_bright_fraction": round(bright, 5),
    }
    warnings: list[str] = []
    if mean < params.dark_mean_level:
        warnings.append(f"poor illumination: image is dark (mean grey {mean:.0f} < {params.dark_mean_level:g})")
    if mean > params.bright_mean_level:
        warnings.append(f"poor illumination: image is bright (mean grey {mean:.0f} > {params.bright_mean_level:g})")
    if bright > params.clipped_fraction_warn:
        warnings.append(f"poor illumination: {bright:.1%} of pixels saturated")
    if (p99 - p1) < params.min_dynamic_range:
        warnings.append(f"poor illumination: low contrast (p99-p1 = {p99 - p1:.0f} grey levels)")
    return stats, warnings
