"""SQLite verdict store: WAL, durability flags, crash-recovery queries, history export."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from dscope.daemon.store import ResultStore, read_history
from dscope.errors import DScopeError


def _doc(status: str, sha: str, n_defects: int = 0, path: str = "/hot/a.png") -> dict:
    return {
        "schema": "dscope.result",
        "image": {"path": path, "sha256": sha, "width": 64, "height": 64},
        "status": status,
        "error": {"code": "timeout", "message": "slow"} if status == "ERROR" else None,
        "fiber_type": "sm-pc",
        "rule_set": "iec61300-3-35-ed2-sm-pc",
        "profile": "fast_scan",
        "counts": {"total": n_defects, "by_zone": {"core": n_defects}},
        "violations": [{"zone": "core", "rule": "max_count", "message": "too many"}] if status == "FAIL" else [],
        "created": "2026-01-01T00:00:00Z",
        "score": np.float32(0.25),
    }


def test_insert_fields_wal_and_recovery_queries(tmp_path):
    store = ResultStore(tmp_path / "sub" / "r.sqlite3")
    assert store.journal_mode == "wal"
    rng = np.random.default_rng(7)
    statuses = rng.choice(["PASS", "FAIL", "ERROR"], size=12).tolist()
    for i, st in enumerate(statuses):
        src = {"kind": "hot_folder", "path": f"/hot/{i}.png"}
        store.insert(f"v{i}", _doc(st, f"sha{i}", i, f"/hot/{i}.png"), src, "bench")
    assert store.count() == 12
    for st in ("PASS", "FAIL", "ERROR"):
        assert store.count(st) == statuses.count(st)
    # nothing is published or finalized yet: all 12 come back for recovery
    assert [r["verdict_id"] for r in store.unpublished()] == [f"v{i}" for i in range(12)]
    store.mark_published("v0")
    assert "v0" not in [r["verdict_id"] for r in store.unpublished()]
    rec = store.unfinalized_for("sha3", "/hot/3.png")
    assert rec is not None and rec["verdict_id"] == "v3" and rec["result"]["status"] == statuses[3]
    assert rec["source"] == {"kind": "hot_folder", "path": "/hot/3.png"} and rec["published"] is False
    store.mark_finalized("v3", "/hot/done/3.png")
    assert store.unfinalized_for("sha3", "/hot/3.png") is None
    assert store.unfinalized_for("sha3", "/hot/other.png") is None  # same content elsewhere is a new drop
    store.close()

    # a second connection (as after a restart) sees everything; columns carry the document's fields
    conn = sqlite3.connect(tmp_path / "sub" / "r.sqlite3")
    row = conn.execute(
        "SELECT status, defect_count, fiber_type, rule_set, error_code, image_path, finalized, result_json "
        "FROM verdicts WHERE verdict_id='v3'"
    ).fetchone()
    conn.close()
    assert row[0] == statuses[3] and row[1] == 3 and row[2] == "sm-pc" and row[3].startswith("iec")
    assert row[4] == ("timeout" if statuses[3] == "ERROR" else None)
    assert row[5] == "/hot/done/3.png" and row[6] == 1
    assert json.loads(row[7])["score"] == 0.25


def test_duplicate_verdict_id_is_refused(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    store.insert("same", _doc("PASS", "a"), {"kind": "request", "path": "/x"}, "d")
    with pytest.raises(DScopeError) as ei:
        store.insert("same", _doc("PASS", "a"), {"kind": "request", "path": "/x"}, "d")
    assert ei.value.code == "internal_error" and store.count() == 1
    store.close()


def test_read_history_filters_and_csv(tmp_path):
    db = tmp_path / "r.sqlite3"
    store = ResultStore(db)
    for i, st in enumerate(["PASS", "FAIL", "FAIL", "ERROR"]):
        store.insert(f"v{i}", _doc(st, f"s{i}", i), {"kind": "camera", "serial": "X1", "frame_id": i}, "d")
    store.close()
    df = read_history(db)
    assert list(df["verdict_id"]) == ["v0", "v1", "v2", "v3"]
    assert list(df["frame_id"]) == [0, 1, 2, 3] and set(df["camera_serial"]) == {"X1"}
    fails = read_history(db, status="FAIL")
    assert list(fails["verdict_id"]) == ["v1", "v2"]
    assert len(read_history(db, since=df["time"].max() + 10)) == 0
    assert list(read_history(db, limit=2)["verdict_id"]) == ["v2", "v3"]
    with pytest.raises(DScopeError) as ei:
        read_history(tmp_path / "missing.sqlite3")
    assert ei.value.code == "file_not_found"


def test_history_cli_csv(tmp_path, capsys):
    from dscope.cli import main

    store = ResultStore(tmp_path / "results.sqlite3")
    for i, st in enumerate(["PASS", "FAIL", "PASS"]):
        store.insert(f"v{i}", _doc(st, f"s{i}", i), {"kind": "hot_folder", "path": f"/h/{i}.png"}, "d")
    store.close()
    out = tmp_path / "x.csv"
    assert main(["history", "--state-dir", str(tmp_path), "--status", "PASS", "--csv", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df["verdict_id"]) == ["v0", "v2"] and set(df["status"]) == {"PASS"}
    assert main(["history", "--state-dir", str(tmp_path), "--since", "1h"]) == 0
    assert "FAIL" in capsys.readouterr().out
    assert main(["history", "--state-dir", str(tmp_path), "--since", "yesterday-ish"]) == 2
