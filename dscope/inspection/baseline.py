"""Faithful DO2MR + LEI of Mei et al. (2018), the benchmark baseline (pure functions).

Mei, S. et al., "Automated Inspection of Defects in Optical Fiber Connector
End Face Using Novel Morphology Approaches", Sensors 18(5), 1408 (2018).

* DO2MR (region defects): median-filtered image, residual
  ``I_r = max_filter(I) - min_filter(I)`` in a small square window, sigma rule
  ``I_r > mean + gamma * std`` computed separately in every zone, then a
  median filter and an opening remove isolated pixels.
* LEI (scratches): the zone is histogram-equalised; line detectors at
  ``n`` orientations give ``s = 2 * mean(centre line) - mean(side lines)``;
  every orientation is thresholded with the sigma rule of the zone and the
  binary maps are united.  The paper's scratches are bright after
  equalisation; to be generous to the baseline, the same detector is also run
  on the inverted image (dark scratches) and both are united.

Nothing here uses the project's background model, fusion or classifier: the
baseline labels each region ``scratch`` (mostly LEI pixels) or ``region``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dscope.inspection.detect import BaselineParams
from dscope.inspection.methods import do2mr, line_kernels
from dscope.inspection.types import ZoneMask


@dataclass
class BaselineResult:
    """Regions found by the baseline; ``labels`` is ROI-sized (0 = background)."""

    roi_xywh: tuple[int, int, int, int]
    labels: np.ndarray
    classes: dict[int, str]  # label -> "scratch" | "region"


def _sigma_rule(resp: np.ndarray, zone: np.ndarray, gamma: float) -> np.ndarray:
    v = resp[zone]
    if v.size == 0:
        return np.zeros_like(zone)
    return zone & (resp > float(v.mean()) + gamma * float(v.std()))


def _equalise_zone(img: np.ndarray, zone: np.ndarray) -> np.ndarray:
    """Histogram equalisation using only the zone's pixels (others keep a mapped value)."""
    hist = np.bincount(img[zone].ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist)
    if cdf[-1] <= 0:
        return img.copy()
    lut = np.round(255.0 * (cdf - cdf[np.flatnonzero(hist)[0]]) / max(cdf[-1] - cdf[np.flatnonzero(hist)[0]], 1))
    return np.clip(lut, 0, 255).astype(np.uint8)[img]


def baseline_detect(gray: np.ndarray, zones: list[ZoneMask], params: BaselineParams) -> BaselineResult:
    """Run DO2MR + LEI zone by zone on the ROI of ``zones``.

    Examples
    --------
    >>> from dscope.config import load_config
    >>> p = load_config().profile("deep_inspection").detection.baseline
    >>> g = np.full((64, 64), 100, np.uint8)
    >>> z = ZoneMask("cladding", 0, 125, 0, 30, np.ones((64, 64), bool), (0, 0, 64, 64))
    >>> int(baseline_detect(g, [z], p).labels.max())
    0
    """
    x0, y0, w, h = zones[0].roi_xywh
    img = np.ascontiguousarray(np.asarray(gray)[y0:y0 + h, x0:x0 + w])
    med = cv2.medianBlur(img, params.median_ksize_px) if params.median_ksize_px > 1 else img
    resid = do2mr(med, params.do2mr_window_px)
    kernels = line_kernels(params.lei_length_px, params.lei_side_offset_px, params.lei_orientations)
    region = np.zeros((h, w), bool)
    lines = np.zeros((h, w), bool)
    open_k = cv2.getStructuringElement(cv2.MORPH_RECT, (params.opening_px, params.opening_px))
    for z in zones:  # a few zones
        zm = np.asarray(z.mask, bool)
        if not zm.any():
            continue
        b = _sigma_rule(resid, zm, params.do2mr_gamma).astype(np.uint8) * 255
        if params.median_ksize_px > 1:
            b = cv2.medianBlur(b, params.median_ksize_px)
        b = cv2.morphologyEx(b, cv2.MORPH_OPEN, open_k)
        region |= b > 0
        eq = _equalise_zone(img, zm).astype(np.float32)
        for src in (eq, 255.0 - eq):  # bright lines, then (generous) dark lines
            for k in kernels:  # orientations
                s = cv2.filter2D(src, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)
                lines |= _sigma_rule(s, zm, params.lei_gamma)
    lines_u8 = cv2.morphologyEx(lines.astype(np.uint8), cv2.MORPH_OPEN, open_k) > 0
    union = (region | lines_u8).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(union, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= params.min_area_px
    keep[0] = False
    line_px = np.bincount(lab[lines_u8], minlength=n)
    newid = np.zeros(n, np.int32)
    ids = np.flatnonzero(keep)
    newid[ids] = np.arange(1, ids.size + 1)
    classes = {
        int(newid[i]): ("scratch" if line_px[i] >= 0.5 * stats[i, cv2.CC_STAT_AREA] else "region") for i in ids
    }
    return BaselineResult(roi_xywh=(x0, y0, w, h), labels=newid[lab], classes=classes)
