"""Reading and writing ``calibration.json`` and the calibration history CSV (issue 3).

The measurement itself is pure (:mod:`dscope.inspection.calibration`); this
module is the I/O edge.  ``calibration.json``::

    {"schema": "dscope.calibration", "schema_version": "1.0.0",
     "um_per_px": 0.25, "uncertainty_um_per_px": 0.0001, "n_dots": 412,
     "method": "dot_grid", "dot_spacing_um": 10.0, "image": "grid.png",
     "timestamp": "2026-11-24T01:00:00Z", "details": {...}}

``method`` is ``"dot_grid"`` (with ``dot_spacing_um``) or ``"reference_fiber"``
(with ``cladding_um``).  Every run is also appended to a history CSV
(``calibration_history.csv`` beside the calibration file unless told otherwise).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from dscope.errors import CalibrationError
from dscope.jsonio import read_json_file
from dscope.inspection.calibration import CalibrationResult

SCHEMA = "dscope.calibration"
SCHEMA_VERSION = "1.0.0"
HISTORY_NAME = "calibration_history.csv"
HISTORY_FIELDS = (
    "timestamp", "method", "um_per_px", "uncertainty_um_per_px", "n_dots", "dot_spacing_um", "cladding_um",
    "image", "calibration_file",
)
METHODS = ("dot_grid", "reference_fiber")


def _now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v


def calibration_document(result: CalibrationResult, *, image_path=None, timestamp: str | None = None) -> dict:
    """The JSON document for a calibration result (no I/O)."""
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "um_per_px": float(result.um_per_px),
        "uncertainty_um_per_px": float(result.uncertainty_um_per_px),
        "n_dots": int(result.n_dots),
        "method": result.method,
        "image": None if image_path is None else str(image_path),
        "timestamp": timestamp or _now_iso(),
    }
    if result.method == "dot_grid":
        doc["dot_spacing_um"] = float(result.details.get("dot_spacing_um", float("nan")))
    else:
        doc["cladding_um"] = float(result.details.get("cladding_um", float("nan")))
    doc["details"] = _jsonable(dict(result.details))
    return doc


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_history(history_csv, doc: dict, calibration_file=None) -> Path:
    """Append one calibration run to the history CSV (header written when the file is new)."""
    p = Path(history_csv)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = not p.exists() or p.stat().st_size == 0
    row = {k: doc.get(k, "") for k in HISTORY_FIELDS}
    row["calibration_file"] = "" if calibration_file is None else str(calibration_file)
    for k in ("dot_spacing_um", "cladding_um", "image"):
        if row[k] is None:
            row[k] = ""
    with p.open("a", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    return p


def write_calibration(result: CalibrationResult, path, *, image_path=None, history_csv=None) -> dict:
    """Write ``calibration.json`` atomically and append the run to the history CSV.

    Parameters
    ----------
    result : CalibrationResult
        From :func:`calibrate_dot_grid` or :func:`calibrate_reference_fiber`.
    path : path-like
        Calibration file to (over)write.
    image_path : path-like, optional
        Image the calibration was measured on (recorded in the file).
    history_csv : path-like, optional
        History file; default ``calibration_history.csv`` beside ``path``.

    Returns
    -------
    dict
        The document written (with ``history_csv`` added).
    """
    if not (result.um_per_px > 0 and math.isfinite(result.um_per_px)):
        raise CalibrationError("calibration_failed", f"refusing to write a non-positive scale {result.um_per_px!r}")
    p = Path(path)
    doc = calibration_document(result, image_path=image_path)
    try:
        _atomic_write_text(p, json.dumps(doc, indent=2) + "\n")
        hist = append_history(history_csv if history_csv is not None else p.parent / HISTORY_NAME, doc, calibration_file=p)
    except OSError as exc:
        raise CalibrationError("calibration_failed", f"{p}: cannot write calibration: {exc.strerror or exc}", file=str(p)) from None
    out = dict(doc)
    out["history_csv"] = str(hist)
    return out


def _bad(path, key: str, msg: str) -> CalibrationError:
    return CalibrationError("calibration_invalid", f"{path}: {key}: {msg}", file=str(path), key=key)


def validate_calibration(data, source: str = "<memory>") -> dict:
    """Validate a calibration mapping; raise ``calibration_invalid`` naming the source and the key."""
    if not isinstance(data, dict):
        raise _bad(source, "<root>", "the top level must be a JSON object")
    if data.get("schema") != SCHEMA:
        raise _bad(source, "schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    ver = data.get("schema_version")
    if not isinstance(ver, str) or ver.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise _bad(source, "schema_version", f"unsupported version {ver!r} (this D-Scope reads {SCHEMA_VERSION.split('.')[0]}.x)")
    for key in ("um_per_px",):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise _bad(source, key, f"must be a positive number, got {v!r}")
    v = data.get("uncertainty_um_per_px")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise _bad(source, "uncertainty_um_per_px", f"must be a number >= 0, got {v!r}")
    v = data.get("n_dots")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _bad(source, "n_dots", f"must be an integer >= 0, got {v!r}")
    m = data.get("method")
    if m not in METHODS:
        raise _bad(source, "method", f"must be one of {list(METHODS)}, got {m!r}")
    need = "dot_spacing_um" if m == "dot_grid" else "cladding_um"
    v = data.get(need)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(source, need, f"must be a positive number for method {m!r}, got {v!r}")
    ts = data.get("timestamp")
    try:
        datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        raise _bad(source, "timestamp", f"not an ISO 8601 time: {ts!r}") from None
    return data


def load_calibration(path) -> dict:
    """Load and validate ``calibration.json``.

    Raises
    ------
    CalibrationError
        ``calibration_invalid`` naming the file and the offending key (missing file,
        unreadable JSON, wrong schema, non-positive scale, ...).
    """
    p = Path(path)
    data = read_json_file(p, CalibrationError, "calibration_invalid", what="calibration file")
    return validate_calibration(data, str(p))
