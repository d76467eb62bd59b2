"""Scale priority, disagreement warnings and the scale of localized synthetic fibers."""

from __future__ import annotations

import json

import pytest

from dscope.config import default_config_path, strip_comments
from dscope.errors import DScopeError
from dscope.inspection.localize import LocalizationParams, localize_fiber
from dscope.inspection.scale import cladding_scale, resolve_scale
from dscope.inspection.types import Ellipse, FiberGeometry
from dscope.synth import SynthSpec, render

G = FiberGeometry(center_px=(100.0, 100.0), cladding_radius_px=250.0)  # 125 um -> 0.25 um/px
TOL = 0.02


def _resolve(**kw):
    args = dict(um_per_px=None, cladding_um=None, cladding_source="none", calibration_um_per_px=None,
                disagreement_warn_fraction=TOL)
    args.update(kw)
    return resolve_scale(G, **args)


def test_priority_order():
    s, _ = _resolve(um_per_px=0.3, cladding_um=125.0, cladding_source="user", calibration_um_per_px=0.25)
    assert (s.source, s.um_per_px) == ("um_per_px", 0.3)
    s, _ = _resolve(cladding_um=125.0, cladding_source="user", calibration_um_per_px=0.251)
    assert (s.source, s.um_per_px) == ("user_cladding", pytest.approx(0.25))
    s, _ = _resolve(cladding_um=125.0, cladding_source="fiber_type", calibration_um_per_px=0.26)
    assert (s.source, s.um_per_px) == ("calibration", 0.26)
    s, _ = _resolve(cladding_um=125.0, cladding_source="fiber_type")
    assert (s.source, s.um_per_px) == ("fiber_type_nominal", pytest.approx(0.25))
    s, w = _resolve()
    assert (s.source, s.um_per_px, s.known, w) == ("none", None, False, [])


def test_calibration_uncertainty_is_carried():
    s, _ = _resolve(calibration_um_per_px=0.26, calibration_uncertainty_um_per_px=0.001)
    assert s.uncertainty_um_per_px == 0.001


def test_disagreement_warning_only_above_tolerance():
    _, w = _resolve(cladding_um=125.0, cladding_source="user", calibration_um_per_px=0.25 * (1 + TOL / 2))
    assert w == []
    _, w = _resolve(cladding_um=125.0, cladding_source="user", calibration_um_per_px=0.25 * (1 + 3 * TOL))
    assert len(w) == 1 and w[0].startswith("scale_disagreement")
    # nominal fiber-type diameters are not a measurement: no cross-check warning
    _, w = _resolve(cladding_um=125.0, cladding_source="fiber_type", calibration_um_per_px=0.3)
    assert w == []
    _, w = _resolve(um_per_px=0.3, calibration_um_per_px=0.25)
    assert len(w) == 1


def test_ellipse_uses_the_major_axis():
    e = Ellipse(center_px=(0.0, 0.0), semi_major_px=300.0, semi_minor_px=275.0, angle_deg=10.0)
    g = FiberGeometry(center_px=(0.0, 0.0), cladding_radius_px=300.0, cladding_ellipse=e)
    assert cladding_scale(g, 125.0) == pytest.approx(125.0 / 600.0)


@pytest.mark.parametrize(
    "kw",
    [dict(um_per_px=-1.0), dict(cladding_um=0.0, cladding_source="user"), dict(cladding_source="guess"),
     dict(calibration_um_per_px=float("nan")), dict(disagreement_warn_fraction=0.0)],
)
def test_bad_arguments(kw):
    with pytest.raises(DScopeError) as exc:
        _resolve(**kw)
    assert exc.value.code == "bad_argument"


def test_without_geometry_only_direct_scales():
    s, w = resolve_scale(None, um_per_px=None, cladding_um=125.0, cladding_source="user",
                         calibration_um_per_px=0.4, disagreement_warn_fraction=TOL)
    assert s.source == "calibration" and any(x.startswith("scale_unavailable") for x in w)


@pytest.mark.parametrize("ratio", [1.0, 1.09])
def test_scale_from_localized_synthetic_fiber(ratio):
    raw = strip_comments(json.loads(default_config_path().read_text(encoding="utf-8")))
    p = LocalizationParams.model_validate(raw["profiles"]["deep_inspection"]["localization"])
    img, t = render(SynthSpec(width=800, height=600, seed=21, um_per_px=0.4, axis_ratio=ratio, ellipse_angle_deg=90.0))
    g = localize_fiber(img, p)
    s, w = resolve_scale(g, um_per_px=None, cladding_um=125.0, cladding_source="user",
                         calibration_um_per_px=t.um_per_px, disagreement_warn_fraction=TOL)
    assert s.source == "user_cladding"
    assert abs(s.um_per_px / t.um_per_px - 1) < 0.015
    assert w == []  # agrees with the true (calibrated) scale
