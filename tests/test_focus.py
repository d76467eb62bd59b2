"""Focus metrics (dscope.inspection.focus) and focus-session logic (dscope.hardware.focus_tracker)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from dscope.errors import DScopeError
from dscope.hardware.base import Frame
from dscope.hardware.config import AutoCaptureConfig
from dscope.hardware.focus_tracker import FocusTracker
from dscope.inspection.focus import (
    FocusParams,
    center_roi,
    fiber_roi,
    laplacian_variance,
    measure_focus,
    tenengrad,
)
from dscope.inspection.types import Ellipse, FiberGeometry
from dscope.synth import random_spec, render

BLURS = (6.0, 4.0, 2.5, 1.5, 0.8)  # decreasing blur = increasing sharpness


def _sweep(seed: int, scenario: str = "mixed"):
    spec = random_spec(np.random.default_rng(seed), scenario, width=480, height=360)
    out = []
    for k, s in enumerate(BLURS):
        img, truth = render(dataclasses.replace(spec, blur_sigma_px=s, seed=spec.seed + 101 * k))
        out.append((img, truth))
    return out


def _truth_geometry(truth) -> FiberGeometry:
    return FiberGeometry(center_px=truth.center_px, cladding_radius_px=truth.cladding_radius_px,
                         cladding_ellipse=truth.ellipse)


@pytest.mark.parametrize("metric", ["laplacian_var", "tenengrad"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metric_increases_as_blur_decreases_on_fiber_region(metric, seed):
    params = FocusParams(metric=metric)
    values = [measure_focus(img, params, _truth_geometry(t)).value for img, t in _sweep(seed)]
    assert all(b > a for a, b in zip(values, values[1:])), values
    assert values[-1] > 1.5 * values[0]


def test_presmoothing_makes_the_metric_insensitive_to_sensor_noise():
    rng = np.random.default_rng(5)
    img, truth = _sweep(7)[-1]
    noisy = np.clip(img.astype(np.float32) + rng.normal(0, 4.0, img.shape), 0, 255).astype(np.uint8)
    g = _truth_geometry(truth)
    raw = FocusParams(presmooth_sigma_px=0.0)
    smooth = FocusParams(presmooth_sigma_px=1.0)
    change_raw = measure_focus(noisy, raw, g).value / measure_focus(img, raw, g).value
    change_smooth = measure_focus(noisy, smooth, g).value / measure_focus(img, smooth, g).value
    assert abs(change_smooth - 1) < abs(change_raw - 1)


def test_measure_uses_fiber_ellipse_region_and_center_fallback():
    img, truth = _sweep(4)[-1]
    p = FocusParams()
    m_fiber = measure_focus(img, p, _truth_geometry(truth))
    assert m_fiber.roi_source == "fiber"
    x, y, w, h = m_fiber.roi_xywh
    cx, cy = truth.center_px
    assert x <= cx <= x + w and y <= cy <= y + h
    assert w <= 2 * p.roi_radius_factor * truth.cladding_radius_px + 3
    m_center = measure_focus(img, p)
    assert m_center.roi_source == "center"
    assert m_center.roi_xywh == center_roi(img.shape, p.center_roi_fraction)


def test_fiber_roi_mask_follows_ellipse_and_clips_to_frame():
    g = FiberGeometry(center_px=(20.0, 50.0), cladding_radius_px=30.0,
                      cladding_ellipse=Ellipse((20.0, 50.0), 30.0, 15.0, 0.0))
    (x, y, w, h), mask = fiber_roi((100, 200), g, 1.0)
    assert x == 0 and mask.shape == (h, w)
    ys, xs = np.nonzero(mask)
    # horizontal major axis: extent in x (clipped at 0 on the left) > extent in y
    assert ys.max() - ys.min() <= 2 * 15 + 2
    assert xs.max() - xs.min() > ys.max() - ys.min()


def test_ignores_texture_outside_the_region():
    rng = np.random.default_rng(0)
    img = np.full((200, 200), 100, np.uint8)
    g = FiberGeometry(center_px=(100.0, 100.0), cladding_radius_px=30.0)
    busy = img.copy()
    busy[:40, :] = (rng.random((40, 200)) * 255).astype(np.uint8)  # far from the fiber
    p = FocusParams()
    assert measure_focus(busy, p, g).value == pytest.approx(measure_focus(img, p, g).value)
    assert measure_focus(busy, p, roi_xywh=(0, 0, 200, 200)).value > measure_focus(img, p, roi_xywh=(0, 0, 200, 200)).value


def test_sixteen_bit_on_the_eight_bit_scale_and_normalization():
    img, truth = _sweep(9)[-1]
    g = _truth_geometry(truth)
    p = FocusParams()
    v8 = measure_focus(img, p, g).value
    v16 = measure_focus(img.astype(np.uint16) * 257, p, g).value
    assert v16 == pytest.approx(v8, rel=1e-3)
    pn = FocusParams(normalize_by_mean=True)
    dim = (img.astype(np.float32) * 0.5).astype(np.float32)
    assert measure_focus(dim, pn, g).value == pytest.approx(measure_focus(img.astype(np.float32), pn, g).value, rel=1e-3)
    assert measure_focus(dim, p, g).value < 0.5 * v8


def test_flat_image_scores_zero_and_bad_inputs_have_codes():
    flat = np.full((64, 64), 80, np.uint8)
    assert laplacian_variance(flat) == pytest.approx(0.0, abs=1e-6)
    assert tenengrad(flat) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(DScopeError) as e:
        measure_focus(np.zeros((10,), np.uint8), FocusParams())
    assert e.value.code == "bad_argument"
    with pytest.raises(DScopeError) as e:
        measure_focus(np.zeros((12, 12), np.uint8), FocusParams())
    assert e.value.code == "image_too_small"
    with pytest.raises(DScopeError) as e:
        laplacian_variance(np.full((32, 32), np.nan, np.float32))
    assert e.value.code == "bad_argument"
    with pytest.raises(DScopeError) as e:
        laplacian_variance(np.zeros((32, 32), bool))
    assert e.value.code == "bad_argument"


def test_color_input_is_converted():
    img, _ = _sweep(2)[-1]
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    assert laplacian_variance(bgr) == pytest.approx(laplacian_variance(img), rel=1e-4)


# ---------------------------------------------------------------------------------- tracker


def _frame(i: int) -> Frame:
    return Frame(image=np.full((4, 4), i, np.uint8), frame_id=i, serial="t", host_time_s=float(i), kind="preview")


def test_tracker_captures_sharpest_frame_of_a_stable_plateau_once():
    auto = AutoCaptureConfig(enabled=True, stable_frames=3, tolerance_fraction=0.1)
    t = FocusTracker(auto, peak_window_s=100.0)
    metrics = [10, 30, 60, 98, 100, 99, 99.5, 98.7, 100.2]
    captures = []
    for i, m in enumerate(metrics):
        u = t.update(m, float(i), _frame(i))
        if u.capture is not None:
            captures.append((i, u.capture.frame_id))
    assert len(captures) == 1
    i, fid = captures[0]
    window = range(i - 2, i + 1)
    assert fid in window and metrics[fid] == max(metrics[j] for j in window)


def test_tracker_rearms_after_leaving_the_plateau_and_respects_min_metric():
    auto = AutoCaptureConfig(enabled=True, stable_frames=2, tolerance_fraction=0.05, min_metric=50.0)
    t = FocusTracker(auto, peak_window_s=3.0)
    seq = [100, 100, 100, 40, 40, 100, 100]
    caps = [i for i, m in enumerate(seq) if t.update(m, float(i), _frame(i)).capture is not None]
    assert caps == [1, 6]
    low = FocusTracker(auto, peak_window_s=3.0)
    assert all(low.update(10.0, float(i), _frame(i)).capture is None for i in range(6))


def test_tracker_peak_forgets_old_history_and_disabled_never_captures():
    t = FocusTracker(AutoCaptureConfig(enabled=False, stable_frames=2), peak_window_s=2.0)
    t.update(500.0, 0.0)
    assert t.peak == 500.0
    for i in range(1, 6):
        u = t.update(50.0, float(i), _frame(i))
        assert u.capture is None
    assert t.peak == 50.0 and u.stable and u.relative == pytest.approx(1.0)
    assert t.last_peak == 50.0
    t.reset()
    assert t.peak == 0.0 and t.last_peak == 50.0
