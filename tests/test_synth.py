"""Property tests of the synthetic end-face generator (seeded, small images)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from dscope.errors import DScopeError
from dscope.inspection.types import DEFECT_TYPES, ZONE_NAMES
from dscope.synth import (
    LOCALIZATION_CONDITIONS,
    SCENARIOS,
    DefectSpec,
    SynthSpec,
    SynthSpecError,
    make_dot_grid,
    random_spec,
    render,
    scenario_specs,
)

W, H = 320, 240


def _quiet(**kw) -> SynthSpec:
    """A small, noise-free, evenly lit spec (geometry tests)."""
    base = dict(width=W, height=H, noise_sigma=0.0, blur_sigma_px=0.0, ferrule_texture=0.0, ferrule_mottle=0.0,
                glass_variation=0.0, rim_line_depth=0.0, epoxy_ring=False, core_visible=False, seed=3)
    base.update(kw)
    return SynthSpec(**base)


def _norm_radius(truth, shape):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel(), yy.ravel()], 1).astype(float)
    return truth.geometry().normalized_radius(pts).reshape(h, w)


# ---------------------------------------------------------------- geometry and appearance
@pytest.mark.parametrize("polarity", ["dark", "bright"])
def test_glass_polarity_inside_vs_outside(polarity):
    img, t = render(SynthSpec(width=W, height=H, glass_polarity=polarity, seed=11))
    r = _norm_radius(t, img.shape)
    a = t.cladding_radius_px
    inside = img[r < 0.8 * a].mean()
    outside = img[(r > 1.3 * a) & (r < 1.8 * a)].mean()
    assert t.glass_polarity == polarity
    assert (inside < outside - 10) if polarity == "dark" else (inside > outside + 10)


@pytest.mark.parametrize("q,angle", [(1.0, 0.0), (1.09, 0.0), (1.3, 30.0), (1.4, 120.0)])
def test_ellipse_truth_matches_image(q, angle):
    img, t = render(_quiet(axis_ratio=q, ellipse_angle_deg=angle, um_per_px=125 / 150))
    assert (t.ellipse is None) == (q == 1.0)
    # every pixel well inside the truth boundary is glass, every pixel well outside is ferrule
    r = _norm_radius(t, img.shape)
    a = t.cladding_radius_px
    thr = (img[r < 0.5 * a].mean() + img[r > 1.5 * a].mean()) / 2
    glass = img < thr
    assert glass[r < a - 1.5].mean() > 0.999
    assert glass[r > a + 1.5].mean() < 0.001
    # fitted ellipse of the glass blob has the truth's axis ratio and centre
    cnts, _ = cv2.findContours(glass.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (ex, ey), (d1, d2), _ = cv2.fitEllipse(max(cnts, key=cv2.contourArea))
    assert max(d1, d2) / min(d1, d2) == pytest.approx(q, abs=0.02)
    assert math.hypot(ex - t.center_px[0], ey - t.center_px[1]) < 0.7
    assert max(d1, d2) / 2 == pytest.approx(a, rel=0.02)


@pytest.mark.parametrize("q,angle", [(1.0, 0.0), (1.4, 0.0), (1.25, 63.0)])
def test_glass_area_matches_the_ellipse(q, angle):
    spec = _quiet(axis_ratio=q, ellipse_angle_deg=angle, um_per_px=125 / 180, bit_depth=16,
                  center_offset_px=(0.3, -0.2))
    img, t = render(spec)
    F, G = spec.ferrule_level, spec.ferrule_level - spec.glass_contrast
    cov = (img.astype(float) / 257 - F) / (G - F)  # 1 on glass, 0 on ferrule, fraction on the edge
    a = t.cladding_radius_px
    assert cov.sum() == pytest.approx(math.pi * a * a / q, rel=2e-3)
    assert cov.min() > -0.01 and cov.max() < 1.01


def test_partly_outside_in_frame_fraction():
    img, t = render(_quiet(center_offset_px=((W - 1) / 2, 0.0), um_per_px=125 / 120))
    assert t.in_frame_fraction == pytest.approx(0.5, abs=0.03)
    assert t.center_px[0] == pytest.approx(W - 1)


def test_geometry_round_trip():
    _, t = render(_quiet(axis_ratio=1.25, ellipse_angle_deg=40.0))
    g = t.geometry()
    a, b, th = t.cladding_radius_px, t.cladding_radius_px / 1.25, math.radians(40.0)
    phi = np.linspace(0, 2 * np.pi, 17)
    x = t.center_px[0] + a * np.cos(phi) * math.cos(th) - b * np.sin(phi) * math.sin(th)
    y = t.center_px[1] + a * np.cos(phi) * math.sin(th) + b * np.sin(phi) * math.cos(th)
    assert np.allclose(g.normalized_radius(np.stack([x, y], 1)), a, rtol=1e-9)
    assert t.um_per_px * 2 * t.cladding_radius_px == pytest.approx(t.cladding_um)


def test_graded_index_centre_dot_is_dark():
    img, t = render(_quiet(fiber_type="mm", core_visible=True, core_delta=0.0, gi_dot_depth=30.0))
    cx, cy = (int(round(v)) for v in t.center_px)
    r = _norm_radius(t, img.shape)
    assert img[cy, cx] < img[(r > 0.3 * t.core_radius_px) & (r < 0.9 * t.core_radius_px)].mean() - 10


def test_black_borders_are_zero():
    img, t = render(SynthSpec(width=W, height=H, border_left_px=12, border_right_px=9, border_top_px=5, seed=2))
    assert (img[:, :12] == 0).all() and (img[:, -9:] == 0).all() and (img[:5] == 0).all()
    assert img[H // 2, W // 2] > 0


def test_illumination_noise_and_jpeg_knobs():
    flat, _ = render(_quiet(has_fiber=False, no_fiber_kind="blank", ferrule_level=150.0))
    vig, _ = render(_quiet(has_fiber=False, no_fiber_kind="blank", ferrule_level=150.0, vignetting=0.3))
    grad, _ = render(_quiet(has_fiber=False, no_fiber_kind="blank", ferrule_level=150.0, illum_gradient=0.4,
                            illum_gradient_angle_deg=0.0))
    assert np.ptp(flat) <= 1
    assert vig[H // 2, W // 2] > vig[0, 0] + 30  # corners lose 30 %
    assert grad[:, -10:].mean() > grad[:, :10].mean() + 40  # +-20 % left to right
    dark, _ = render(_quiet(has_fiber=False, no_fiber_kind="blank", ferrule_level=30.0, shot_noise=1.0))
    bright, _ = render(_quiet(has_fiber=False, no_fiber_kind="blank", ferrule_level=200.0, shot_noise=1.0))
    assert bright.std() > 2 * dark.std()  # shot noise grows with the level
    spec = SynthSpec(width=W, height=H, seed=5, noise_sigma=0.0)
    a, _ = render(spec)
    b, _ = render(SynthSpec(**{**spec.__dict__, "jpeg_quality": 20}))
    assert b.dtype == np.uint8 and 0 < np.abs(a.astype(int) - b).mean() < 6


def test_black_borders_reduce_in_frame_fraction():
    spec = _quiet(um_per_px=125 / 200)
    _, t0 = render(spec)
    _, t1 = render(SynthSpec(**{**spec.__dict__, "border_left_px": 80}))
    assert t0.in_frame_fraction == pytest.approx(1.0, abs=0.01)
    r, h = t1.cladding_radius_px, 79.5 - (t1.center_px[0] - t1.cladding_radius_px)  # bar covers x < 79.5
    segment = r * r * math.acos((r - h) / r) - (r - h) * math.sqrt(2 * r * h - h * h)
    assert t1.in_frame_fraction == pytest.approx(1 - segment / (math.pi * r * r), abs=0.01)


# ---------------------------------------------------------------- defects
def test_polygon_coverage_is_unbiased():
    from dscope.synth.generator import _polygon_alpha

    rng = np.random.default_rng(0)
    for _ in range(5):
        cx, cy, r = rng.uniform(15, 25), rng.uniform(15, 25), rng.uniform(2, 9)
        t = np.linspace(0, 2 * np.pi, 256, endpoint=False)
        p = _polygon_alpha([np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)], 48, 48)
        ys, xs = np.mgrid[0:p.alpha.shape[0], 0:p.alpha.shape[1]]
        area = p.alpha.sum()
        assert area == pytest.approx(math.pi * r * r, rel=0.02, abs=0.3)  # pixel centres at integer coordinates
        assert (p.alpha * (xs + p.x0)).sum() / area == pytest.approx(cx, abs=0.03)
        assert (p.alpha * (ys + p.y0)).sum() / area == pytest.approx(cy, abs=0.03)
    # an axis-aligned square on pixel boundaries covers exactly its pixels
    sq = _polygon_alpha([np.array([[9.5, 9.5], [19.5, 9.5], [19.5, 19.5], [9.5, 19.5]])], 40, 40)
    assert sq.alpha.sum() == pytest.approx(100.0) and set(np.unique(sq.alpha)) <= {0.0, 1.0}


def test_scratch_across_the_fiber_touches_every_inner_zone_and_the_edge():
    spec = _quiet(um_per_px=125 / 150, defects=[
        DefectSpec("scratch", radius_um=0.0, angle_deg=0.0, size_um=170.0, width_um=3.0, orientation_deg=30)])
    _, t = render(spec)
    d = t.defects[0]
    assert d.zone == "core" and d.touches_cladding_edge
    assert {"core", "cladding", "adhesive", "contact"} <= set(d.zones_touched)
    assert d.length_um == pytest.approx(170.0, rel=0.01)


def _mixed_truths(n=6):
    for spec in scenario_specs(5, n, "mixed", width=W, height=H, _min_defects=3):
        yield spec, *render(spec)


def test_masks_non_empty_inside_and_disjoint():
    seen = 0
    for spec, img, t in _mixed_truths():
        assert t.labels.shape == img.shape and t.labels.dtype == np.int32
        ids = [d.id for d in t.defects]
        assert sorted(set(np.unique(t.labels)) - {0}) == ids
        for d in t.defects:
            m = t.labels == d.id
            assert m.sum() == d.area_px > 0
            ys, xs = np.nonzero(m)
            assert np.mean(xs) == pytest.approx(d.centroid_px[0]) and np.mean(ys) == pytest.approx(d.centroid_px[1])
            # a gap of background around every mask: no other defect within 1 px
            grown = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            assert set(np.unique(t.labels[grown])) <= {0, d.id}
            seen += 1
        assert len(t.defects) + t.dropped_defects == len(spec.defects)
    assert seen >= 10


@pytest.mark.parametrize("dtype", DEFECT_TYPES)
def test_each_class_scenario_renders_its_class(dtype):
    n_def = 0
    for spec in scenario_specs(7, 3, dtype, width=W, height=H):
        _, t = render(spec)
        assert {d.type for d in t.defects} <= {dtype}
        n_def += len(t.defects)
        if dtype == "chip":
            assert all(d.touches_cladding_edge for d in t.defects)
    assert n_def >= 3


@pytest.mark.parametrize("dtype", ["scratch", "pit", "crack", "contamination", "chip"])
@pytest.mark.parametrize("polarity", ["dark", "bright"])
def test_defect_polarity_and_contrast_truth(dtype, polarity):
    size = {"scratch": 60.0, "pit": 12.0, "crack": 30.0, "contamination": 20.0, "chip": 20.0}[dtype]
    ds = DefectSpec(dtype, polarity=polarity, zone="cladding", size_um=size, contrast=30.0, width_um=2.0)
    spec = SynthSpec(width=W, height=H, noise_sigma=0.0, seed=21, defects=[ds], glass_contrast=40)
    img, t = render(spec)
    bg, _ = render(SynthSpec(**{**spec.__dict__, "defects": []}))
    assert len(t.defects) == 1
    d = t.defects[0]
    m = t.labels == 1
    measured = img[m].astype(float).mean() - bg[m].astype(float).mean()
    assert np.sign(measured) == (1 if polarity == "bright" else -1)
    assert np.sign(d.contrast) == np.sign(measured)
    assert d.contrast == pytest.approx(measured, abs=1.0)
    assert d.cnr == pytest.approx(abs(d.contrast) / (1 / math.sqrt(12)), rel=1e-6)  # noise-free: quantisation floor


@pytest.mark.parametrize("style", ["dust", "film", "ring"])
def test_contamination_styles(style):
    for seed in range(3):
        spec = _quiet(um_per_px=0.25, seed=seed, defects=[
            DefectSpec("contamination", style=style, size_um=25.0, contrast=30.0, zone="cladding")])
        img, t = render(spec)
        bg, _ = render(SynthSpec(**{**spec.__dict__, "defects": []}))
        m = t.labels == 1
        filled = np.zeros(m.shape, np.uint8)
        cnts, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(filled, cnts, -1, 1, -1)
        assert filled.sum() == m.sum()  # lobes are united, never XOR-ed into holes
        dev = bg.astype(float) - img.astype(float)  # dark contamination: positive deviation
        if style == "ring":
            inner = cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
            rim = m & ~(cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
            assert dev[rim].mean() > 1.5 * dev[inner].mean()


def test_sizes_are_measured_in_the_circular_frame():
    sizes = []
    for q in (1.0, 1.3):
        spec = _quiet(axis_ratio=q, ellipse_angle_deg=25.0, um_per_px=0.5, seed=4,
                      defects=[DefectSpec("scratch", size_um=40.0, width_um=3.0, zone="cladding", orientation_deg=70),
                               DefectSpec("pit", size_um=16.0, zone="cladding")])
        _, t = render(spec)
        by = {d.type: d for d in t.defects}
        assert by["scratch"].width_um == pytest.approx(3.0)
        assert by["scratch"].length_um == pytest.approx(40.0, rel=0.01)
        # the irregular pit outline stays within +-25 % of its nominal radius
        assert 0.75 * 16 <= by["pit"].diameter_um <= 1.25 * 16 + 2 * 0.5
        sizes.append(by["pit"].diameter_um)
    # same seed, same pit outline: the ellipse must not change the measured size
    assert sizes[1] == pytest.approx(sizes[0], rel=0.08)


@pytest.mark.parametrize("zone", ZONE_NAMES)
def test_small_pit_lands_in_requested_zone(zone):
    spec = _quiet(um_per_px=125 / 100, defects=[DefectSpec("pit", zone=zone, size_um=3.0, contrast=40)], seed=9)
    _, t = render(spec)
    assert len(t.defects) == 1
    assert t.defects[0].zone == zone and zone in t.defects[0].zones_touched


def test_detectable_flag_follows_cnr_and_width():
    spec = SynthSpec(width=W, height=H, noise_sigma=4.0, seed=8, defects=[
        DefectSpec("pit", size_um=10.0, contrast=40.0, zone="cladding"),
        DefectSpec("contamination", size_um=20.0, contrast=2.0, zone="contact"),
        DefectSpec("scratch", size_um=40.0, width_um=0.2, contrast=40.0, zone="cladding"),
    ])
    _, t = render(spec)
    by = {d.type: d for d in t.defects}
    assert by["pit"].detectable and by["pit"].cnr >= 2
    assert not by["contamination"].detectable and by["contamination"].cnr < 2
    assert by["scratch"].width_px < 1 and not by["scratch"].detectable


def test_random_specs_cover_every_zone():
    zones = set()
    for spec in scenario_specs(2, 12, "pit"):
        zones |= {d.zone for d in spec.defects}
    assert zones >= set(ZONE_NAMES)


# ---------------------------------------------------------------- scenarios, determinism, formats
def test_render_is_deterministic():
    spec = random_spec(np.random.default_rng(4), "mixed", width=W, height=H, _min_defects=2)
    a, ta = render(spec)
    b, tb = render(spec)
    assert np.array_equal(a, b) and np.array_equal(ta.labels, tb.labels)
    assert ta.to_dict() == tb.to_dict()
    spec2 = random_spec(np.random.default_rng(4), "mixed", width=W, height=H, _min_defects=2)
    assert spec2 == spec
    c, _ = render(SynthSpec(**{**spec.__dict__, "seed": spec.seed + 1}))
    assert not np.array_equal(a, c)


def test_scenario_specs_reproducible_and_distinct():
    s1 = list(scenario_specs(3, 4, "mixed", width=W, height=H))
    s2 = list(scenario_specs(3, 4, "mixed", width=W, height=H))
    assert s1 == s2
    assert len({s.seed for s in s1}) == 4


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_renders(scenario):
    for spec in scenario_specs(1, 2, scenario, width=W, height=H):
        img, t = render(spec)
        assert img.shape == (H, W) and img.dtype == np.uint8
        doc = json.loads(json.dumps(t.to_dict()))
        assert doc["has_fiber"] == t.has_fiber
        json.dumps(spec.to_dict())
        if scenario == "no_fiber":
            assert not t.has_fiber and t.geometry() is None and not t.labels.any()
        elif scenario != "demo":
            assert t.has_fiber and 0 < t.in_frame_fraction <= 1


@pytest.mark.parametrize("condition", LOCALIZATION_CONDITIONS)
def test_localization_conditions(condition):
    for i in range(3):
        spec = random_spec(np.random.default_rng([17, i]), "localization", condition=condition, width=W, height=H)
        img, t = render(spec)
        assert spec.tags == ("localization", condition)
        assert t.has_fiber and img.shape == (H, W)
        if condition == "partly_outside":
            assert 0.25 <= t.in_frame_fraction < 0.97
        elif condition in ("off_center", "small_fiber"):
            assert t.in_frame_fraction > 0.98
        if condition == "off_center":
            assert math.hypot(*spec.center_offset_px) > 10
        if condition == "low_contrast":
            assert spec.glass_contrast <= 14
        if condition == "ellipse":
            assert t.ellipse is not None and 1.1 <= t.ellipse.axis_ratio <= 1.4
        if condition == "small_fiber":
            assert 2 * t.cladding_radius_px <= 131
        if condition == "edge_particles":
            assert sum(d.type == "contamination" and d.touches_cladding_edge for d in t.defects) >= 1


def test_scenario_specs_with_condition():
    specs = list(scenario_specs(4, 3, "localization", condition="heavy_blur", width=W, height=H))
    assert all(s.tags == ("localization", "heavy_blur") and s.blur_sigma_px >= 2.5 for s in specs)
    with pytest.raises(SynthSpecError):
        list(scenario_specs(4, 1, "localization", condition="fog"))


def test_pits_never_straddle_the_cladding_edge():
    for spec in scenario_specs(11, 6, "pit", width=W, height=H):
        _, t = render(spec)
        assert not any(d.touches_cladding_edge for d in t.defects)


def test_ranges_are_validated_and_honoured():
    from pydantic import ValidationError

    from dscope.synth import SynthRanges

    with pytest.raises(ValidationError):
        SynthRanges(noise_sigma=(4.0, 1.0))
    with pytest.raises(ValidationError):
        SynthRanges(not_a_range=(0, 1))
    with pytest.raises(ValidationError):
        SynthRanges(p_dark_glass=1.5)
    r = SynthRanges(p_dark_glass=0.0, noise_sigma=(7.0, 7.5), mixed_max_defects=1)
    specs = list(scenario_specs(8, 10, "mixed", ranges=r, width=W, height=H))
    assert all(s.glass_polarity == "bright" for s in specs)
    assert all(7.0 <= s.noise_sigma <= 7.5 for s in specs)
    assert all(len(s.defects) <= 1 for s in specs)


def test_sixteen_bit_output_matches_eight_bit():
    spec = _quiet(bit_depth=16, ferrule_texture=4.0, defects=[DefectSpec("pit", size_um=10)])
    img16, t16 = render(spec)
    img8, t8 = render(SynthSpec(**{**spec.__dict__, "bit_depth": 8}))
    assert img16.dtype == np.uint16 and img8.dtype == np.uint8
    assert img16.max() > 255
    assert np.abs(img16.astype(float) / 257 - img8).max() <= 0.51
    assert t16.defects[0].contrast == pytest.approx(t8.defects[0].contrast)


@pytest.mark.parametrize("kind", ["blank", "black", "white", "noise"])
def test_no_fiber_frames(kind):
    img, t = render(SynthSpec(width=W, height=H, has_fiber=False, no_fiber_kind=kind, seed=1))
    assert not t.has_fiber and t.center_px is None and t.defects == [] and not t.labels.any()
    if kind == "black":
        assert img.mean() < 20
    elif kind == "white":
        assert img.mean() > 230
    elif kind == "noise":
        assert img.std() > 50
    else:
        assert 60 < img.mean() < 230 and img.std() > 1


def test_bad_specs_raise_coded_errors():
    for kw in ({"bit_depth": 12}, {"axis_ratio": 0.5}, {"glass_polarity": "grey"}, {"fiber_type": "nope"},
               {"width": 320, "border_left_px": 200, "border_right_px": 200}, {"noise_sigma": float("nan")},
               {"ferrule_level": float("inf")}, {"center_offset_px": (0.0, float("nan"))},
               {"width": 10000, "height": 10000}):
        with pytest.raises(SynthSpecError) as ei:
            SynthSpec(**kw)
        assert ei.value.code == "bad_argument"
    with pytest.raises(DScopeError):
        DefectSpec("blob")
    for kw in ({"size_um": -1.0}, {"radius_um": float("nan")}, {"polarity": "grey"}, {"style": "ring"}):
        with pytest.raises(SynthSpecError):
            DefectSpec("pit", **kw)
    with pytest.raises(SynthSpecError):
        make_dot_grid(200, 160, spacing_um=float("nan"))
    with pytest.raises(SynthSpecError):
        random_spec(np.random.default_rng(0), "nonsense")
    with pytest.raises(SynthSpecError):
        random_spec(np.random.default_rng(0), "clean", not_a_field=1)


# ---------------------------------------------------------------- dot grid
def test_dot_grid_truth_matches_image():
    img, t = make_dot_grid(400, 300, spacing_um=10.0, um_per_px=0.5, rotation_deg=3.0, n_missing=3, n_extra=0,
                           noise_sigma=2.0, seed=5)
    assert t["spacing_px"] == pytest.approx(20.0) and t["n_missing"] == 3
    assert t["n_dots"] == len(t["dots_px"])
    n, lab, stats, cents = cv2.connectedComponentsWithStats((img < 120).astype(np.uint8))
    dots = np.array(t["dots_px"])
    r = t["dot_diameter_px"] / 2
    x, y = dots[:, 0], dots[:, 1]
    interior = dots[(x > r + 1) & (x < 400 - r - 2) & (y > r + 1) & (y < 300 - r - 2)]
    c = cents[1:]
    d = np.hypot(interior[:, None, 0] - c[None, :, 0], interior[:, None, 1] - c[None, :, 1]).min(1)
    assert (d < 0.3).all()  # every interior truth dot is drawn where the truth says
    # missing dots: exactly n_missing lattice positions are absent from the truth list
    img0, t0 = make_dot_grid(400, 300, spacing_um=10.0, um_per_px=0.5, rotation_deg=3.0, seed=5)
    assert t0["n_dots"] - t["n_dots"] == 3


def test_dot_grid_non_square_pixels():
    img, t = make_dot_grid(400, 300, spacing_um=10.0, um_per_px=0.5, axis_ratio=1.09, axis_angle_deg=0.0,
                           noise_sigma=0.0, seed=2)
    dots = np.array(t["dots_px"])
    # neighbours along x keep the spacing, along y they are squeezed by the axis ratio
    xs = np.unique(np.round(dots[:, 0], 3))
    ys = np.unique(np.round(dots[:, 1], 3))
    assert np.diff(xs).mean() == pytest.approx(20.0, rel=1e-6)
    assert np.diff(ys).mean() == pytest.approx(20.0 / 1.09, rel=1e-6)
    n, lab, stats, cents = cv2.connectedComponentsWithStats((img < 120).astype(np.uint8))
    inner = dots[(dots[:, 0] > 8) & (dots[:, 0] < 391) & (dots[:, 1] > 8) & (dots[:, 1] < 291)]
    d = np.hypot(inner[:, None, 0] - cents[None, 1:, 0], inner[:, None, 1] - cents[None, 1:, 1]).min(1)
    assert (d < 0.3).all()


def test_dot_grid_extra_dots_are_off_lattice():
    img, t = make_dot_grid(400, 300, spacing_um=10.0, um_per_px=0.4, n_extra=3, seed=6, noise_sigma=0)
    assert t["n_extra"] == len(t["extra_dots_px"]) >= 1
    for ex, ey in t["extra_dots_px"]:
        assert img[int(round(ey)), int(round(ex))] < 120
        assert np.hypot(*(np.array(t["dots_px"]) - [ex, ey]).T).min() > 0.5 * t["spacing_px"]


# ---------------------------------------------------------------- CLI
def test_cli_writes_images_and_truth(tmp_path):
    from dscope.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n", "6", "--seed", "1", "--width", str(W),
                 "--height", str(H)]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 6
    kinds = set()
    for p in pngs:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        doc = json.loads(p.with_suffix("").with_suffix(".truth.json").read_text())
        assert img.shape == (H, W)
        assert doc["spec"]["width"] == W and doc["image_size"] == [W, H]
        kinds.add(doc["has_fiber"])
        if doc["has_fiber"]:
            spec = SynthSpec(**doc["spec"])
            again, _ = render(spec)
            assert np.array_equal(again, img)  # the truth file reproduces the image
    assert kinds == {True, False}
    assert main(["synth", "--out", str(tmp_path / "g"), "--n", "1", "--dot-grid", "--width", "300",
                 "--height", "200"]) == 0
    docs = list((tmp_path / "g").glob("*.truth.json"))
    assert len(docs) == 1 and json.loads(docs[0].read_text())["n_dots"] > 0
    assert main(["synth", "--out", str(tmp_path), "--n", "-1"]) == 2
    assert main(["synth", "--out", str(tmp_path), "--condition", "jpeg"]) == 2  # needs --scenario localization
    assert main(["synth", "--out", str(tmp_path / "l"), "--n", "2", "--scenario", "localization", "--condition",
                 "ellipse", "--width", str(W), "--height", str(H), "--bit-depth", "16"]) == 0
    for p in (tmp_path / "l").glob("*.png"):
        assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype == np.uint16
        doc = json.loads(p.with_suffix("").with_suffix(".truth.json").read_text())
        assert doc["tags"] == ["localization", "ellipse"] and doc["ellipse"]["semi_major_px"] > 0
