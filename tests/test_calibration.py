"""Dot-grid and reference-fiber calibration, calibration.json / history I/O and the CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dscope.calibration_io import load_calibration, write_calibration
from dscope.cli.calibrate import main as calibrate_main
from dscope.config import default_config_path, strip_comments
from dscope.errors import CalibrationError, DScopeError
from dscope.inspection.calibration import CalibrationParams, CalibrationResult, calibrate_dot_grid, calibrate_reference_fiber
from dscope.inspection.localize import LocalizationParams
from dscope.synth import SynthSpec, make_dot_grid, render

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cal() -> CalibrationParams:
    raw = strip_comments(json.loads(default_config_path().read_text(encoding="utf-8")))
    return CalibrationParams.model_validate(raw["calibration"])


@pytest.fixture(scope="module")
def loc() -> LocalizationParams:
    raw = strip_comments(json.loads(default_config_path().read_text(encoding="utf-8")))
    return LocalizationParams.model_validate(raw["profiles"]["deep_inspection"]["localization"])


GRIDS = [
    dict(um_per_px=0.5, rotation_deg=0.0),
    dict(um_per_px=0.37, rotation_deg=17.0, n_missing=12, n_extra=6),
    dict(um_per_px=0.9, rotation_deg=-41.0, n_missing=5, n_extra=10, noise_sigma=6.0),
    dict(um_per_px=0.23, rotation_deg=33.0, spacing_um=20.0, blur_sigma_px=1.5),
    dict(um_per_px=0.6, rotation_deg=5.0, background_level=40.0, dot_level=200.0),  # bright dots
]


@pytest.mark.parametrize("kw", GRIDS)
def test_dot_grid_recovers_scale_within_0_2_percent(kw, cal):
    kw = {"spacing_um": 10.0, "seed": 1, **kw}
    img, t = make_dot_grid(width=640, height=480, **kw)
    res = calibrate_dot_grid(img, kw["spacing_um"], cal)
    assert abs(res.um_per_px / t["um_per_px"] - 1) < 0.002
    assert res.method == "dot_grid"
    assert 0 < res.uncertainty_um_per_px < 0.002 * res.um_per_px
    # missing dots are not counted, extra dots are rejected; dots cut by the frame edge may be dropped
    assert 0.85 * t["n_dots"] <= res.n_dots <= t["n_dots"]
    assert res.details["anisotropy"] == pytest.approx(1.0, abs=0.003)


def test_dot_grid_with_skew_and_anisotropic_pixels(cal):
    """An affine (perspective-free) warp: the scale is along the most stretched direction."""
    img, t = make_dot_grid(width=700, height=520, spacing_um=10.0, um_per_px=0.5, rotation_deg=12.0, seed=2)
    A = np.array([[1.09, 0.04], [0.0, 1.0]])  # non-square pixels + shear
    M = np.hstack([A, np.array([[-20.0], [0.0]])])
    warped = cv2.warpAffine(img, M, (700, 520), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    res = calibrate_dot_grid(warped, 10.0, cal)
    s1 = np.linalg.svd(A, compute_uv=False)[0]
    expect = t["um_per_px"] / s1  # px per um grows by the largest singular value of the warp
    assert abs(res.um_per_px / expect - 1) < 0.002
    assert res.details["anisotropy"] > 1.05


@pytest.mark.parametrize("kind", ["blank", "noise", "fiber"])
def test_dot_grid_failure_is_coded(kind, cal):
    if kind == "blank":
        img = np.full((300, 400), 128, np.uint8)
    elif kind == "noise":
        img = np.random.default_rng(0).integers(0, 256, (300, 400)).astype(np.uint8)
    else:
        img, _ = render(SynthSpec(width=640, height=480, seed=3))
    with pytest.raises(CalibrationError) as exc:
        calibrate_dot_grid(img, 10.0, cal)
    assert exc.value.code == "calibration_failed"


def test_dot_grid_bad_spacing(cal):
    img, _ = make_dot_grid(width=320, height=240)
    with pytest.raises(DScopeError) as exc:
        calibrate_dot_grid(img, -10.0, cal)
    assert exc.value.code == "bad_argument"


def test_reference_fiber(loc):
    img, t = render(SynthSpec(width=800, height=600, seed=6, um_per_px=0.35))
    res = calibrate_reference_fiber(img, 125.0, loc)
    assert res.method == "reference_fiber" and res.n_dots == 0
    assert abs(res.um_per_px / t.um_per_px - 1) < 0.01
    assert res.uncertainty_um_per_px > 0
    with pytest.raises(CalibrationError) as exc:
        calibrate_reference_fiber(np.full((480, 640), 100, np.uint8), 125.0, loc)
    assert exc.value.code == "calibration_failed"


def _result() -> CalibrationResult:
    return CalibrationResult(0.25, 0.0001, 321, "dot_grid", {"dot_spacing_um": 10.0, "fit_rms_px": 0.05})


def test_write_then_load_roundtrip_and_history(tmp_path):
    path = tmp_path / "cal" / "calibration.json"
    d1 = write_calibration(_result(), path, image_path="grid.png")
    d2 = write_calibration(_result(), path, image_path="grid2.png")
    data = load_calibration(path)
    assert data["schema"] == "dscope.calibration" and data["um_per_px"] == 0.25 and data["n_dots"] == 321
    assert data["dot_spacing_um"] == 10.0 and data["image"] == "grid2.png"
    assert data["timestamp"].endswith("Z")
    hist = Path(d1["history_csv"])
    assert hist == path.parent / "calibration_history.csv" and Path(d2["history_csv"]) == hist
    rows = list(csv.DictReader(hist.open(encoding="utf-8")))
    assert [r["image"] for r in rows] == ["grid.png", "grid2.png"]
    assert float(rows[0]["um_per_px"]) == 0.25


def test_history_path_override(tmp_path):
    d = write_calibration(_result(), tmp_path / "c.json", history_csv=tmp_path / "h" / "hist.csv")
    assert Path(d["history_csv"]).exists() and not (tmp_path / "calibration_history.csv").exists()


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(um_per_px=-1), "um_per_px"),
        (lambda d: d.pop("um_per_px"), "um_per_px"),
        (lambda d: d.update(schema="other"), "schema"),
        (lambda d: d.update(schema_version="2.0.0"), "schema_version"),
        (lambda d: d.update(method="magic"), "method"),
        (lambda d: d.pop("dot_spacing_um"), "dot_spacing_um"),
        (lambda d: d.update(timestamp="yesterday"), "timestamp"),
        (lambda d: d.update(n_dots=2.5), "n_dots"),
    ],
)
def test_load_rejects_invalid_files_naming_the_key(tmp_path, mutate, key):
    path = tmp_path / "calibration.json"
    write_calibration(_result(), path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError) as exc:
        load_calibration(path)
    assert exc.value.code == "calibration_invalid"
    assert key in exc.value.message and str(path) in exc.value.message


def test_load_missing_and_broken_files(tmp_path):
    with pytest.raises(CalibrationError) as exc:
        load_calibration(tmp_path / "nope.json")
    assert exc.value.code == "calibration_invalid"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError) as exc:
        load_calibration(bad)
    assert "line 1" in exc.value.message


def test_cli_dot_grid_and_fiber(tmp_path, capsys):
    img, t = make_dot_grid(width=640, height=480, spacing_um=10.0, um_per_px=0.45, rotation_deg=9.0, seed=4)
    grid = tmp_path / "grid.png"
    cv2.imwrite(str(grid), img)
    out = tmp_path / "calibration.json"
    assert calibrate_main([str(grid), "--dot-spacing-um", "10", "--out", str(out)]) == 0
    data = load_calibration(out)
    assert abs(data["um_per_px"] / t["um_per_px"] - 1) < 0.002 and data["method"] == "dot_grid"
    assert "OK dot_grid" in capsys.readouterr().out
    fimg, ft = render(SynthSpec(width=640, height=480, seed=5, um_per_px=0.4))
    fib = tmp_path / "fiber.png"
    cv2.imwrite(str(fib), fimg)
    assert calibrate_main([str(fib), "--cladding-um", "125", "--out", str(out)]) == 0
    assert load_calibration(out)["method"] == "reference_fiber"
    rows = list(csv.DictReader((tmp_path / "calibration_history.csv").open()))
    assert [r["method"] for r in rows] == ["dot_grid", "reference_fiber"]
    # failures: exit code 1 with the error code on stderr, nothing written
    assert calibrate_main([str(fib), "--dot-spacing-um", "10", "--out", str(tmp_path / "x.json")]) == 1
    assert "calibration_failed" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    assert calibrate_main([str(tmp_path / "missing.png"), "--cladding-um", "125", "--out", str(out)]) == 1


def test_cli_runs_as_module(tmp_path):
    img, t = make_dot_grid(width=400, height=300, spacing_um=10.0, um_per_px=0.5, seed=7)
    grid = tmp_path / "g.png"
    cv2.imwrite(str(grid), img)
    out = tmp_path / "c.json"
    r = subprocess.run([sys.executable, "-m", "dscope.cli.calibrate", str(grid), "--dot-spacing-um", "10",
                        "--out", str(out), "--json"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert math.isclose(doc["um_per_px"], t["um_per_px"], rel_tol=0.002)
    r = subprocess.run([sys.executable, "-m", "dscope.cli.calibrate", str(grid)], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2  # usage error: neither --dot-spacing-um nor --cladding-um
