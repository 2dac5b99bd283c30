"""Records every step's execution, inputs and outputs in the lineage store, and emits OpenLineage.

Called by :func:`pipelines.runner.run_step` only::

    with lineage.execution(cfg, home, step, ctx, params=kwargs) as execution:
        result = fn(cfg, home, ctx, **kwargs)
        execution.complete(result)

The execution row is committed as ``running`` before the step starts. Its artifacts, events and
final status are committed together in one transaction when the step ends, so a step killed
half-way leaves an execution marked ``running`` (or ``failed``), never half a graph. A step that
raises is recorded as ``failed``, ``rejected`` (:class:`~pipelines.DataRejected`) or
``not_promoted`` (:class:`~pipelines.NotPromoted`) with the error and whatever artifacts
``exc.result`` lists, and the exception goes on. Artifacts are deduplicated by (uri, sha256): a
step's input is the very row a previous step wrote as its output, which is what links the chain.

Both transactions also seal the execution in the pipeline's hash chain
(:func:`pipelines.lineage.chain.append`): ``start`` with the running row, ``end`` with the closed
row and its events, so no row can be edited afterwards without ``verify`` naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import PipelineConfig
from pipelines.context import RunContext, code_version
from pipelines.errors import DataRejected, NotPromoted
from pipelines.lineage import openlineage, sqlite_writer
from pipelines.lineage.common import (
    COMPLETED,
    END,
    FAILED,
    NOT_PROMOTED,
    REJECTED,
    RUNNING,
    START,
    URL_ENV,
    LineageError,
    database_url,
    json_safe,
    normalise_kind,
    summarise,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def failure_status(exc: BaseException) -> str:
    if isinstance(exc, DataRejected):
        return REJECTED
    if isinstance(exc, NotPromoted):
        return NOT_PROMOTED
    return FAILED


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _integrity_error(exc: BaseException) -> bool:
    """A unique constraint lost to a concurrent writer (either driver): the caller retries."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.IntegrityError)


def _cannot_record(step: str, home: Path, exc: Exception) -> LineageError:
    from pipelines.lineage.store import describe

    return LineageError(
        f"cannot record the {step} step in the lineage store "
        f"{describe(database_url(home))}: {exc}. "
        f"Check that {URL_ENV} (or the home folder) points at a reachable, writable "
        f"database; the step did not run")


