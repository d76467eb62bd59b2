"""Tests of dscope.reporting.annotate / tables / plots on hand-built result documents."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest

from dscope.errors import DScopeError
from dscope.reporting.annotate import (
    DEFECT_COLORS_BGR,
    STATUS_COLORS_BGR,
    AnnotationStyle,
    defect_label,
    render_annotated,
    wrap_reasons,
)
from dscope.reporting.plots import batch_summary_plot, polar_defect_map
from dscope.reporting.tables import (
    DEFECT_COLUMNS,
    SUMMARY_COLUMNS,
    defect_rows,
    summary_row,
    write_defect_csv,
    write_summary_csv,
)

ZONES_UM = [("core", 0.0, 25.0), ("cladding", 25.0, 115.0), ("adhesive", 115.0, 135.0), ("contact", 135.0, 250.0)]


# ---------------------------------------------------------------------------------------------- factories


def circle_pts(cx, cy, r, n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).round().astype(int).tolist()


def make_defect(did, dtype, cx, cy, *, fiber_c, um_per_px, r_px=10.0, contour=None, zone="cladding"):
    """A defect dict as the document builder writes it (px always, um only with a scale)."""
    contour = contour if contour is not None else circle_pts(cx, cy, r_px)
    length_px, width_px, diam_px = 2 * r_px, 2 * r_px * (0.2 if dtype in ("scratch", "crack") else 1.0), 2 * r_px
    iec_px = width_px if dtype in ("scratch", "crack") else diam_px
    um = (lambda v: None if um_per_px is None else v * um_per_px)
    return {
        "id": did,
        "type": dtype,
        "zone": zone,
        "zones_touched": [zone],
        "centroid_px": [float(cx), float(cy)],
        "centroid_um": None if um_per_px is None else [(cx - fiber_c[0]) * um_per_px, (cy - fiber_c[1]) * um_per_px],
        "contour_px": contour,
        "bbox_px": [int(cx - r_px), int(cy - r_px), int(2 * r_px), int(2 * r_px)],
        "area_px": math.pi * r_px**2,
        "length_px": length_px,
        "width_px": width_px,
        "diameter_px": diam_px,
        "iec_size_px": iec_px,
        "area_um2": None if um_per_px is None else math.pi * r_px**2 * um_per_px**2,
        "length_um": um(length_px),
        "width_um": um(width_px),
        "diameter_um": um(diam_px),
        "iec_size_um": um(iec_px),
        "orientation_deg": 30.0,
        "confidence": 0.87,
        "detected_by": ["do2mr", "lei"],
    }


def make_doc(
    *,
    status="PASS",
    w=800,
    h=600,
    center=None,
    r_px=200.0,
    axis_ratio=1.0,
    um_per_px=0.3125,
    defects=(),
    violations=(),
    filename="a.png",
    total_s=0.25,
):
    cx, cy = center if center is not None else (w / 2, h / 2)
    px_per_um = r_px / 62.5  # 125 um cladding
    ell = (
        None
        if axis_ratio == 1.0
        else {"center_px": [cx, cy], "semi_major_px": r_px, "semi_minor_px": r_px / axis_ratio, "angle_deg": 0.0}
    )
    defects = list(defects)
    by_zone = {z: sum(1 for d in defects if d["zone"] == z) for z, _, _ in ZONES_UM}
    return {
        "schema": "dscope.result",
        "schema_version": "1.0.0",
        "image": {"path": f"/data/{filename}", "filename": filename, "width": w, "height": h},
        "status": status,
        "error": None,
        "warnings": [],
        "fiber_type": "sm-pc",
        "rule_set": "iec61300-3-35-ed2-sm-pc",
        "profile": "deep_inspection",
        "fiber": {
            "center_px": [cx, cy],
            "cladding_radius_px": r_px,
            "cladding_ellipse_px": ell,
            "core_radius_px": r_px * 9 / 125,
            "core_visible": True,
            "um_per_px": um_per_px,
            "scale_source": "fiber_type_nominal" if um_per_px else "none",
            "quality": 0.9,
        },
        "zones": [
            {"name": n, "inner_um": a, "outer_um": b, "inner_px": a / 2 * px_per_um, "outer_px": b / 2 * px_per_um}
            for n, a, b in ZONES_UM
        ],
        "defects": defects,
        "violations": list(violations),
        "grade_reason": None,
        "counts": {"total": len(defects), "by_zone": by_zone, "by_type": {}},
        "timings_s": {"total": total_s},
    }


def error_doc(code="localization_failed", message="no fiber end face could be found", filename="bad.png"):
    doc = make_doc(status="ERROR", filename=filename)
    doc.update({"error": {"code": code, "message": message}, "fiber": None, "zones": [], "defects": []})
    doc["counts"] = {"total": 0, "by_zone": {z: 0 for z, _, _ in ZONES_UM}, "by_type": {}}
    return doc


def end_face(w=800, h=600, *, r_px=200.0, glass=70, ferrule=185, seed=0):
    """Plain synthetic end face (dark glass in a bright ferrule) with mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.where(np.hypot(xx - w / 2, yy - h / 2) < r_px, glass, ferrule).astype(np.float32)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def color_fraction(region: np.ndarray, bgr, tol=30) -> float:
    d = np.abs(region.astype(int) - np.asarray(bgr, int)).max(axis=2)
    return float((d <= tol).mean())


