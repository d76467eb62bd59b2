"""Durable verdicts: an embedded SQLite database (WAL, ``synchronous=FULL``).

The daemon writes each verdict here *before* publishing it, then marks the row
``published`` and, once the image file has been moved to ``done/``/``failed/``
(or the camera frame saved), ``finalized``.  After a crash a restart therefore

* publishes rows that were stored but never published (nothing lost), and
* finishes moving a hot-folder file whose verdict is already stored instead of
  inspecting it again (nothing repeated): :meth:`ResultStore.unfinalized_for`.

One :class:`ResultStore` (one connection) belongs to the daemon's main thread;
readers (``dscope history``) open their own connection with :func:`read_history`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from dscope.errors import DScopeError
from dscope.ipc.envelope import dumps

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    verdict_id      TEXT NOT NULL UNIQUE,
    time            REAL NOT NULL,
    created         TEXT,
    daemon_id       TEXT,
    source_kind     TEXT NOT NULL,
    source_path     TEXT,
    camera_serial   TEXT,
    frame_id        INTEGER,
    image_path      TEXT,
    image_sha256    TEXT,
    fiber_type      TEXT,
    rule_set        TEXT,
    profile         TEXT,
    status          TEXT NOT NULL,
    error_code      TEXT,
    defect_count    INTEGER,
    counts_json     TEXT,
    violations_json TEXT,
    source_json     TEXT NOT NULL,
    result_json     TEXT NOT NULL,
    published       INTEGER NOT NULL DEFAULT 0,
    finalized       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS verdicts_time ON verdicts(time);
CREATE INDEX IF NOT EXISTS verdicts_status ON verdicts(status);
CREATE INDEX IF NOT EXISTS verdicts_sha ON verdicts(image_sha256, source_path);
"""

#: columns returned by queries (result_json on request)
SUMMARY_COLUMNS = (
    "id", "verdict_id", "time", "created", "daemon_id", "source_kind", "source_path", "camera_serial", "frame_id",
    "image_path", "image_sha256", "fiber_type", "rule_set", "profile", "status", "error_code", "defect_count",
    "counts_json", "violations_json", "published", "finalized",
)  # fmt: skip


def _connect(path: Path, busy_timeout_s: float, readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout_s)
        else:
            conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise DScopeError("file_not_found" if readonly else "internal_error", f"{path}: cannot open database: {exc}") from None
    conn.row_factory = sqlite3.Row
    return conn


