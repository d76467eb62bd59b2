"""Pipeline orchestration: px rule sets, zone restriction, zone crops, elliptical fibers, error results."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dscope.cli import main
from dscope.inspection.pipeline import inspect_image
from dscope.reporting.document import validate_document
from dscope.runner import RunSettings, inspect_array
from dscope.synth import DefectSpec, SynthSpec, random_spec, render

W, H = 800, 600


def _px_rule_set(tmp_path, repo_root) -> str:
    data = json.loads((repo_root / "config" / "rules" / "iec61300-3-35-ed2-sm-pc.json").read_text())
    data["name"] = "bench-px"
    data["units"] = "px"
    data["zones"] = [
        {"name": "core", "inner_px": 0, "outer_px": 60},
        {"name": "cladding", "inner_px": 60, "outer_px": 300},
        {"name": "adhesive", "inner_px": 300, "outer_px": 340},
        {"name": "contact", "inner_px": 340, "outer_px": 600},
    ]
    p = tmp_path / "bench-px.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_px_rule_set_grades_without_a_scale(tmp_path, repo_root):
    img, truth = render(random_spec(np.random.default_rng(5), scenario="pit", width=W, height=H, fiber_type="sm-pc"))
    settings = RunSettings.create(fiber_type=_px_rule_set(tmp_path, repo_root))
    doc = inspect_array(img, settings, image_info={"path": "x.png", "filename": "x.png"})
    validate_document(doc)
    assert doc["fiber"]["um_per_px"] is None
    assert doc["status"] in ("PASS", "FAIL")
    zones = {z["name"]: z for z in doc["zones"]}
    # px zones are realised 1:1 (radius = diameter / 2), whatever the fiber's size
    assert zones["cladding"]["outer_px"] == pytest.approx(150.0)
    assert zones["contact"]["outer_px"] == pytest.approx(300.0)


def test_zone_restriction_analyses_only_the_named_zones():
    spec = SynthSpec(
        width=W, height=H, fiber_type="sm-pc", um_per_px=0.35, seed=3,
        defects=[
            DefectSpec(type="pit", zone="core", size_um=4.0, contrast=60.0),
            DefectSpec(type="pit", zone="contact", size_um=15.0, contrast=60.0),
        ],
    )
    img, truth = render(spec)
    assert {d.zone for d in truth.defects} == {"core", "contact"}
    full = inspect_array(img, RunSettings.create(fiber_type="sm-pc"), image_info={})
    assert {d["zone"] for d in full["defects"]} >= {"core", "contact"}
    only = inspect_array(img, RunSettings.create(fiber_type="sm-pc", zones=["core"]), image_info={})
    assert [z["name"] for z in only["zones"]] == ["core"]
    assert only["defects"] and all("core" in d["zones_touched"] for d in only["defects"])
    assert only["status"] == "FAIL"  # a pit in the core is never allowed


def test_save_zones_writes_masked_crops(tmp_path):
    img, _ = render(random_spec(np.random.default_rng(8), scenario="clean", width=W, height=H, fiber_type="sm-pc"))
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = tmp_path / "out"
    assert main(["inspect", str(tmp_path / "a.png"), "--out", str(out), "--fiber-type", "sm-pc",
                 "--zones", "core,cladding", "--save-zones", "--no-prompt", "-q", "--workers", "1"]) == 0
    doc = json.loads((out / "a.json").read_text())
    core = cv2.imread(str(out / "a_zone_core.png"), cv2.IMREAD_GRAYSCALE)
    clad = cv2.imread(str(out / "a_zone_cladding.png"), cv2.IMREAD_GRAYSCALE)
    assert core is not None and clad is not None
    assert not (out / "a_zone_contact.png").exists()
    zones = {z["name"]: z for z in doc["zones"]}
    # crop sides match the zone's outer diameter; the annulus has a black hole where the core is
    assert abs(core.shape[1] - 2 * zones["core"]["outer_px"]) <= 3
    assert abs(clad.shape[1] - 2 * zones["cladding"]["outer_px"]) <= 3
    cy, cx = clad.shape[0] // 2, clad.shape[1] // 2
    assert clad[cy, cx] == 0 and core[core.shape[0] // 2, core.shape[1] // 2] > 0


def test_elliptical_fiber_zones_and_scale_follow_the_major_axis():
    spec = random_spec(np.random.default_rng(4), scenario="clean", width=W, height=H, fiber_type="sm-pc",
                       um_per_px=0.4, axis_ratio=1.15, ellipse_angle_deg=30.0)
    img, truth = render(spec)
    doc = inspect_array(img, RunSettings.create(fiber_type="sm-pc"), image_info={})
    f = doc["fiber"]
    assert f["cladding_ellipse_px"] is not None
    e = f["cladding_ellipse_px"]
    assert e["semi_major_px"] / e["semi_minor_px"] == pytest.approx(1.15, rel=0.02)
    assert f["um_per_px"] == pytest.approx(truth.um_per_px, rel=0.01)
    assert f["cladding_diameter_um"] == pytest.approx(125.0, rel=1e-3)


def test_no_fiber_is_error_never_a_verdict():
    for kind in ("blank", "black", "white", "noise"):
        img, truth = render(random_spec(np.random.default_rng(1), scenario="no_fiber", width=W, height=H,
                                        no_fiber_kind=kind))
        assert not truth.has_fiber
        doc = inspect_array(img, RunSettings.create(fiber_type="sm-pc"), image_info={})
        validate_document(doc)
        assert doc["status"] == "ERROR" and doc["error"]["code"] == "localization_failed", kind


def test_inspect_image_rejects_non_gray_input():
    params = RunSettings.create(fiber_type="sm-pc").pipeline_params()
    with pytest.raises(ValueError):
        inspect_image(np.zeros((10, 10, 3), np.uint8), params)
    with pytest.raises(ValueError):
        inspect_image(np.zeros((10, 10), np.float32), params)


def test_stage_timings_are_reported_and_add_up():
    img, _ = render(random_spec(np.random.default_rng(2), scenario="mixed", width=W, height=H, fiber_type="sm-pc"))
    doc = inspect_array(img, RunSettings.create(fiber_type="sm-pc"), image_info={})
    t = doc["timings_s"]
    stages = ["localize", "zones", "detect", "classify", "grade"]
    assert all(t[s] >= 0 for s in stages)
    parts = sum(v for k, v in t.items() if k != "total")
    assert t["total"] == pytest.approx(parts, abs=2e-3)


@pytest.mark.parametrize("profile", ["deep_inspection", "fast_scan"])
def test_particle_across_the_contact_zone_edge_is_reported(profile):
    """Dirt lying across the outer edge of the inspected region: its local background is taken from the
    analysed side only (the rest of the particle beyond the edge is not 'background')."""
    found = 0
    for seed in (1, 2, 3):
        img, t = render(SynthSpec(width=W, height=H, seed=seed, um_per_px=0.55, noise_sigma=2.0, defects=[
            DefectSpec("contamination", radius_um=123.0, size_um=40.0, contrast=30.0, polarity="dark")]))
        res = inspect_image(img, RunSettings.create(profile=profile, fiber_type="sm-pc").pipeline_params())
        tid = t.defects[0].id
        hits = [d for d in res.defects
                if np.any(t.labels[d.bbox_px[1]:d.bbox_px[1] + d.bbox_px[3], d.bbox_px[0]:d.bbox_px[0] + d.bbox_px[2]] == tid)]
        if hits and "contact" in hits[0].zones_touched and hits[0].diameter_um >= 10.0:
            found += 1
            assert res.status == "FAIL"  # sm-pc: no defect >= 10 um in the contact zone
    assert found >= 2


def test_guard_band_from_the_config_grades_near_limit_pits_as_over_it(config_data):
    """The pipeline grades with the configuration's guard band: a pit measured a little under the 5 um
    cladding limit passes with 0 px and fails with a band wider than the gap; the document says which."""
    from dscope.config import parse_config

    def settings(band_px):
        config_data["grading"]["guard_band_px"] = band_px
        return RunSettings.create(parse_config(config_data), fiber_type="sm-pc")

    img, _ = render(SynthSpec(width=W, height=H, seed=4, um_per_px=0.35, noise_sigma=2.0, defects=[
        DefectSpec("pit", radius_um=45.0, size_um=4.2, contrast=30.0, polarity="dark")]))
    plain = inspect_array(img, settings(0.0), image_info={})
    validate_document(plain)
    pits = [d for d in plain["defects"] if d["zone"] == "cladding" and d["type"] in ("pit", "chip", "contamination")]
    assert len(pits) == 1
    size_um, size_px = pits[0]["diameter_um"], pits[0]["diameter_px"]
    assert 2.0 <= size_um < 5.0 and plain["status"] == "PASS" and plain["guard_band_px"] == 0.0
    gap_px = (5.0 - size_um) / (size_um / size_px)  # how many of this image's pixels the pit is under the limit
    under = inspect_array(img, settings(max(gap_px - 0.5, 0.0)), image_info={})
    over = inspect_array(img, settings(gap_px + 0.5), image_info={})
    validate_document(over)
    assert under["status"] == "PASS"
    assert over["status"] == "FAIL" and over["guard_band_px"] == pytest.approx(gap_px + 0.5)
    msg = over["violations"][0]["message"]
    assert msg.startswith(f"{pits[0]['type']} {round(size_um, 2):g} um diameter (+") and "guard band) > 5 um limit in cladding" in msg