class ExecutionRecord:
    """The open execution of one step; :meth:`complete` or :meth:`fail` closes it."""

    def __init__(self, cfg: PipelineConfig, home: Path, step: str, ctx: RunContext,
                 params: dict[str, Any] | None = None):
        self.cfg, self.home, self.step, self.ctx = cfg, Path(home), step, ctx
        self.params = json_safe(params or {})
        self.engine: Engine | None = None  # the SQLAlchemy path
        self.conn: sqlite3.Connection | None = None  # the sqlite_writer path, while open
        self.id: int | None = None
        self.closed = False
        self.openlineage: openlineage.Emitter | None = None

    def start(self) -> None:
        """Commits the execution as ``running`` and emits the OpenLineage START event."""
        fields = dict(
            pipeline=self.cfg.name, step=self.step, run_id=self.ctx.run_id,
            dag_id=self.ctx.dag_id, dag_run_id=self.ctx.dag_run_id,
            try_number=self.ctx.try_number, triggered_by=self.ctx.triggered_by,
            code_version=json_safe(code_version()), config_sha256=self.cfg.sha256,
            parameters=self.params, status=RUNNING, started=_now(),
            openlineage_run_id=openlineage.new_run_id(),
        )
        self.conn = sqlite_writer.connect(self.home)
        if self.conn is not None:  # the local store, already made: no SQLAlchemy
            try:
                for attempt in range(3):
                    try:
                        with sqlite_writer.Transaction(self.conn) as conn:
                            sqlite_writer.lock(conn, self.cfg.name)
                            self.id = sqlite_writer.insert_execution(conn, fields)
                            row = sqlite_writer.append(conn, self.id, START)
                            self.record = sqlite_writer.to_dict(row)
                        break
                    except sqlite3.IntegrityError:  # another writer created the head row first
                        if attempt == 2:
                            raise
            except sqlite3.Error as exc:
                self.conn.close()
                self.conn = None
                raise _cannot_record(self.step, self.home, exc) from exc
        else:
            self._start_sqlalchemy(fields)
        self.openlineage = openlineage.Emitter(self.cfg, self.home, self.ctx, self.record)
        self.openlineage.start()

    def _start_sqlalchemy(self, fields: dict[str, Any]) -> None:
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError
        from sqlalchemy.orm import Session

        from pipelines.lineage import chain
        from pipelines.lineage.store import Execution, get_engine

        try:
            self.engine = get_engine(self.home)
            chain.seal_once(self.engine)  # a store written before chains: sealed as found
            for attempt in range(3):
                try:
                    with Session(self.engine) as session, session.begin():
                        chain.lock(session, self.cfg.name)
                        row = Execution(**fields)
                        session.add(row)
                        session.flush()
                        chain.append(session, row, chain.START)
                        self.id = row.id
                        self.record = row.to_dict()
                    break
                except IntegrityError:  # another writer created the chain's head row first
                    if attempt == 2:
                        raise
        except SQLAlchemyError as exc:
            raise _cannot_record(self.step, self.home, exc) from exc

    def complete(self, result: dict[str, Any]) -> None:
        """Records the result's inputs and outputs and marks the execution completed."""
        self._close(COMPLETED, result, error=None)
        assert self.openlineage is not None, "start() first"
        self.openlineage.complete(result)

    def fail(self, exc: BaseException) -> None:
        """Records a failed, rejected or not-promoted execution with what ``exc.result`` holds."""
        if self.closed:
            return
        result = getattr(exc, "result", None) or {}
        message = str(exc) if isinstance(exc, DataRejected | NotPromoted) else (
            f"{type(exc).__name__}: {exc}")
        try:
            self._close(failure_status(exc), result, error=message or type(exc).__name__)
        except Exception:  # noqa: BLE001 - never hide the step's own error behind ours
            log.exception("could not record the failure of execution %s in the lineage store",
                          self.id)
        if self.openlineage is not None:
            self.openlineage.fail(result, message)

    def _close(self, status: str, result: dict[str, Any], error: str | None) -> None:
        try:
            for attempt in range(3):
                try:
                    self._write_graph(status, result, error)
                    break
                except Exception as exc:
                    if attempt == 2 or not _integrity_error(exc):
                        raise  # else a concurrent step inserted the same artifact first
        finally:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        self.closed = True

    def _write_graph(self, status: str, result: dict[str, Any], error: str | None) -> None:
        if self.conn is not None:
            self._write_graph_sqlite(self.conn, status, result, error)
            return
        from sqlalchemy.orm import Session

        from pipelines.lineage import chain
        from pipelines.lineage.store import Event, Execution

        with Session(self.engine) as session, session.begin():
            chain.lock(session, self.cfg.name)
            row = session.get(Execution, self.id)
            if row is None:
                raise LineageError(f"execution #{self.id} vanished from the lineage store while "
                                   f"the {self.step} step ran")
            seen: set[tuple[int, str]] = set()
            for kind in ("input", "output"):
                for record in result.get(f"{kind}s") or []:
                    artifact_id = upsert_artifact(session, record, kind)
                    if (artifact_id, kind) not in seen:
                        seen.add((artifact_id, kind))
                        session.add(Event(execution_id=row.id, artifact_id=artifact_id, type=kind))
                session.flush()
            row.status, row.ended, row.error = status, _now(), error
            row.summary = summarise(result)
            chain.append(session, row, chain.END)

    def _write_graph_sqlite(self, conn: sqlite3.Connection, status: str, result: dict[str, Any],
                            error: str | None) -> None:
        """:meth:`_write_graph` through :mod:`pipelines.lineage.sqlite_writer`."""
        assert self.id is not None
        with sqlite_writer.Transaction(conn):
            sqlite_writer.lock(conn, self.cfg.name)
            if sqlite_writer.execution_row(conn, self.id) is None:
                raise LineageError(f"execution #{self.id} vanished from the lineage store while "
                                   f"the {self.step} step ran")
            seen: set[tuple[int, str]] = set()
            for kind in ("input", "output"):
                for record in result.get(f"{kind}s") or []:
                    artifact_id = sqlite_writer.upsert_artifact(conn, record, kind)
                    if (artifact_id, kind) not in seen:
                        seen.add((artifact_id, kind))
                        conn.execute("INSERT INTO events (execution_id, artifact_id, type) "
                                     "VALUES (?, ?, ?)", (self.id, artifact_id, kind))
            sqlite_writer.close_execution(conn, self.id, status, _now(), error,
                                          summarise(result))
            sqlite_writer.append(conn, self.id, END)


def upsert_artifact(session: Session, record: dict[str, Any], role: str) -> int:
    """The id of the artifact (uri, sha256), inserting it if it is new.

    An input recorded without a sha256 is resolved to the newest known artifact at that URI (the
    output of the step that wrote it), so the chain stays connected.
    """
    from sqlalchemy import select

    from pipelines.lineage.store import Artifact

    uri, sha = str(record["uri"]), record.get("sha256")
    query = select(Artifact).where(Artifact.uri == uri)
    if sha is None and role == "input":
        found = session.scalars(query.order_by(Artifact.id.desc()).limit(1)).first()
    else:
        query = query.where(Artifact.sha256 == sha if sha else Artifact.sha256.is_(None))
        found = session.scalars(query).first()
    props = json_safe(record.get("properties") or {})
    if found is not None:
        merged = {**props, **(found.properties or {})}
        if merged != (found.properties or {}):
            found.properties = merged
        if found.size is None and record.get("size") is not None:
            found.size = record["size"]
        return found.id
    row = Artifact(kind=normalise_kind(record.get("kind")), uri=uri, sha256=sha,
                   size=record.get("size"), properties=props, created=_now())
    session.add(row)
    session.flush()
    return row.id


@contextlib.contextmanager
def execution(cfg: PipelineConfig, home: Path, step: str, ctx: RunContext,
              params: dict[str, Any] | None = None) -> Iterator[ExecutionRecord]:
    """Records one step's execution around the ``with`` body (see the module docstring)."""
    record = ExecutionRecord(cfg, home, step, ctx, params)
    record.start()
    try:
        yield record
    except BaseException as exc:
        record.fail(exc)
        raise
    if not record.closed:
        record.complete({})
