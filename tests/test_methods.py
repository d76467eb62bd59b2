"""Unit tests of the individual detectors and building blocks in dscope.inspection.methods."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dscope.inspection import methods as M
from dscope.inspection.types import Ellipse, FiberGeometry


def test_normalized_radius_map_matches_geometry_for_an_ellipse():
    geo = FiberGeometry(
        center_px=(60.3, 47.8), cladding_radius_px=40.0,
        cladding_ellipse=Ellipse((60.3, 47.8), 40.0, 40.0 / 1.09, 27.0),
    )
    r = M.normalized_radius_map((90, 120), (5, 3), geo.center_px, geo.axis_ratio, geo.angle_deg)
    rng = np.random.default_rng(0)
    ys = rng.integers(0, 90, 50)
    xs = rng.integers(0, 120, 50)
    ref = geo.normalized_radius(np.stack([xs + 5, ys + 3], 1))
    np.testing.assert_allclose(r[ys, xs], ref, rtol=1e-4, atol=1e-3)


def test_normalized_radius_map_downscaled_is_scaled():
    full = M.normalized_radius_map((40, 40), (0, 0), (20.0, 20.0), 1.0, 0.0, 1.0)
    half = M.normalized_radius_map((20, 20), (0, 0), (20.0, 20.0), 1.0, 0.0, 0.5)
    # pixel (i, j) of the half map is image point (2j, 2i); radius in half-scale pixels
    assert half[5, 15] == pytest.approx(full[10, 30] / 2, rel=1e-5)


def test_binned_median_matches_numpy_median():
    rng = np.random.default_rng(1)
    vals = rng.integers(0, 256, 5000).astype(np.uint8)
    bins = rng.integers(0, 7, 5000)
    med = M.binned_median(vals, bins, 7, 1)
    for b in range(7):
        assert abs(med[b] - np.median(vals[bins == b])) <= 1.0


def test_binned_median_fills_sparse_bins_by_interpolation():
    vals = np.array([10] * 20 + [30] * 20, np.uint8)
    bins = np.array([0] * 20 + [2] * 20)
    med = M.binned_median(vals, bins, 3, 5)
    assert 10 < med[1] < 30


def test_group_robust_stats_median_and_sigma():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.normal(5, 2, 4000), rng.normal(-3, 0.5, 4000)]).astype(np.float32)
    g = np.repeat([0, 1], 4000)
    med, sig = M.group_robust_stats(v, g, 3, 100, (99.0, 99.0))
    assert med[0] == pytest.approx(5, abs=0.15) and sig[0] == pytest.approx(2, rel=0.1)
    assert med[1] == pytest.approx(-3, abs=0.05) and sig[1] == pytest.approx(0.5, rel=0.1)
    assert med[2] == 99.0 and sig[2] == 99.0  # empty group gets the fallback


def _radial_scene(shading: float, seed: int = 3):
    rng = np.random.default_rng(seed)
    h = w = 160
    r = M.normalized_radius_map((h, w), (0, 0), (80.0, 80.0), 1.0, 0.0)
    base = np.where(r < 60, 70.0, 150.0) - 20 * (np.abs(r - 60) < 1.0)  # glass, ferrule, rim line
    base = base + np.where(r < 10, 8.0, 0.0)  # core step
    xx = np.arange(w)[None, :] / (w - 1) * 2 - 1
    gain = 1.0 + shading * xx
    img = np.clip(base * gain + rng.normal(0, 2, (h, w)), 0, 255).astype(np.uint8)
    return img, r


@pytest.mark.parametrize("degree,shading", [(0, 0.0), (1, 0.15), (2, 0.15)])
def test_radial_background_flattens_zone_steps_rim_and_shading(degree, shading):
    img, r = _radial_scene(shading)
    bg, profile = M.radial_profile_background(img, r, np.ones(img.shape, bool), 0.5, 5, degree, 4, 3.0)
    res = img.astype(np.float32) - bg
    inner = (np.abs(r - 60) > 3) & (r < 75)
    # away from the steep boundary the residual is noise-like; the raw image has steps of 80 grey levels
    assert M.robust_sigma(res[inner]) < 3.0
    assert np.abs(np.median(res[inner])) < 1.0
    assert profile.size > 0


def test_radial_sigma_profile_rises_on_a_misfit_boundary():
    rng = np.random.default_rng(4)
    r = M.normalized_radius_map((120, 120), (0, 0), (60.0, 60.0), 1.0, 0.0)
    res = rng.normal(0, 1, r.shape).astype(np.float32)
    ang = np.arctan2(*np.mgrid[-60:60, -60:60])
    res += (np.abs(r - 40) < 1.5) * 8 * np.sin(ang)  # boundary residual that changes sign with angle
    s = M.radial_sigma_profile(res, r, np.ones(r.shape, bool), 1.0, 5, 0.25)
    assert s[60, 100] > 3 * s[60, 80]


def test_do2mr_zero_on_flat_and_positive_around_a_spot():
    img = np.full((21, 21), 50, np.float32)
    assert float(M.do2mr(img, 5).max()) == 0.0
    img[10, 10] = 20
    out = M.do2mr(img, 5)
    assert out[10, 12] == pytest.approx(30) and out[10, 14] == 0


def test_black_hat_sees_small_dark_spots_not_large_areas():
    img = np.full((80, 80), 100, np.float32)
    img[10:14, 10:14] = 60  # small dark spot
    img[30:70, 30:70] = 60  # large dark area
    bh = M.black_hat(img, 9)
    assert bh[12, 12] == pytest.approx(40)
    assert bh[50, 50] == pytest.approx(0)
    th = M.top_hat(255 - img, 9)
    assert th[12, 12] == pytest.approx(40)


def test_morph_gradient_on_edges_only():
    img = np.zeros((30, 30), np.float32)
    img[:, 15:] = 10
    g = M.morph_gradient(img, 3)
    assert g[10, 14] == 10 and g[10, 5] == 0 and g[10, 25] == 0


def test_line_kernels_respond_to_lines_of_every_orientation():
    ks = M.line_kernels(7, 2, 12)
    # 2 * centre mean - side mean: a flat field of level b answers b (as in the paper)
    assert all(abs(float(k.sum()) - 1.0) < 1e-5 for k in ks)
    responses = []
    for ang in (0, 30, 75, 90, 135):
        img = np.zeros((61, 61), np.float32)
        t = math.radians(ang)
        p0 = (int(30 - 25 * math.cos(t)), int(30 - 25 * math.sin(t)))
        p1 = (int(30 + 25 * math.cos(t)), int(30 + 25 * math.sin(t)))
        cv2.line(img, p0, p1, -10.0, 1)  # dark line
        bright, dark = M.lei_response(img, ks)
        responses.append(dark[28:33, 28:33].max())  # the drawn line passes within a pixel of the centre
        assert dark[28:33, 28:33].max() > bright[28:33, 28:33].max()
    assert min(responses) > 0.5 * max(responses)


def test_lei_prefers_lines_over_blobs():
    ks = M.line_kernels(7, 2, 12)
    img = np.zeros((61, 61), np.float32)
    img[30, 5:56] = 10
    line_resp = M.lei_response(img, ks)[0][30, 30]
    blob = np.zeros((61, 61), np.float32)
    blob[22:39, 22:39] = 10
    blob_resp = M.lei_response(blob, ks)[0][30, 30]
    assert line_resp > 1.5 * blob_resp


def test_skeleton_lines_keeps_long_straight_lines_only():
    b = np.zeros((120, 120), np.uint8)
    cv2.line(b, (10, 20), (110, 90), 1, 3)
    rng = np.random.default_rng(5)
    noise = (rng.random((120, 120)) < 0.02).astype(np.uint8)
    out = M.skeleton_lines(b | noise, 30, 3, 15, 20000, 50, 3)
    assert out[55, 60] or out[54, 60] or out[56, 60] or out[55, 59]  # on the line
    assert out.sum() > 60
    assert not out[100, 10]  # nothing far from it
    only_noise = M.skeleton_lines(noise, 30, 3, 15, 20000, 50, 3)
    assert only_noise.sum() == 0


def test_skeleton_lines_bounded_on_a_pure_noise_frame():
    rng = np.random.default_rng(6)
    noise = (rng.random((300, 300)) < 0.3).astype(np.uint8)
    out = M.skeleton_lines(noise, 20, 2, 10, 500, 5, 3)
    assert out.shape == noise.shape  # finishes, with work capped by max_points / max_lines


def test_strength_ramp():
    s = M.strength(np.array([-1.0, 2.0, 4.0, 10.0], np.float32), 2.0, 6.0)
    assert s.tolist() == [0.0, 0.0, 0.5, 1.0]


def test_hessian_ridge_sees_thin_lines_of_both_polarities_above_noise():
    rng = np.random.default_rng(31)
    base = rng.normal(100, 2.0, (64, 64)).astype(np.float32)
    for sign in (-1.0, 1.0):
        im = base.copy()
        im[:, 32] += sign * 12.0  # one pixel wide line
        r = M.hessian_ridge(im, 1.0)
        line = float(np.median(r[8:-8, 32]))
        noise = float(np.percentile(r[8:-8, 4:20], 99))
        assert line > noise


def test_max_pool_equals_block_maximum():
    rng = np.random.default_rng(32)
    a = rng.normal(size=(13, 10)).astype(np.float32)
    p = M.max_pool(a, 3)
    assert p.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert p[i, j] == a[3 * i:3 * i + 3, 3 * j:3 * j + 3].max()


def test_group_robust_stats_match_numpy_per_group():
    rng = np.random.default_rng(33)
    g = rng.integers(0, 6, 2000)
    v = (rng.normal(size=2000) * (g + 1) + g).astype(np.float32)
    med, sig = M.group_robust_stats(v, g, 8, 30, (-1.0, 5.0))
    for k in range(6):
        s = v[g == k]
        assert med[k] == pytest.approx(np.median(s), abs=1e-5)
        assert sig[k] == pytest.approx(M.MAD_TO_SIGMA * np.median(np.abs(s - np.median(s))), rel=1e-4)
    assert med[6] == -1.0 and sig[7] == 5.0  # empty groups get the fallback


def test_hessian_line_keeps_lines_and_rejects_blobs_of_equal_contrast():
    rng = np.random.default_rng(34)
    yy, xx = np.mgrid[0:96, 0:96]
    for sign in (-1.0, 1.0):
        im = rng.normal(100, 1.0, (96, 96)).astype(np.float32)
        im += sign * 8.0 * np.exp(-0.5 * ((xx - 30) / 1.5) ** 2).astype(np.float32)  # a 3-4 px wide line
        im += sign * 8.0 * np.exp(-0.5 * ((xx - 72) ** 2 + (yy - 48) ** 2) / 1.5 ** 2).astype(np.float32)  # a blob
        line = M.hessian_line(im, 1.5)
        ridge = M.hessian_ridge(im, 1.5)
        on_line = float(np.median(line[10:-10, 30]))
        on_blob = float(line[48, 72])
        assert on_line > 4 * float(np.percentile(line[:, 45:60], 99))  # above the noise
        assert on_blob < 0.4 * float(ridge[48, 72])  # the blob's curvature is (up to noise) removed ...
        assert on_blob < 0.5 * on_line  # ... and it reads far below a line of the same contrast
        # along a straight line the two measures agree (no curvature along the line)
        assert abs(on_line - float(np.median(ridge[10:-10, 30]))) < 0.2 * on_line
