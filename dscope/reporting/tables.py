"""CSV tables: one row per defect (``<stem>_report.csv``) and one row per image (``summary_report.csv``).

Both tables are built from result documents (schema ``dscope.result``).  Empty
cells mean "not available": the micrometre columns are empty when the image has
no micrometre scale, the pixel columns are always filled.

Coordinates: ``Centroid_X_px`` / ``Centroid_Y_px`` are image pixels (x right,
y down); ``Centroid_X_um`` / ``Centroid_Y_um`` are micrometres relative to the
fiber centre in the fiber's circular frame (x right, y down).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping

from dscope.inspection.types import ZONE_NAMES

__all__ = [
    "DEFECT_COLUMNS",
    "SUMMARY_COLUMNS",
    "defect_rows",
    "summary_row",
    "failure_reasons",
    "write_defect_csv",
    "write_summary_csv",
]

#: Columns of ``<stem>_report.csv``, in order.
DEFECT_COLUMNS: list[str] = [
    "Image_Filename",
    "Defect_ID",
    "Zone",
    "Classification",
    "Confidence_Score",
    "Centroid_X_um",
    "Centroid_Y_um",
    "Length_um",
    "Width_um",
    "Area_um2",
    "Diameter_um",
    "IEC_Size_um",
    "Centroid_X_px",
    "Centroid_Y_px",
    "Length_px",
    "Width_px",
    "Area_px",
    "Diameter_px",
    "IEC_Size_px",
    "Orientation_deg",
    "Zones_Touched",
    "Detected_By",
    "Violated_Rules",
]

#: Columns of ``summary_report.csv``, in order (the issue's columns first, then extras).
SUMMARY_COLUMNS: list[str] = [
    "Image_Filename",
    "Pass/Fail_Status",
    "Processing_Time_s",
    "Total_Defect_Count",
    "Core_Defect_Count",
    "Cladding_Defect_Count",
    "Failure_Reason(s)",
    "Error_Code",
    "Adhesive_Defect_Count",
    "Contact_Defect_Count",
    "Fiber_Type",
    "Rule_Set",
    "Profile",
    "Um_Per_Px",
    "Warnings",
]

#: Separator inside list-valued cells (zones touched, detectors, rules, warnings).
LIST_SEPARATOR = "|"
#: Separator between failure reasons.
REASON_SEPARATOR = "; "


def _num(x) -> float | int | None:
    """A finite number as a plain Python value, else None (numpy scalars accepted)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "iu"):
        return int(x)
    return v


def _xy(p, i: int):
    if p is None:
        return None
    try:
        return _num(p[i])
    except (TypeError, IndexError, KeyError):
        return None


def _filename(doc: Mapping) -> str:
    image = doc.get("image") or {}
    name = image.get("filename")
    if not name and image.get("path"):
        name = os.path.basename(str(image["path"]))
    return str(name or "")


def _join(items) -> str:
    if not items:
        return ""
    if isinstance(items, str):
        return items
    return LIST_SEPARATOR.join(str(v) for v in items)


def defect_rows(doc: Mapping) -> list[dict]:
    """One row per defect of a result document, keys :data:`DEFECT_COLUMNS`.

    Missing values (no micrometre scale, field absent) are ``None``.

    Examples
    --------
    >>> doc = {"image": {"filename": "a.png"}, "defects": [{"id": "S1", "type": "scratch", "zone": "core",
    ...        "centroid_px": [10.0, 20.0], "width_px": 3.0, "width_um": None}], "violations": []}
    >>> r = defect_rows(doc)[0]
    >>> r["Defect_ID"], r["Classification"], r["Centroid_X_px"], r["Width_um"]
    ('S1', 'scratch', 10.0, None)
    """
    name = _filename(doc)
    rules_by_id: dict[str, list[str]] = {}
    for v in doc.get("violations") or []:
        if isinstance(v, Mapping):
            for did in v.get("defect_ids") or []:
                rules_by_id.setdefault(str(did), []).append(str(v.get("rule", "")))
    rows = []
    for d in doc.get("defects") or []:
        if not isinstance(d, Mapping):
            continue
        did = str(d.get("id", ""))
        linear = d.get("type") in ("scratch", "crack")
        iec_um = _num(d.get("iec_size_um"))
        if iec_um is None:
            iec_um = _num(d.get("width_um" if linear else "diameter_um"))
        iec_px = _num(d.get("iec_size_px"))
        if iec_px is None:
            iec_px = _num(d.get("width_px" if linear else "diameter_px"))
        rows.append(
            {
                "Image_Filename": name,
                "Defect_ID": did,
                "Zone": d.get("zone"),
                "Classification": d.get("type"),
                "Confidence_Score": _num(d.get("confidence")),
                "Centroid_X_um": _xy(d.get("centroid_um"), 0),
                "Centroid_Y_um": _xy(d.get("centroid_um"), 1),
                "Length_um": _num(d.get("length_um")),
                "Width_um": _num(d.get("width_um")),
                "Area_um2": _num(d.get("area_um2")),
                "Diameter_um": _num(d.get("diameter_um")),
                "IEC_Size_um": iec_um,
                "Centroid_X_px": _xy(d.get("centroid_px"), 0),
                "Centroid_Y_px": _xy(d.get("centroid_px"), 1),
                "Length_px": _num(d.get("length_px")),
                "Width_px": _num(d.get("width_px")),
                "Area_px": _num(d.get("area_px")),
                "Diameter_px": _num(d.get("diameter_px")),
                "IEC_Size_px": iec_px,
                "Orientation_deg": _num(d.get("orientation_deg")),
                "Zones_Touched": _join(d.get("zones_touched")),
                "Detected_By": _join(d.get("detected_by")),
                "Violated_Rules": _join(rules_by_id.get(did)),
            }
        )
    return rows


