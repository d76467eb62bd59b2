"""End-to-end batch CLI on generated images, with every bad-input path of issue 2."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pandas as pd
import pytest

from dscope.cli import main
from dscope.reporting.document import validate_document
from dscope.synth import random_spec, render

W, H = 640, 480


def _fiber_image(seed: int, scenario: str = "mixed", **overrides):
    rng = np.random.default_rng(seed)
    spec = random_spec(rng, scenario=scenario, width=W, height=H, **overrides)
    return render(spec)


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("images")
    # good images of several kinds
    for i, scen in enumerate(["clean", "scratch", "pit", "contamination"]):
        img, _ = _fiber_image(100 + i, scen)
        cv2.imwrite(str(d / f"img_{i:02d}_{scen}.png"), img)
    img, _ = _fiber_image(7, "clean")
    cv2.imwrite(str(d / "jpeg_fiber.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    img16, _ = render(random_spec(np.random.default_rng(9), scenario="clean", width=W, height=H, bit_depth=16))
    assert img16.dtype == np.uint16
    cv2.imwrite(str(d / "sixteen_bit.tif"), img16)
    colour = cv2.cvtColor(_fiber_image(11, "clean")[0], cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(d / "colour.bmp"), colour)
    # bad inputs
    (d / "zero_bytes.png").write_bytes(b"")
    good_png = cv2.imencode(".png", _fiber_image(12, "clean")[0])[1].tobytes()
    (d / "truncated.png").write_bytes(good_png[: len(good_png) // 3])
    (d / "not_an_image.png").write_text("this is a text file, not a PNG\n")
    cv2.imwrite(str(d / "tiny.png"), np.full((20, 20), 128, np.uint8))
    blank, truth = render(random_spec(np.random.default_rng(13), scenario="no_fiber", width=W, height=H))
    assert not truth.has_fiber
    cv2.imwrite(str(d / "no_fiber.png"), blank)
    return d


@pytest.fixture(scope="module")
def batch_out(batch_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    rc = main(["inspect", str(batch_dir), "--out", str(out), "--fiber-type", "sm-pc", "--no-prompt", "--workers", "2", "-q"])
    assert rc == 0
    return out


EXPECTED_ERRORS = {
    "zero_bytes": "empty_file",
    "truncated": "unreadable_image",
    "not_an_image": "unreadable_image",
    "tiny": "image_too_small",
    "no_fiber": "localization_failed",
}


def _docs(out: Path) -> dict[str, dict]:
    return {
        p.stem: json.loads(p.read_text())
        for p in out.glob("*.json")
        if p.name != "batch.json"
    }


def test_every_image_gets_a_valid_result_document(batch_dir, batch_out):
    docs = _docs(batch_out)
    inputs = {p.stem for p in batch_dir.iterdir()}
    assert set(docs) == inputs
    for stem, doc in docs.items():
        validate_document(doc)
        assert doc["image"]["filename"].startswith(stem)


def test_bad_images_get_their_specific_error_code_and_the_rest_goes_on(batch_out):
    docs = _docs(batch_out)
    for stem, code in EXPECTED_ERRORS.items():
        assert docs[stem]["status"] == "ERROR", stem
        assert docs[stem]["error"]["code"] == code, (stem, docs[stem]["error"])
        assert docs[stem]["error"]["message"]
    good = [s for s in docs if s not in EXPECTED_ERRORS]
    assert len(good) == 7
    for s in good:
        assert docs[s]["status"] in ("PASS", "FAIL"), (s, docs[s]["status"], docs[s]["error"])
        f = docs[s]["fiber"]
        assert f["um_per_px"] and f["scale_source"] == "fiber_type_nominal"
        assert docs[s]["image"]["sha256"] and len(docs[s]["image"]["sha256"]) == 64


def test_colour_and_16_bit_inputs_are_converted(batch_out):
    docs = _docs(batch_out)
    for stem in ("colour", "sixteen_bit"):
        assert docs[stem]["image"]["width"] == W and docs[stem]["image"]["height"] == H
        assert docs[stem]["fiber"] is not None


def test_per_image_reports_exist_and_match_the_document(batch_out):
    docs = _docs(batch_out)
    for stem, doc in docs.items():
        csv = pd.read_csv(batch_out / f"{stem}_report.csv")
        assert len(csv) == len(doc["defects"])
        if doc["status"] != "ERROR" or doc["error"]["code"] == "localization_failed":
            ann = cv2.imread(str(batch_out / f"{stem}_annotated.png"))
            assert ann is not None and ann.shape[1] == W and ann.shape[0] == H
        if doc["defects"]:
            assert list(csv["Defect_ID"]) == [d["id"] for d in doc["defects"]]
            assert {"Length_um", "Width_um", "Area_um2", "Centroid_X_px"} <= set(csv.columns)


def test_summary_csv_in_input_order_with_reasons(batch_dir, batch_out):
    summary = pd.read_csv(batch_out / "summary_report.csv", keep_default_na=False)
    names = sorted(p.name for p in batch_dir.iterdir())
    assert list(summary["Image_Filename"]) == names
    docs = _docs(batch_out)
    for _, row in summary.iterrows():
        doc = docs[Path(row["Image_Filename"]).stem]
        assert row["Pass/Fail_Status"] == doc["status"]
        assert int(row["Total_Defect_Count"]) == doc["counts"]["total"]
        if doc["status"] == "ERROR":
            assert doc["error"]["code"] in row["Failure_Reason(s)"]
        if doc["status"] == "FAIL":
            assert doc["violations"][0]["message"] in row["Failure_Reason(s)"]


def test_batch_plots_and_log(batch_out):
    for name in ("batch_summary.png", "defect_polar_map.png"):
        img = cv2.imread(str(batch_out / name))
        assert img is not None and img.size > 0
    logs = list(batch_out.glob("dscope_*.log"))
    assert len(logs) == 1
    events = [json.loads(line) for line in logs[0].read_text().splitlines() if line.strip()]
    names = [e["event"] for e in events]
    assert "batch started" in names and "batch complete" in names
    inspected = [e for e in events if e["event"] == "image inspected"]
    assert len(inspected) == 12
    assert all(isinstance(e.get("total_s"), float) for e in inspected)


def test_pixel_only_run_is_ungraded_with_px_sizes(tmp_path):
    img, truth = _fiber_image(21, "pit")
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = tmp_path / "out"
    assert main(["inspect", str(tmp_path / "a.png"), "--out", str(out), "--no-prompt", "-q", "--workers", "1"]) == 0
    doc = json.loads((out / "a.json").read_text())
    assert doc["status"] == "UNGRADED"
    assert doc["fiber"]["um_per_px"] is None and doc["fiber"]["scale_source"] == "none"
    assert "scale" in (doc["grade_reason"] or "").lower() or "micrometre" in (doc["grade_reason"] or "").lower()
    for d in doc["defects"]:
        assert d["width_um"] is None and d["diameter_um"] is None
        assert d["width_px"] > 0 and d["diameter_px"] > 0
    # zones are still laid out from the detected cladding radius (125 um nominal)
    clad = doc["fiber"]["cladding_radius_px"]
    zones = {z["name"]: z for z in doc["zones"]}
    assert zones["cladding"]["outer_px"] == pytest.approx(clad * 115 / 125, rel=1e-3)


def test_user_cladding_diameter_sets_the_scale(tmp_path):
    img, truth = _fiber_image(22, "clean", fiber_type="sm-pc", um_per_px=0.4)
    assert truth.cladding_um == 125
    cv2.imwrite(str(tmp_path / "a.png"), img)
    out = tmp_path / "out"
    rc = main(["inspect", str(tmp_path), "--out", str(out), "--cladding-um", "125", "--core-um", "9", "--no-prompt", "-q"])
    assert rc == 0
    doc = json.loads((out / "a.json").read_text())
    assert doc["fiber"]["scale_source"] == "user_cladding"
    assert doc["fiber"]["um_per_px"] == pytest.approx(truth.um_per_px, rel=0.01)


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "/no/such/folder", "--out", "{out}", "--no-prompt"],
        ["inspect", "{img}", "--out", "{out}", "--no-prompt", "--profile", "turbo"],
        ["inspect", "{img}", "--out", "{out}", "--no-prompt", "--fiber-type", "no-such-fiber"],
        ["inspect", "{img}", "--out", "{out}", "--no-prompt", "--cladding-um", "-5"],
        ["inspect", "{img}", "--out", "{out}", "--no-prompt", "--zones", "core,mantle"],
        ["inspect", "--no-prompt", "--out", "{out}"],
        ["inspect", "{img}", "--no-prompt"],
    ],
)
def test_usage_errors_exit_2(argv, tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), _fiber_image(1, "clean")[0])
    argv = [a.format(out=tmp_path / "o", img=img) for a in argv]
    assert main(argv) == 2


def test_interactive_questions_validate_answers():
    from dscope.cli.inspect import prompt_missing
    from dscope.config import load_config

    class A:
        paths: list = []
        out = None
        cladding_um = None
        um_per_px = None
        calibration = None
        core_um = None
        fiber_type = None

    answers = iter(["/definitely/not/here", ".", "", "maybe", "y", "abc", "9", "5", "125", "xx", "mm"])
    sink = io.StringIO()
    args = A()
    prompt_missing(args, load_config(), inp=lambda _prompt: next(answers), out=sink)
    assert args.paths == ["."]
    assert args.out == "dscope_results"
    assert args.core_um == 9 and args.cladding_um == 125
    assert args.fiber_type == "mm"
    text = sink.getvalue()
    assert "not an existing folder" in text and "answer y or n" in text and "not a number" in text
    assert "cladding must be larger" in text and "choose one of" in text


def test_schema_rejects_malformed_documents(batch_out):
    doc = next(d for d in _docs(batch_out).values() if d["status"] in ("PASS", "FAIL"))
    bad = json.loads(json.dumps(doc))
    bad["status"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        validate_document(bad)
    bad = json.loads(json.dumps(doc))
    bad["fiber"]["center_px"] = [1.0]
    with pytest.raises(jsonschema.ValidationError):
        validate_document(bad)
    if doc["status"] == "PASS":
        bad = json.loads(json.dumps(doc))
        bad["violations"] = [{"zone": "core", "rule": "x", "message": "y"}]
        with pytest.raises(jsonschema.ValidationError):
            validate_document(bad)


def test_huge_image_is_refused_by_pixel_limit(tmp_path, config_data):
    config_data["io"]["max_image_pixels"] = 100_000
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config_data))
    img = tmp_path / "big.png"
    cv2.imwrite(str(img), _fiber_image(3, "clean")[0])  # 640x480 = 307200 px
    out = tmp_path / "out"
    assert main(["inspect", str(img), "--out", str(out), "--config", str(cfg), "--no-prompt", "-q"]) == 0
    doc = json.loads((out / "big.json").read_text())
    assert doc["error"]["code"] == "image_too_large"


def test_unsupported_extension_named_explicitly(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    out = tmp_path / "out"
    assert main(["inspect", str(p), "--out", str(out), "--no-prompt", "-q"]) == 0
    doc = json.loads((out / "notes.json").read_text())
    assert doc["error"]["code"] == "unsupported_format"


def test_colliding_stems_get_unique_outputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    cv2.imwrite(str(a / "x.png"), _fiber_image(4, "clean")[0])
    cv2.imwrite(str(b / "x.png"), _fiber_image(5, "clean")[0])
    out = tmp_path / "out"
    assert main(["inspect", str(a), str(b), "--out", str(out), "--no-prompt", "-q", "--fiber-type", "sm-pc"]) == 0
    d1 = json.loads((out / "x.json").read_text())
    d2 = json.loads((out / "x_2.json").read_text())
    assert d1["image"]["path"] != d2["image"]["path"]
    assert d1["image"]["sha256"] != d2["image"]["sha256"]


def test_png_header_only_file_is_unreadable(tmp_path):
    # a valid PNG signature followed by garbage
    p = tmp_path / "hdr.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + b"\x00" * 40)
    out = tmp_path / "out"
    assert main(["inspect", str(p), "--out", str(out), "--no-prompt", "-q"]) == 0
    assert json.loads((out / "hdr.json").read_text())["error"]["code"] == "unreadable_image"


def test_hung_image_becomes_timeout_error_and_batch_goes_on(tmp_path, config_data):
    # a limit no inspection can meet: every image is killed and reported, none is lost
    config_data["batch"]["image_timeout_s"] = 0.001
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config_data))
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"f{i}.png"), _fiber_image(30 + i, "clean")[0])
    out = tmp_path / "out"
    assert main(["inspect", str(src), "--out", str(out), "--config", str(cfg), "--no-prompt", "-q", "--workers", "2"]) == 0
    summary = pd.read_csv(out / "summary_report.csv", keep_default_na=False)
    assert list(summary["Image_Filename"]) == ["f0.png", "f1.png", "f2.png"]
    for i in range(3):
        doc = json.loads((out / f"f{i}.json").read_text())
        validate_document(doc)
        assert doc["status"] == "ERROR" and doc["error"]["code"] == "timeout"