RENDER = dict(max_side_px=2048, font_scale=0.6, line_px=2)


# ---------------------------------------------------------------------------------------------- annotate


@pytest.mark.parametrize("shape,max_side,expected", [((900, 1200), 600, (450, 600)), ((600, 800), 2048, (600, 800)),
                                                      ((1536, 2048), 1000, (750, 1000))])
def test_annotated_keeps_aspect_and_downscales(shape, max_side, expected):
    h, w = shape
    img = end_face(w, h, r_px=min(w, h) / 3)
    doc = make_doc(w=w, h=h, r_px=min(w, h) / 3)
    out = render_annotated(img, doc, max_side_px=max_side, font_scale=0.6, line_px=2)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == expected
    assert max(out.shape[:2]) <= max_side
    assert abs(out.shape[1] / out.shape[0] - w / h) < 0.01


@pytest.mark.parametrize("background", ["dark", "bright"])
@pytest.mark.parametrize("status", ["PASS", "FAIL", "UNGRADED", "ERROR"])
def test_stamp_region_is_coloured_by_status(status, background):
    img = end_face(glass=30, ferrule=60) if background == "dark" else end_face(glass=200, ferrule=245)
    doc = error_doc() if status == "ERROR" else make_doc(status=status)
    if status == "FAIL":
        doc["violations"] = [{"zone": "core", "rule": "core.any", "message": "scratch in core", "defect_ids": []}]
    out = render_annotated(img, doc, **RENDER)
    h, w = out.shape[:2]
    corner = out[: h // 6, : w // 4]
    own = color_fraction(corner, STATUS_COLORS_BGR[status])
    assert own > 0.15, f"{status} stamp colour covers only {own:.1%} of the top-left corner"
    for other in ("PASS", "FAIL", "UNGRADED"):  # the saturated stamp colours (grey is not specific)
        if other != status:
            assert color_fraction(corner, STATUS_COLORS_BGR[other]) < 0.02, f"{other} colour in the {status} stamp"


def test_stamp_colour_channels_dominate():
    img = end_face()
    h, w = img.shape
    for status, channel in (("PASS", 1), ("FAIL", 2)):
        out = render_annotated(img, make_doc(status=status), **RENDER)
        corner = out[: h // 6, : w // 4].astype(int)
        others = [c for c in range(3) if c != channel]
        dominant = (corner[:, :, channel] > corner[:, :, others[0]] + 60) & (corner[:, :, channel] > corner[:, :, others[1]] + 60)
        assert dominant.mean() > 0.15, status


@pytest.mark.parametrize("dtype", ["contamination", "pit", "chip"])
@pytest.mark.parametrize("max_side", [2048, 400])
def test_defect_contour_gets_class_colour(dtype, max_side):
    img = end_face()
    fc = (400.0, 300.0)
    d = make_defect("D1", dtype, 470, 330, fiber_c=fc, um_per_px=0.3125, r_px=30)
    out = render_annotated(img, make_doc(defects=[d]), max_side_px=max_side, font_scale=0.6, line_px=2)
    s = out.shape[1] / img.shape[1]
    pts = np.round(np.asarray(d["contour_px"], float) * s).astype(int)
    hits = [
        color_fraction(out[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2], DEFECT_COLORS_BGR[dtype], tol=40) > 0
        for x, y in pts
    ]
    assert np.mean(hits) > 0.9
    # the class colour is specific: no other class colour on the contour
    for other, bgr in DEFECT_COLORS_BGR.items():
        if other != dtype:
            other_hits = [color_fraction(out[y : y + 1, x : x + 1], bgr, tol=25) > 0 for x, y in pts]
            assert np.mean(other_hits) < 0.1


def test_scratch_is_drawn_as_rotated_rectangle_in_scratch_colour():
    img = end_face()
    fc = (400.0, 300.0)
    # a thin diagonal scratch: its contour is a sliver; the drawing is its min-area rectangle
    line = np.array([[300, 200], [500, 400]], float)
    normal = np.array([1, -1]) / math.sqrt(2) * 2
    contour = np.round(np.vstack([line + normal, (line - normal)[::-1]])).astype(int).tolist()
    d = make_defect("S1", "scratch", 400, 300, fiber_c=fc, um_per_px=0.3125, contour=contour)
    out = render_annotated(img, make_doc(defects=[d]), **RENDER)
    box = cv2.boxPoints(cv2.minAreaRect(np.asarray(contour, np.float32)))
    # sample along the long edges of the rectangle
    samples = [box[0] + t * (box[1] - box[0]) for t in np.linspace(0.1, 0.9, 9)]
    samples += [box[2] + t * (box[3] - box[2]) for t in np.linspace(0.1, 0.9, 9)]
    long_edges = [np.linalg.norm(box[1] - box[0]), np.linalg.norm(box[3] - box[2])]
    assert min(long_edges) > 100  # the samples are on the long sides
    hits = [
        color_fraction(out[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2],
                       DEFECT_COLORS_BGR["scratch"], tol=40) > 0
        for x, y in samples
    ]
    assert np.mean(hits) > 0.9


def test_error_doc_renders_image_with_message_and_no_fiber_overlay():
    img = end_face(seed=3)
    out = render_annotated(img, error_doc(message="the image holds no circle"), **RENDER)
    assert out.shape[:2] == img.shape
    # the middle of the image is untouched (nothing to outline)
    h, w = img.shape
    mid = out[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
    assert np.array_equal(mid[:, :, 0], img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3])
    assert np.array_equal(mid[:, :, 0], mid[:, :, 2])
    # the message panel darkens a band under the stamp
    assert color_fraction(out[: h // 6, : w // 4], STATUS_COLORS_BGR["ERROR"]) > 0.15


def test_elliptical_fiber_outline_is_an_ellipse():
    w, h, r, ratio = 800, 600, 200.0, 1.3
    img = np.full((h, w), 100, np.uint8)
    doc = make_doc(axis_ratio=ratio, r_px=r)
    doc["zones"] = []
    out = render_annotated(img, doc, **RENDER)
    cx, cy = w / 2, h / 2

    def white_near(x, y, k=3):
        win = out[int(y) - k : int(y) + k + 1, int(x) - k : int(x) + k + 1]
        return bool((win.min(axis=2) > 220).any())

    assert white_near(cx + r, cy) and white_near(cx - r, cy)  # major axis along x
    assert white_near(cx, cy + r / ratio) and white_near(cx, cy - r / ratio)  # minor axis along y
    assert not white_near(cx, cy + r)  # a circle would pass here


def test_many_defects_render_and_unlabelled_ones_still_outlined():
    img = end_face()
    rng = np.random.default_rng(7)
    fc = (400.0, 300.0)
    defects = []
    for i in range(150):
        a, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 180)
        defects.append(make_defect(f"C{i}", "contamination", 400 + rr * np.cos(a), 300 + rr * np.sin(a), fiber_c=fc,
                                   um_per_px=0.3125, r_px=3))
    style = AnnotationStyle(max_labels=5)
    out = render_annotated(img, make_doc(defects=defects), style=style, **RENDER)
    assert out.shape[:2] == img.shape
    # every defect got a ring: the class colour appears around nearly all centroids
    found = 0
    for d in defects:
        x, y = (int(round(v)) for v in d["centroid_px"])
        win = out[max(0, y - 12) : y + 13, max(0, x - 12) : x + 13]
        found += color_fraction(win, DEFECT_COLORS_BGR["contamination"], tol=40) > 0
    assert found >= 0.9 * len(defects)


def test_non_uint8_and_colour_inputs_render():
    img8 = end_face()
    img16 = img8.astype(np.uint16) * 257
    out = render_annotated(img16, make_doc(), **RENDER)
    assert out.dtype == np.uint8 and out.shape == (600, 800, 3)
    # the 16-bit image is stretched onto the full 8-bit range, preserving the picture
    h, w = out.shape[:2]
    plain = render_annotated(img16, error_doc(), **RENDER)  # nothing drawn over the middle
    a = plain[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3, 0].astype(float).ravel()
    b = img8[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert a.max() - a.min() >= b.max() - b.min()
    bgr = cv2.cvtColor(end_face(), cv2.COLOR_GRAY2BGR)
    assert render_annotated(bgr, make_doc(), **RENDER).shape == (600, 800, 3)


@pytest.mark.parametrize("bad", [None, np.zeros(10, np.uint8), np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.array([["a"]])])
def test_bad_image_raises_unreadable_image(bad):
    with pytest.raises(DScopeError) as ei:
        render_annotated(bad, make_doc(), **RENDER)
    assert ei.value.code == "unreadable_image"


def test_bad_render_parameters_raise():
    with pytest.raises(ValueError):
        render_annotated(end_face(), make_doc(), max_side_px=0, font_scale=0.6, line_px=2)
    with pytest.raises(ValueError):
        render_annotated(end_face(), make_doc(), max_side_px=500, font_scale=0, line_px=2)


def test_defect_label_uses_iec_size_and_unit():
    fc = (400.0, 300.0)
    s = make_defect("S1", "scratch", 400, 300, fiber_c=fc, um_per_px=0.5, r_px=20)  # width 8 px = 4 um
    assert defect_label(s) == "S1: Scratch, 4.0 um"
    p = make_defect("P3", "pit", 400, 300, fiber_c=fc, um_per_px=None, r_px=5)  # diameter 10 px
    assert defect_label(p) == "P3: Pit, 10.0 px"
    assert defect_label({"id": "X", "type": "chip"}) == "X: Chip"


def test_annotation_tolerates_partial_docs():
    img = end_face()
    doc = {"status": "UNGRADED", "grade_reason": "no micrometre scale", "fiber": {"center_px": [400, 300]},
           "defects": [{"id": "D1", "type": "pit", "centroid_px": [410, 300]}, "junk"]}
    out = render_annotated(img, doc, **RENDER)
    assert color_fraction(out[:100, :200], STATUS_COLORS_BGR["UNGRADED"]) > 0.1


# ---------------------------------------------------------------------------------------------- tables


def scaled_and_unscaled_docs():
    fc = (400.0, 300.0)
    d_um = [make_defect("S1", "scratch", 450, 280, fiber_c=fc, um_per_px=0.3125, r_px=20),
            make_defect("P1", "pit", 380, 310, fiber_c=fc, um_per_px=0.3125, r_px=4, zone="core")]
    d_px = [make_defect("C1", "contamination", 300, 300, fiber_c=fc, um_per_px=None, r_px=8)]
    return make_doc(defects=d_um, status="FAIL", filename="scaled, \"odd\" name.png"), make_doc(
        defects=d_px, um_per_px=None, status="UNGRADED", filename="noscale.png")


def test_defect_csv_round_trips_through_pandas(tmp_path):
    doc, _ = scaled_and_unscaled_docs()
    path = tmp_path / "a_report.csv"
    write_defect_csv(doc, path)
    df = pd.read_csv(path)
    assert list(df.columns) == DEFECT_COLUMNS
    assert len(df) == len(doc["defects"])
    for (_, row), d in zip(df.iterrows(), doc["defects"]):
        assert row["Image_Filename"] == doc["image"]["filename"]
        assert row["Defect_ID"] == d["id"] and row["Classification"] == d["type"] and row["Zone"] == d["zone"]
        assert row["Centroid_X_px"] == pytest.approx(d["centroid_px"][0])
        assert row["Centroid_Y_um"] == pytest.approx(d["centroid_um"][1])
        assert row["Width_um"] == pytest.approx(d["width_um"])
        assert row["Area_um2"] == pytest.approx(d["area_um2"])
        assert row["Length_px"] == pytest.approx(d["length_px"])
        assert row["IEC_Size_um"] == pytest.approx(d["iec_size_um"])
        assert row["Confidence_Score"] == pytest.approx(d["confidence"])
        assert row["Detected_By"].split("|") == d["detected_by"]


def test_defect_csv_um_columns_empty_without_scale(tmp_path):
    _, doc = scaled_and_unscaled_docs()
    path = tmp_path / "b_report.csv"
    write_defect_csv(doc, path)
    df = pd.read_csv(path)
    um_cols = [c for c in DEFECT_COLUMNS if c.endswith("_um") or c.endswith("_um2")]
    px_cols = [c for c in DEFECT_COLUMNS if c.endswith("_px")]
    assert um_cols and px_cols
    assert df[um_cols].isna().all().all()
    assert df[px_cols].notna().all().all()
    assert (df["Diameter_px"] > 0).all()


def test_defect_csv_header_only_without_defects(tmp_path):
    path = tmp_path / "c_report.csv"
    write_defect_csv(make_doc(), path)
    df = pd.read_csv(path)
    assert list(df.columns) == DEFECT_COLUMNS and len(df) == 0


def test_violated_rules_column_names_the_rules():
    doc, _ = scaled_and_unscaled_docs()
    doc["violations"] = [{"zone": "cladding", "rule": "cladding.scratch(3,inf)", "message": "m", "defect_ids": ["S1"]}]
    rows = {r["Defect_ID"]: r for r in defect_rows(doc)}
    assert rows["S1"]["Violated_Rules"] == "cladding.scratch(3,inf)"
    assert rows["P1"]["Violated_Rules"] == ""


def test_summary_rows_reasons_counts_and_order(tmp_path):
    scaled, unscaled = scaled_and_unscaled_docs()
    scaled["violations"] = [
        {"zone": "cladding", "rule": "r1", "message": "scratch 4.2 um wide > 3 um limit in cladding", "defect_ids": ["S1"]},
        {"zone": "core", "rule": "r2", "message": "pit in core", "defect_ids": ["P1"]},
    ]
    unscaled["grade_reason"] = "no micrometre scale: rule set is in um"
    err = error_doc(code="unreadable_image", message="truncated PNG")
    passed = make_doc(filename="ok.png", total_s=0.125)
    docs = [scaled, err, unscaled, passed]
    path = tmp_path / "summary_report.csv"
    write_summary_csv(iter(docs), path)  # any iterable
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df.columns) == SUMMARY_COLUMNS
    assert list(df["Image_Filename"]) == [d["image"]["filename"] for d in docs]
    assert list(df["Pass/Fail_Status"]) == ["FAIL", "ERROR", "UNGRADED", "PASS"]
    assert df["Failure_Reason(s)"][0] == "scratch 4.2 um wide > 3 um limit in cladding; pit in core"
    assert df["Failure_Reason(s)"][1] == "unreadable_image: truncated PNG"
    assert df["Error_Code"][1] == "unreadable_image"
    assert df["Failure_Reason(s)"][2] == "no micrometre scale: rule set is in um"
    assert df["Failure_Reason(s)"][3] == ""
    assert df["Total_Defect_Count"][0] == 2 and df["Core_Defect_Count"][0] == 1 and df["Cladding_Defect_Count"][0] == 1
    assert float(df["Processing_Time_s"][3]) == pytest.approx(0.125)


def test_summary_row_counts_defects_when_counts_missing():
    doc, _ = scaled_and_unscaled_docs()
    del doc["counts"]
    row = summary_row(doc)
    assert row["Total_Defect_Count"] == 2
    assert row["Core_Defect_Count"] == 1 and row["Cladding_Defect_Count"] == 1


# ---------------------------------------------------------------------------------------------- plots


def batch_docs(n=12, *, um=True, seed=0):
    rng = np.random.default_rng(seed)
    fc = (400.0, 300.0)
    docs = []
    types = list(DEFECT_COLORS_BGR)
    for i in range(n):
        if i % 6 == 5:
            docs.append(error_doc(filename=f"e{i}.png"))
            continue
        ds = []
        for k in range(int(rng.integers(0, 4))):
            a, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 210)
            ds.append(make_defect(f"D{k}", types[int(rng.integers(0, len(types)))], fc[0] + rr * np.cos(a),
                                  fc[1] + rr * np.sin(a), fiber_c=fc, um_per_px=0.3125 if um else None,
                                  r_px=float(rng.uniform(2, 10))))
        docs.append(make_doc(status="FAIL" if len(ds) > 2 else "PASS", defects=ds, um_per_px=0.3125 if um else None,
                             filename=f"i{i}.png", total_s=float(rng.uniform(0.1, 0.6))))
    return docs


def read_png(path):
    assert path.exists() and path.stat().st_size > 0
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


@pytest.mark.parametrize("docs_kind", ["batch", "empty", "errors_only"])
def test_batch_summary_plot_writes_png_of_expected_size(tmp_path, docs_kind):
    docs = {"batch": batch_docs(), "empty": [], "errors_only": [error_doc()]}[docs_kind]
    path = tmp_path / "batch_summary.png"
    batch_summary_plot(docs, path, width_in=8, height_in=5, dpi=50)
    img = read_png(path)
    assert img.shape[:2] == (250, 400)
    assert img.std() > 5  # not a blank canvas


def test_batch_summary_plot_shows_status_colours(tmp_path):
    path = tmp_path / "b.png"
    batch_summary_plot([make_doc(status="PASS"), make_doc(status="PASS")], path, width_in=8, height_in=5, dpi=50)
    img = read_png(path)
    assert color_fraction(img, STATUS_COLORS_BGR["PASS"], tol=12) > 0.005
    assert color_fraction(img, STATUS_COLORS_BGR["FAIL"], tol=12) == 0.0


@pytest.mark.parametrize("um", [True, False])
def test_polar_map_writes_png_with_and_without_scale(tmp_path, um):
    path = tmp_path / "polar.png"
    polar_defect_map(batch_docs(um=um), path, size_in=6, dpi=50)
    img = read_png(path)
    assert img.shape[:2] == (300, 300)


def test_polar_map_empty_batch(tmp_path):
    path = tmp_path / "polar.png"
    polar_defect_map([error_doc()], path, size_in=6, dpi=50)
    assert read_png(path).shape[:2] == (300, 300)


@pytest.mark.parametrize("um", [True, False])
def test_polar_map_places_defects_as_seen_in_the_image(tmp_path, um):
    """A defect right of / above / ... the fiber centre in the image appears right of / above / ... the plot centre."""
    fc = (400.0, 300.0)
    where = {"contamination": (150, 0), "pit": (0, -150), "chip": (-150, 0), "crack": (0, 150)}  # right, up, left, down
    ds = [make_defect(f"D{i}", t, fc[0] + dx, fc[1] + dy, fiber_c=fc, um_per_px=0.3125 if um else None, r_px=6)
          for i, (t, (dx, dy)) in enumerate(where.items())]
    path = tmp_path / "polar.png"
    polar_defect_map([make_doc(defects=ds, um_per_px=0.3125 if um else None)], path, size_in=6, dpi=80,
                     marker_alpha=1.0)
    img = read_png(path)
    h, w = img.shape[:2]
    pos = {}
    for t in where:
        mask = np.abs(img.astype(int) - np.asarray(DEFECT_COLORS_BGR[t], int)).max(axis=2) <= 25
        mask[: h // 3, : w // 3] = False  # the legend (upper-left corner)
        ys, xs = np.nonzero(mask)
        assert len(xs) > 10, t
        pos[t] = np.array([xs.mean(), ys.mean()])
    # right/left markers on one row, up/down markers in one column, arranged as in the image
    assert pos["contamination"][0] - pos["chip"][0] > 40 and abs(pos["contamination"][1] - pos["chip"][1]) < 5
    assert pos["crack"][1] - pos["pit"][1] > 40 and abs(pos["crack"][0] - pos["pit"][0]) < 5
    centre = (pos["contamination"] + pos["chip"]) / 2
    assert np.allclose(centre, (pos["pit"] + pos["crack"]) / 2, atol=5)


@pytest.mark.parametrize("n", [1, 2, 3, 12])
@pytest.mark.parametrize("max_lines", [1, 3, 5])
def test_reason_text_is_capped_and_counts_the_rest(n, max_lines):
    reasons = [f"scratch S{i} 4.2 um wide > 3 um limit in the cladding zone" for i in range(n)]
    lines = wrap_reasons(reasons, 30, max_lines)
    assert 1 <= len(lines) <= max_lines
    assert all(len(ln) <= 30 for ln in lines if not ln.startswith("..."))
    shown = sum(1 for ln in lines if ln.startswith("scratch"))
    if shown < n:
        assert lines[-1] == f"... {n - shown} more reason(s) in the report"
    else:
        assert not lines[-1].startswith("...")
    # reasons are kept in order and whole
    assert [ln.split()[1] for ln in lines if ln.startswith("scratch")] == [f"S{i}" for i in range(shown)]


def test_many_violations_render():
    doc = make_doc(status="FAIL")
    doc["violations"] = [{"zone": "core", "rule": f"r{i}", "message": f"defect {i} too large in core " * 3,
                          "defect_ids": []} for i in range(30)]
    out = render_annotated(end_face(), doc, **RENDER)
    assert color_fraction(out[:100, :200], STATUS_COLORS_BGR["FAIL"]) > 0.1
