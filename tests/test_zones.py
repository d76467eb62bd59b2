"""Zone masks, ROI and point-to-zone assignment (circular and elliptical, with and without a scale)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dscope.errors import DScopeError
from dscope.inspection.types import Ellipse, FiberGeometry, Scale, ZoneDef
from dscope.inspection.zones import build_zone_masks, fiber_roi, zone_of_points, zone_px_per_um
from dscope.synth import SynthSpec, ZONES_SM, render

IEC_SM = [ZoneDef(n, a, b) for n, a, b in ZONES_SM]


def _circle(cx=200.3, cy=180.7, r=100.0) -> FiberGeometry:
    return FiberGeometry(center_px=(cx, cy), cladding_radius_px=r)


def _ellipse(cx=210.2, cy=170.9, a=110.0, ratio=1.3, angle=25.0) -> FiberGeometry:
    e = Ellipse(center_px=(cx, cy), semi_major_px=a, semi_minor_px=a / ratio, angle_deg=angle)
    return FiberGeometry(center_px=(cx, cy), cladding_radius_px=a, cladding_ellipse=e)


def test_px_per_um_from_scale_and_from_cladding():
    g = _circle(r=250.0)
    assert zone_px_per_um(g, Scale(0.25, "um_per_px"), 125.0) == pytest.approx(4.0)
    # pixel-only: the cladding boundary stands for the nominal diameter
    assert zone_px_per_um(g, Scale(None), 125.0) == pytest.approx(250.0 / 62.5)
    with pytest.raises(DScopeError) as exc:
        zone_px_per_um(g, Scale(None), 0.0)
    assert exc.value.code == "bad_argument"


@pytest.mark.parametrize("geom", [_circle(), _ellipse()], ids=["circle", "ellipse"])
def test_masks_are_disjoint_annuli_with_expected_area(geom):
    ppu = 0.8
    shape = (400, 460)
    outer = max(z.outer_um for z in IEC_SM) / 2 * ppu
    roi = fiber_roi(shape, geom, outer, 3)
    masks = build_zone_masks(shape, geom, IEC_SM, ppu, roi)
    assert [m.name for m in masks] == [z.name for z in IEC_SM]
    stack = np.stack([m.mask for m in masks])
    assert stack.shape[1:] == (roi[3], roi[2])
    assert stack.sum(axis=0).max() <= 1  # disjoint
    for m in masks:
        expect = math.pi * (m.outer_px**2 - m.inner_px**2) / geom.axis_ratio
        assert abs(m.mask.sum() - expect) / expect < 0.03
        assert m.inner_px == pytest.approx(m.inner_um / 2 * ppu)


def test_mask_membership_matches_zone_of_points():
    geom = _ellipse(angle=-40.0, ratio=1.09)
    ppu = 0.9
    shape = (420, 480)
    roi = fiber_roi(shape, geom, 125 * ppu, 0)
    masks = build_zone_masks(shape, geom, IEC_SM, ppu, roi)
    rng = np.random.default_rng(1)
    x0, y0, w, h = roi
    xs = rng.integers(x0, x0 + w, 400)
    ys = rng.integers(y0, y0 + h, 400)
    names = zone_of_points(np.stack([xs, ys], axis=1), geom, IEC_SM, ppu)
    for x, y, n in zip(xs, ys, names):
        hit = [m.name for m in masks if m.mask[y - y0, x - x0]]
        assert hit == ([] if n is None else [n])


def test_pixel_only_zones_scale_with_the_detected_cladding():
    geom = _circle(r=80.0)
    ppu = zone_px_per_um(geom, Scale(None), 125.0)
    masks = build_zone_masks((300, 300), geom, IEC_SM, ppu, fiber_roi((300, 300), geom, 160.0, 0))
    adhesive = next(m for m in masks if m.name == "adhesive")
    # the cladding boundary (125 um) lies inside the adhesive zone 115..135 um
    assert adhesive.inner_px < geom.cladding_radius_px < adhesive.outer_px
    assert adhesive.inner_px == pytest.approx(80.0 * 115 / 125)


def test_roi_is_clipped_and_can_be_empty():
    g = _circle(cx=10.0, cy=15.0, r=50.0)
    x, y, w, h = fiber_roi((100, 120), g, 50.0, 4)
    assert (x, y) == (0, 0) and 0 < w <= 120 and 0 < h <= 100
    far = _circle(cx=-500.0, cy=-500.0, r=20.0)
    assert fiber_roi((100, 120), far, 20.0, 2)[2:] == (0, 0)
    assert build_zone_masks((100, 120), far, IEC_SM, 1.0, fiber_roi((100, 120), far, 20.0, 2))[0].mask.size == 0


def test_invalid_zone_and_arguments():
    g = _circle()
    with pytest.raises(DScopeError) as exc:
        build_zone_masks((400, 400), g, [ZoneDef("core", 30, 20)], 1.0, (0, 0, 400, 400))
    assert exc.value.code == "rule_set_invalid"
    with pytest.raises(DScopeError) as exc:
        build_zone_masks((400, 400), g, IEC_SM, -1.0, (0, 0, 400, 400))
    assert exc.value.code == "bad_argument"
    with pytest.raises(DScopeError):
        build_zone_masks((400, 400), g, IEC_SM, 1.0, (300, 300, 200, 200))
    assert zone_of_points(np.zeros((0, 2)), g, IEC_SM, 1.0) == []


@pytest.mark.parametrize("seed, ratio", [(3, 1.0), (4, 1.09)])
def test_zones_of_synthetic_defects_match_truth(seed, ratio):
    """Zone assignment from the true geometry reproduces the generator's zone of each defect centroid."""
    from dscope.synth import DefectSpec

    spec = SynthSpec(width=640, height=480, seed=seed, axis_ratio=ratio, ellipse_angle_deg=30.0,
                     defects=[DefectSpec("pit", zone=z) for z in ("core", "cladding", "adhesive", "contact")])
    _, t = render(spec)
    geom = t.geometry()
    ppu = 1.0 / t.um_per_px
    names = zone_of_points(np.array([d.centroid_px for d in t.defects]), geom, IEC_SM, ppu)
    assert len(t.defects) >= 3
    for d, n in zip(t.defects, names):
        assert n == d.zone


