"""The lineage store's tables and engines: artifacts, executions and events (after ML Metadata).

Called by :mod:`pipelines.lineage.record` (which writes) and :mod:`pipelines.lineage.query` and
:mod:`pipelines.lineage.audit` (which only read); the value helpers (:func:`json_safe`,
:func:`summarise`, :func:`normalise_kind`) also by :mod:`pipelines.lineage.openlineage`, so the
events carry what the store holds.

The store is a SQLite file ``<home>/lineage.db`` by default, or any database SQLAlchemy reaches
through ``PIPELINES_LINEAGE_URL`` (``postgresql+psycopg2://user@host/db`` in production). Once the
SQLite file exists with its tables, the recorder writes it with the stdlib instead
(:mod:`pipelines.lineage.sqlite_writer`: the same rows, without importing SQLAlchemy). Readers
open SQLite with ``mode=ro`` and PostgreSQL in read-only transactions, so a lineage query can never
change the record; on PostgreSQL they connect with ``PIPELINES_LINEAGE_READ_URL`` when it is set (the
auditor's own role, which holds SELECT only: :mod:`pipelines.lineage.roles`).

Every execution is also sealed in a hash chain (tables ``chain_records`` and ``chain_heads``, written
by :mod:`pipelines.lineage.chain` in the transaction that writes the execution), so a row edited
afterwards is detected by ``pipelines lineage verify``. Stores made by an older version get the new
tables on the first write, and their history is sealed as found then.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipelines.lineage.common import (  # noqa: F401 - re-exported: the store's value helpers
    COMPLETED,
    FAILED,
    NOT_PROMOTED,
    READ_URL_ENV,
    REJECTED,
    RUNNING,
    SUMMARY_KEYS,
    SUMMARY_MAX_BYTES,
    URL_ENV,
    LineageError,
    database_url,
    iso,
    json_safe,
    normalise_kind,
    read_url,
    summarise,
)


class Base(DeclarativeBase):
    pass


class Artifact(Base):
    """One immutable piece of data or model, identified by (uri, sha256)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("uri", "sha256", name="uq_artifacts_uri_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "uri": self.uri, "sha256": self.sha256,
                "size": self.size, "properties": self.properties or {},
                "created": iso(self.created)}


class Execution(Base):
    """One run of one step: who ran it, with which code, config and parameters, and how it ended."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(512), index=True)
    dag_id: Mapped[str | None] = mapped_column(String(256))
    dag_run_id: Mapped[str | None] = mapped_column(String(512))
    try_number: Mapped[int | None] = mapped_column(Integer)
    triggered_by: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    config_sha256: Mapped[str | None] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    started: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    openlineage_run_id: Mapped[str | None] = mapped_column(String(36))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pipeline": self.pipeline, "step": self.step,
                "run_id": self.run_id, "dag_id": self.dag_id, "dag_run_id": self.dag_run_id,
                "try_number": self.try_number, "triggered_by": self.triggered_by,
                "code_version": self.code_version, "config_sha256": self.config_sha256,
                "parameters": self.parameters or {}, "status": self.status,
                "started": iso(self.started), "ended": iso(self.ended), "error": self.error,
                "summary": self.summary or {}, "openlineage_run_id": self.openlineage_run_id}


class Event(Base):
    """An edge of the graph: an execution read (input) or wrote (output) an artifact."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("execution_id", "artifact_id", "type",
                                       name="uq_events_execution_artifact_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("executions.id"), index=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    type: Mapped[str] = mapped_column(String(8))  # input | output


class ChainRecord(Base):
    """One entry of a pipeline's hash chain: the sha256 of an execution's canonical content (see
    :mod:`pipelines.lineage.chain`) linked to the entry before it, like a transparency log.

    ``phase`` is ``start`` (the execution as it began), ``end`` (as it ended, with its events and
    their artifacts) or ``adopted`` (an execution recorded before the store had a chain, sealed
    as found when a newer version first wrote to the store).
    """

    __tablename__ = "chain_records"
    __table_args__ = (UniqueConstraint("pipeline", "seq", name="uq_chain_records_pipeline_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    execution_id: Mapped[int] = mapped_column(Integer, index=True)
    phase: Mapped[str] = mapped_column(String(8))
    content_sha256: Mapped[str] = mapped_column(String(64))
    prev_sha256: Mapped[str] = mapped_column(String(64))
    record_sha256: Mapped[str] = mapped_column(String(64), index=True)
    recorded: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "pipeline": self.pipeline, "execution": self.execution_id,
                "phase": self.phase, "content_sha256": self.content_sha256,
                "prev_sha256": self.prev_sha256, "record_sha256": self.record_sha256,
                "recorded": iso(self.recorded)}


class ChainHead(Base):
    """The newest entry of a pipeline's chain. Writers update this row first in their transaction,
    which takes the write lock (SQLite) or the row lock (PostgreSQL): two writers never fork."""

    __tablename__ = "chain_heads"

    pipeline: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    head_sha256: Mapped[str] = mapped_column(String(64))


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


_engines: dict[tuple[str, bool], Engine] = {}
_lock = threading.Lock()


def get_engine(home: Path, *, readonly: bool = False) -> Engine:
    """An engine on the store (cached per URL). Writers create the tables on first use.

    Raises:
        LineageError: a reader asked for a SQLite store that does not exist yet.
    """
    url = read_url(home) if readonly else database_url(home)
    key = (url, readonly)
    with _lock:
        if key not in _engines:
            _engines[key] = _readonly_engine(url) if readonly else _writer_engine(url)
        return _engines[key]


def dispose_engines() -> None:
    """Closes every cached engine (tests switch stores; long-lived processes never need it)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _writer_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        Base.metadata.create_all(engine)
    except DBAPIError:  # another process created the tables at the same moment
        Base.metadata.create_all(engine)
    return engine


def _readonly_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True,
                             execution_options={"postgresql_readonly": True})
    path = Path(parsed.database or "")
    if not path.is_file():
        raise LineageError(
            f"no lineage store at {path}: no step has run with this home yet. Run a step "
            f"(e.g. `pipelines run ...`) or point --home / {URL_ENV} at the store to read")
    target = f"file:{path.resolve()}?mode=ro"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(target, uri=True))