def failure_reasons(doc: Mapping) -> str:
    """Why an image is not PASS: violation messages, the error ``code: message`` or the UNGRADED reason.

    Examples
    --------
    >>> failure_reasons({"status": "ERROR", "error": {"code": "unreadable_image", "message": "truncated PNG"}})
    'unreadable_image: truncated PNG'
    >>> failure_reasons({"status": "PASS", "violations": []})
    ''
    """
    status = str(doc.get("status") or "").upper()
    err = doc.get("error")
    if status == "ERROR" or (isinstance(err, Mapping) and err.get("code")):
        if isinstance(err, Mapping):
            code, msg = err.get("code") or "internal_error", err.get("message") or ""
            return f"{code}: {msg}" if msg else str(code)
        return "internal_error: no error details in the result document"
    parts = [str(v.get("message") or v.get("rule") or "") for v in doc.get("violations") or [] if isinstance(v, Mapping)]
    parts = [p for p in parts if p]
    if status == "UNGRADED" and doc.get("grade_reason"):
        parts.append(str(doc["grade_reason"]))
    return REASON_SEPARATOR.join(parts)


def summary_row(doc: Mapping) -> dict:
    """One row of ``summary_report.csv`` (keys :data:`SUMMARY_COLUMNS`).

    Zone counts come from ``doc["counts"]["by_zone"]`` when present, else are
    counted from the defects.

    Examples
    --------
    >>> row = summary_row({"image": {"filename": "a.png"}, "status": "FAIL", "timings_s": {"total": 0.5},
    ...     "defects": [{"zone": "core"}], "violations": [{"message": "scratch in core"}]})
    >>> row["Pass/Fail_Status"], row["Core_Defect_Count"], row["Failure_Reason(s)"]
    ('FAIL', 1, 'scratch in core')
    """
    defects = [d for d in doc.get("defects") or [] if isinstance(d, Mapping)]
    counts = doc.get("counts") if isinstance(doc.get("counts"), Mapping) else {}
    by_zone = counts.get("by_zone") if isinstance(counts.get("by_zone"), Mapping) else None
    if by_zone is None:
        by_zone = {z: 0 for z in ZONE_NAMES}
        for d in defects:
            z = d.get("zone")
            by_zone[z] = by_zone.get(z, 0) + 1
    total = _num(counts.get("total"))
    if total is None:
        total = len(defects)
    err = doc.get("error") if isinstance(doc.get("error"), Mapping) else None
    fiber = doc.get("fiber") if isinstance(doc.get("fiber"), Mapping) else {}
    timings = doc.get("timings_s") if isinstance(doc.get("timings_s"), Mapping) else {}
    return {
        "Image_Filename": _filename(doc),
        "Pass/Fail_Status": str(doc.get("status") or "ERROR").upper(),
        "Processing_Time_s": _num(timings.get("total")),
        "Total_Defect_Count": int(total),
        "Core_Defect_Count": int(by_zone.get("core", 0) or 0),
        "Cladding_Defect_Count": int(by_zone.get("cladding", 0) or 0),
        "Failure_Reason(s)": failure_reasons(doc),
        "Error_Code": (err.get("code") if err else None),
        "Adhesive_Defect_Count": int(by_zone.get("adhesive", 0) or 0),
        "Contact_Defect_Count": int(by_zone.get("contact", 0) or 0),
        "Fiber_Type": doc.get("fiber_type"),
        "Rule_Set": doc.get("rule_set"),
        "Profile": doc.get("profile"),
        "Um_Per_Px": _num(fiber.get("um_per_px")),
        "Warnings": _join(doc.get("warnings")),
    }


def _cell(v) -> str:
    """CSV text of one value: empty for None, shortest round-trip repr for floats."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)


def _write(path, columns: list[str], rows: Iterable[Mapping]) -> None:
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(columns)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in columns])
        os.replace(tmp, path)  # readers never see a half-written table
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_defect_csv(doc: Mapping, path: str | os.PathLike) -> None:
    """Write ``<stem>_report.csv``: the header and one row per defect (header only when there is none)."""
    _write(path, DEFECT_COLUMNS, defect_rows(doc))


def write_summary_csv(docs: Iterable[Mapping], path: str | os.PathLike) -> None:
    """Write ``summary_report.csv``: one row per document, in the order given."""
    _write(path, SUMMARY_COLUMNS, (summary_row(d) for d in docs))