def test_select_zones_and_crops():
    from dscope.inspection.zones import select_zones, zone_crop

    assert [z.name for z in select_zones(IEC_SM, ["contact", "core"])] == ["core", "contact"]
    assert select_zones(IEC_SM, None) == IEC_SM
    with pytest.raises(DScopeError) as exc:
        select_zones(IEC_SM, ["ferrule"])
    assert exc.value.code == "bad_argument" and "ferrule" in exc.value.message
    geom = _circle()
    gray = np.random.default_rng(3).integers(1, 255, (400, 460)).astype(np.uint8)
    roi = fiber_roi(gray.shape, geom, 125 * 0.8, 2)
    for m in build_zone_masks(gray.shape, geom, IEC_SM, 0.8, roi):
        crop = zone_crop(gray, m)
        x, y, w, h = m.roi_xywh
        assert crop.shape == (h, w)
        assert np.array_equal(crop[m.mask], gray[y : y + h, x : x + w][m.mask])
        assert not crop[~m.mask].any()


@pytest.mark.parametrize("geom", [_circle(), _ellipse()], ids=["circle", "ellipse"])
def test_lazy_masks_equal_eager_masks_and_are_built_on_demand(geom):
    zs = [ZoneDef("core", 0, 50), ZoneDef("cladding", 50, 200), ZoneDef("contact", 200, 300)]
    roi = fiber_roi((400, 420), geom, 150.0, 3)
    eager = build_zone_masks((400, 420), geom, zs, 1.0, roi)
    lazy = build_zone_masks((400, 420), geom, zs, 1.0, roi, lazy=True)
    assert not any(z.realised for z in lazy)
    for e, z in zip(eager, lazy):
        assert (z.name, z.inner_px, z.outer_px, z.roi_xywh) == (e.name, e.inner_px, e.outer_px, e.roi_xywh)
        assert np.array_equal(z.mask, e.mask)
        assert z.realised
    # the radius rule used by detection/characterisation agrees with the masks on every pixel
    x0, y0, w, h = roi
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w]
    rho = geom.normalized_radius(np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64))
    for e in eager:
        agree = e.contains_radius(rho) == e.mask.ravel()
        assert agree.mean() > 0.9999  # float32 vs float64 rounding on the boundary only