class ResultStore:
    """Writer of the verdict database.

    Parameters
    ----------
    path : path-like
        Database file (created with its folder when missing).
    busy_timeout_s : float
        How long to wait for a reader's lock.
    """

    def __init__(self, path, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = _connect(self.path, busy_timeout_s)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise DScopeError("config_invalid", f"{self.path}: database schema {version}, expected {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._conn.close()
            raise DScopeError("internal_error", f"{self.path}: cannot initialise database: {exc}") from None

    @property
    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def insert(self, verdict_id: str, doc: dict, source: dict, daemon_id: str, sha256: str | None = None) -> int:
        """Store one verdict durably (committed, fsynced) and return its row id.

        ``sha256`` (the daemon's hash of the file it queued) wins over the document's.
        """
        err = doc.get("error") or {}
        counts = doc.get("counts") or {}
        image = doc.get("image") or {}
        row = {
            "verdict_id": verdict_id,
            "time": time.time(),
            "created": doc.get("created"),
            "daemon_id": daemon_id,
            "source_kind": source.get("kind"),
            "source_path": source.get("path"),
            "camera_serial": source.get("serial"),
            "frame_id": source.get("frame_id"),
            "image_path": image.get("path"),
            "image_sha256": sha256 or image.get("sha256"),
            "fiber_type": doc.get("fiber_type"),
            "rule_set": doc.get("rule_set"),
            "profile": doc.get("profile"),
            "status": doc.get("status") or "ERROR",
            "error_code": err.get("code"),
            "defect_count": counts.get("total"),
            "counts_json": dumps(counts),
            "violations_json": dumps(doc.get("violations") or []),
            "source_json": dumps(source),
            "result_json": dumps(doc),
        }
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        try:
            cur = self._conn.execute(f"INSERT INTO verdicts ({cols}) VALUES ({marks})", row)
        except sqlite3.Error as exc:
            raise DScopeError("internal_error", f"{self.path}: cannot store verdict: {exc}") from None
        return int(cur.lastrowid)

    def _execute(self, sql: str, params=()):
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise DScopeError("internal_error", f"{self.path}: database error: {exc}") from None

    def mark_published(self, verdict_id: str) -> None:
        self._execute("UPDATE verdicts SET published = 1 WHERE verdict_id = ?", (verdict_id,))

    def mark_finalized(self, verdict_id: str, image_path: str | None) -> None:
        self._execute(
            "UPDATE verdicts SET finalized = 1, image_path = COALESCE(?, image_path) WHERE verdict_id = ?",
            (image_path, verdict_id),
        )

    def unfinalized_for(self, sha256: str, source_path: str) -> dict | None:
        """The stored, not yet finalized verdict of this file content at this hot-folder path (crash recovery)."""
        row = self._execute(
            "SELECT verdict_id, result_json, source_json, published FROM verdicts "
            "WHERE image_sha256 = ? AND source_path = ? AND finalized = 0 AND source_kind = 'hot_folder' "
            "ORDER BY id DESC LIMIT 1",
            (sha256, source_path),
        ).fetchone()
        if row is None:
            return None
        return {
            "verdict_id": row["verdict_id"],
            "result": json.loads(row["result_json"]),
            "source": json.loads(row["source_json"]),
            "published": bool(row["published"]),
        }

    def unpublished(self) -> list[dict]:
        """Verdicts stored but never published (the daemon died in between), oldest first."""
        rows = self._conn.execute(
            "SELECT verdict_id, result_json, source_json FROM verdicts WHERE published = 0 ORDER BY id"
        ).fetchall()
        return [
            {"verdict_id": r["verdict_id"], "result": json.loads(r["result_json"]), "source": json.loads(r["source_json"])}
            for r in rows
        ]

    def count(self, status: str | None = None) -> int:
        if status:
            return self._conn.execute("SELECT COUNT(*) FROM verdicts WHERE status = ?", (status,)).fetchone()[0]
        return self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def last(self) -> dict | None:
        row = self._conn.execute("SELECT result_json, source_json, verdict_id FROM verdicts ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return {"verdict_id": row["verdict_id"], "result": json.loads(row["result_json"]), "source": json.loads(row["source_json"])}

    def close(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass
        self._conn.close()


def read_history(
    path,
    *,
    since: float | None = None,
    status: str | None = None,
    limit: int | None = None,
    with_result: bool = False,
    busy_timeout_s: float = 10.0,
):
    """Verdict rows as a pandas DataFrame (newest last), filtered by time (epoch s) and status.

    Raises ``DScopeError('file_not_found')`` when the database does not exist.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DScopeError("file_not_found", f"{p}: no results database (has the daemon run with this state dir?)")
    cols = list(SUMMARY_COLUMNS) + (["source_json", "result_json"] if with_result else [])
    where, params = [], []
    if since is not None:
        where.append("time >= ?")
        params.append(float(since))
    if status:
        where.append("status = ?")
        params.append(status)
    sql = f"SELECT {', '.join(cols)} FROM verdicts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit:
        sql = f"SELECT * FROM ({sql.replace(' ORDER BY id', ' ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
    conn = _connect(p, busy_timeout_s, readonly=True)
    try:
        df = pd.read_sql_query(sql, conn, params=params)
    finally:
        conn.close()
    df["time_iso"] = pd.to_datetime(df["time"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return df
