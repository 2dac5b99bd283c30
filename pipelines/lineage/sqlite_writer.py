"""The lineage writer on the local SQLite store with the stdlib's ``sqlite3``: the same rows, the
same hash chain, the same transactions as the SQLAlchemy writer of :mod:`pipelines.lineage.record`,
without importing SQLAlchemy (about 0.3 s of CPU, more than a reused step takes).

Taken only when the store is the default SQLite file ``<home>/lineage.db`` (no
``PIPELINES_LINEAGE_URL``), that file already holds every table, and no pipeline's history awaits
sealing (:func:`pipelines.lineage.chain.seal_history`); a first write, an older store or another
database goes through SQLAlchemy, which creates and seals. Values are stored as SQLAlchemy stores
them on SQLite (JSON as ``json.dumps`` text, datetimes as naive UTC ``YYYY-MM-DD HH:MM:SS.ffffff``)
and the chain seals what a re-read of the row gives, as :func:`pipelines.lineage.chain.append`
does, so ``pipelines lineage verify`` and every reader see no difference
(tests/lineage/test_store.py writes the same chain both ways and compares the tables).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from pipelines import store as artifact_store
from pipelines.lineage.common import (
    END_FIELDS,
    GENESIS,
    START,
    START_FIELDS,
    URL_ENV,
    _canonical,
    _sha,
    _time,
    json_safe,
    normalise_kind,
    record_sha256,
)

TABLES = frozenset({"artifacts", "executions", "events", "chain_records", "chain_heads"})
_JSON = ("code_version", "parameters", "summary")
_TIMES = ("started", "ended")


def stamp(value: dt.datetime) -> str:
    """A datetime as SQLAlchemy's SQLite ``DateTime`` stores it (naive, to the microsecond)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def connect(home: Path) -> sqlite3.Connection | None:
    """A connection on the store when this writer may take it (see the module docstring), else
    ``None``: the caller then writes through SQLAlchemy."""
    if os.environ.get(URL_ENV):
        return None
    path = artifact_store.lineage_db(home)
    if not path.is_file():
        return None
    # one ExecutionRecord uses it at a time; any thread may close it (as a pooled engine allows)
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        pending = TABLES <= tables and conn.execute(
            "SELECT 1 FROM executions AS x WHERE NOT EXISTS (SELECT 1 FROM chain_heads AS h "
            "WHERE h.pipeline = x.pipeline) AND NOT EXISTS (SELECT 1 FROM chain_records AS r "
            "WHERE r.pipeline = x.pipeline) LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        conn.close()
        return None
    if not TABLES <= tables or pending:
        conn.close()
        return None
    return conn


class Transaction:
    """``with Transaction(conn):`` one write transaction (``BEGIN IMMEDIATE``), rolled back on error."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def execution_row(conn: sqlite3.Connection, execution_id: int) -> dict[str, Any] | None:
    """The execution as SQLAlchemy reads it back: JSON decoded, datetimes naive."""
    cur = conn.execute("SELECT * FROM executions WHERE id = ?", (execution_id,))
    row = cur.fetchone()
    if row is None:
        return None
    x = dict(zip([c[0] for c in cur.description], row, strict=True))
    for key in _JSON:
        x[key] = None if x[key] is None else json.loads(x[key])
    for key in _TIMES:
        x[key] = None if x[key] is None else dt.datetime.fromisoformat(x[key])
    return x


def content(conn: sqlite3.Connection, x: dict[str, Any], phase: str) -> dict[str, Any]:
    """:func:`pipelines.lineage.chain.content` of a row read by :func:`execution_row`."""
    body: dict[str, Any] = {"execution": x["id"], "started": _time(x["started"])}
    body.update({k: x[k] for k in START_FIELDS})
    if phase == START:
        return body
    body.update({k: x[k] for k in END_FIELDS})
    body["ended"] = _time(x["ended"])
    rows = conn.execute(
        "SELECT events.type, artifacts.kind, artifacts.uri, artifacts.sha256 FROM events "
        "JOIN artifacts ON artifacts.id = events.artifact_id WHERE events.execution_id = ?",
        (x["id"],)).fetchall()
    body["events"] = sorted(([t, k, u, s] for t, k, u, s in rows), key=_canonical)
    return body


def lock(conn: sqlite3.Connection, pipeline: str) -> tuple[int, str]:
    """The pipeline's chain head (seq, sha256), created on the first record; in a
    :class:`Transaction`, which already holds SQLite's write lock."""
    conn.execute("UPDATE chain_heads SET seq=chain_heads.seq WHERE chain_heads.pipeline = ?",
                 (pipeline,))
    row = conn.execute("SELECT seq, head_sha256 FROM chain_heads WHERE pipeline = ?",
                       (pipeline,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO chain_heads (pipeline, seq, head_sha256) VALUES (?, ?, ?)",
                     (pipeline, 0, GENESIS))
        return 0, GENESIS
    return int(row[0]), str(row[1])


def append(conn: sqlite3.Connection, execution_id: int, phase: str) -> dict[str, Any]:
    """Seals the execution as it now is at the head of its pipeline's chain; returns the row."""
    x = execution_row(conn, execution_id)
    assert x is not None
    seq, prev = lock(conn, x["pipeline"])
    digest = _sha(content(conn, x, phase))
    seq += 1
    record = record_sha256(x["pipeline"], seq, x["id"], phase, digest, prev)
    conn.execute(
        "INSERT INTO chain_records (pipeline, seq, execution_id, phase, content_sha256, "
        "prev_sha256, record_sha256, recorded) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (x["pipeline"], seq, x["id"], phase, digest, prev, record, stamp(dt.datetime.now(dt.UTC))))
    conn.execute("UPDATE chain_heads SET seq=?, head_sha256=? WHERE chain_heads.pipeline = ?",
                 (seq, record, x["pipeline"]))
    return x


def insert_execution(conn: sqlite3.Connection, fields: dict[str, Any]) -> int:
    """Inserts the running execution (the fields of ``Execution``), returns its id."""
    values = {k: (_dumps(v) if k in _JSON else stamp(v) if k in _TIMES and v is not None else v)
              for k, v in fields.items()}
    cur = conn.execute(
        f"INSERT INTO executions ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
        tuple(values.values()))
    assert cur.lastrowid is not None
    return cur.lastrowid


def close_execution(conn: sqlite3.Connection, execution_id: int, status: str, ended: dt.datetime,
                    error: str | None, summary: dict[str, Any]) -> None:
    conn.execute("UPDATE executions SET status=?, ended=?, error=?, summary=? WHERE "
                 "executions.id = ?", (status, stamp(ended), error, _dumps(summary), execution_id))


def upsert_artifact(conn: sqlite3.Connection, record: dict[str, Any], role: str) -> int:
    """:func:`pipelines.lineage.record.upsert_artifact` on this connection."""
    uri, sha = str(record["uri"]), record.get("sha256")
    columns = "SELECT id, properties, size FROM artifacts WHERE artifacts.uri = ?"
    if sha is None and role == "input":
        found = conn.execute(columns + " ORDER BY artifacts.id DESC LIMIT 1", (uri,)).fetchone()
    elif sha:
        found = conn.execute(columns + " AND artifacts.sha256 = ?", (uri, sha)).fetchone()
    else:
        found = conn.execute(columns + " AND artifacts.sha256 IS NULL", (uri,)).fetchone()
    props = json_safe(record.get("properties") or {})
    if found is not None:
        artifact_id, stored, size = found
        existing = (json.loads(stored) if stored is not None else None) or {}
        merged = {**props, **existing}
        if merged != existing:
            conn.execute("UPDATE artifacts SET properties=? WHERE artifacts.id = ?",
                         (json.dumps(merged), artifact_id))
        if size is None and record.get("size") is not None:
            conn.execute("UPDATE artifacts SET size=? WHERE artifacts.id = ?",
                         (record["size"], artifact_id))
        return int(artifact_id)
    cur = conn.execute(
        "INSERT INTO artifacts (kind, uri, sha256, size, properties, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (normalise_kind(record.get("kind")), uri, sha, record.get("size"), json.dumps(props),
         stamp(dt.datetime.now(dt.UTC))))
    assert cur.lastrowid is not None
    return cur.lastrowid


def to_dict(x: dict[str, Any]) -> dict[str, Any]:
    """``Execution.to_dict`` of a row read by :func:`execution_row`."""
    from pipelines.lineage.common import iso

    return {"id": x["id"], "pipeline": x["pipeline"], "step": x["step"],
            "run_id": x["run_id"], "dag_id": x["dag_id"], "dag_run_id": x["dag_run_id"],
            "try_number": x["try_number"], "triggered_by": x["triggered_by"],
            "code_version": x["code_version"], "config_sha256": x["config_sha256"],
            "parameters": x["parameters"] or {}, "status": x["status"],
            "started": iso(x["started"]), "ended": iso(x["ended"]), "error": x["error"],
            "summary": x["summary"] or {}, "openlineage_run_id": x["openlineage_run_id"]}
