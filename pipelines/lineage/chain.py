"""The lineage store as a hash chain: every execution is sealed, so a row edited later is found.

Called by :mod:`pipelines.lineage.record` (:func:`append`, inside the transaction that writes the
execution), by :func:`pipelines.lineage.store.get_engine` (:func:`seal_history`, once per writer
engine) and by :mod:`pipelines.lineage.audit` (:func:`verify_chain`, :func:`export_chain`).

Each pipeline has one chain, as a transparency log has: entry ``n`` stores the sha256 of one
execution's canonical content (:func:`content`) and the ``record_sha256`` of entry ``n - 1``, and
its own ``record_sha256`` covers both. An execution is sealed twice: ``start`` (who ran what, with
which code and parameters) when it is committed as running, ``end`` (its status, result summary,
error and every input and output event with the artifact's kind, URI and sha256) when it closes.
Editing a past row (an execution, an event, an artifact's URI or sha256), even together with its
recorded content hash, breaks the chain at that entry, and :func:`verify_chain` names it.

Writers serialise on the pipeline's ``chain_heads`` row: :func:`append` updates it first in the
transaction, which takes SQLite's write lock or PostgreSQL's row lock, so two writers never fork
the chain (the loser of a race to create the very first head row gets an ``IntegrityError`` and
its caller retries the transaction).

Whoever writes an execution row outside :mod:`pipelines.lineage.record` must call :func:`append`
in the same transaction (``end`` after any change to a closed execution), or ``verify`` reports
the execution as not sealed.

What the chain cannot prove: a writer who rewrites a whole chain (every entry after the edit, and
the head row) leaves a consistent chain. Only a head exported earlier (``pipelines lineage
export``) and kept away from the store proves that nothing before it was rewritten.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from pipelines.lineage.common import (  # noqa: F401 - the chain's canonical form
    ADOPTED,
    END,
    END_FIELDS,
    GENESIS,
    START,
    START_FIELDS,
    _canonical,
    _sha,
    _time,
    record_sha256,
)
from pipelines.lineage.store import (
    RUNNING,
    Artifact,
    ChainHead,
    ChainRecord,
    Event,
    Execution,
)


def content(session: Session, x: Execution, phase: str) -> dict[str, Any]:
    """The canonical content of an execution that the chain seals in ``phase``.

    ``start`` holds what is fixed when the step begins; ``end`` and ``adopted`` add how it ended
    and its events, each as (type, artifact kind, URI, sha256). An artifact's ``properties`` and
    ``size`` are descriptive and merged by later writers, so they are not sealed.
    """
    body: dict[str, Any] = {"execution": x.id, "started": _time(x.started)}
    body.update({k: getattr(x, k) for k in START_FIELDS})
    if phase == START:
        return body
    body.update({k: getattr(x, k) for k in END_FIELDS})
    body["ended"] = _time(x.ended)
    rows = session.execute(
        select(Event.type, Artifact.kind, Artifact.uri, Artifact.sha256)
        .join(Artifact, Artifact.id == Event.artifact_id)
        .where(Event.execution_id == x.id)).all()
    body["events"] = sorted(([t, k, u, s] for t, k, u, s in rows), key=_canonical)
    return body


def _lock_head(session: Session, pipeline: str) -> ChainHead:
    """The pipeline's head row, locked for this transaction (created on the first record)."""
    session.execute(update(ChainHead).where(ChainHead.pipeline == pipeline)
                    .values(seq=ChainHead.seq))
    head = session.execute(select(ChainHead).where(ChainHead.pipeline == pipeline)
                           .execution_options(populate_existing=True)).scalar_one_or_none()
    if head is None:
        head = ChainHead(pipeline=pipeline, seq=0, head_sha256=GENESIS)
        session.add(head)
        session.flush()  # a concurrent first writer fails here with IntegrityError: retry
    return head


def lock(session: Session, pipeline: str) -> None:
    """Takes the pipeline's chain lock now (call first in a writing transaction)."""
    _lock_head(session, pipeline)


def append(session: Session, x: Execution, phase: str) -> ChainRecord:
    """Seals ``x`` as it is in this transaction (flushed and re-read) at the head of its chain."""
    head = _lock_head(session, x.pipeline)
    session.flush()
    session.refresh(x)
    digest = _sha(content(session, x, phase))
    seq = head.seq + 1
    rec = ChainRecord(pipeline=x.pipeline, seq=seq, execution_id=x.id, phase=phase,
                      content_sha256=digest, prev_sha256=head.head_sha256,
                      record_sha256=record_sha256(x.pipeline, seq, x.id, phase, digest,
                                                  head.head_sha256),
                      recorded=dt.datetime.now(dt.UTC))
    session.add(rec)
    head.seq, head.head_sha256 = seq, rec.record_sha256
    session.flush()
    return rec


_sealed: set[int] = set()


def seal_once(engine: Engine) -> None:
    """:func:`seal_history` once per engine of this process (the recorder calls it on every write)."""
    if id(engine) not in _sealed:
        seal_history(engine)
        _sealed.add(id(engine))


def seal_history(engine: Engine) -> None:
    """Seals, as found, the executions of every pipeline that has no chain yet (a store written
    by a version without chains). A pipeline that has a chain is never touched here: an execution
    added behind its back stays unsealed and ``verify`` reports it."""
    with Session(engine) as session:
        chained = set(session.scalars(select(ChainHead.pipeline)))
        chained |= set(session.scalars(select(ChainRecord.pipeline).distinct()))
        pending = set(session.scalars(select(Execution.pipeline).distinct())) - chained
    for pipeline in sorted(pending):
        with Session(engine) as session, session.begin():
            _lock_head(session, pipeline)
            if session.scalars(select(ChainRecord.id).where(ChainRecord.pipeline == pipeline)
                               .limit(1)).first() is not None:
                continue  # another writer sealed it first
            for x in session.scalars(select(Execution).where(Execution.pipeline == pipeline)
                                     .order_by(Execution.id)):
                append(session, x, START if x.status == RUNNING else ADOPTED)


def _problem(seq: int | None, execution: int | None, message: str) -> dict[str, Any]:
    return {"seq": seq, "execution": execution, "message": message}


def verify_chain(session: Session, pipeline: str, head: str | None = None) -> dict[str, Any]:
    """Re-computes the pipeline's chain from the rows as they are now.

    Args:
        session: a (read-only) session on the store.
        pipeline: whose chain.
        head: a ``record_sha256`` exported earlier; the chain must still contain it.

    Returns:
        ``{"ok", "records", "head", "first_broken", "problems"}``; ``first_broken`` is the
        earliest problem in chain order, each problem names its entry ``seq`` and execution.
    """
    records = list(session.scalars(select(ChainRecord).where(ChainRecord.pipeline == pipeline)
                                   .order_by(ChainRecord.seq, ChainRecord.id)))
    executions = {x.id: x for x in session.scalars(
        select(Execution).where(Execution.pipeline == pipeline))}
    stored_head = session.get(ChainHead, pipeline)
    problems: list[dict[str, Any]] = []
    prev, expected = GENESIS, 1
    by_execution: dict[int, list[ChainRecord]] = defaultdict(list)
    for rec in records:
        by_execution[rec.execution_id].append(rec)
        where = f"chain record {rec.seq} (execution #{rec.execution_id}, {rec.phase})"
        if rec.seq != expected:
            problems.append(_problem(rec.seq, rec.execution_id,
                                     f"{where}: expected record {expected} here: records were "
                                     f"deleted or inserted"))
        elif rec.prev_sha256 != prev:
            problems.append(_problem(rec.seq, rec.execution_id,
                                     f"{where}: its previous hash {rec.prev_sha256[:16]}… is not "
                                     f"record {rec.seq - 1}'s {prev[:16]}…: the chain was "
                                     f"rewritten before this record"))
        elif rec.record_sha256 != record_sha256(pipeline, rec.seq, rec.execution_id, rec.phase,
                                                rec.content_sha256, rec.prev_sha256):
            problems.append(_problem(rec.seq, rec.execution_id,
                                     f"{where}: its own hash does not match its fields: the "
                                     f"record was edited"))
        prev, expected = rec.record_sha256, rec.seq + 1
    last_full: dict[int, ChainRecord] = {}
    for execution_id, recs in by_execution.items():
        x = executions.get(execution_id)
        if x is None:
            rec = recs[0]
            problems.append(_problem(rec.seq, execution_id,
                                     f"chain record {rec.seq}: execution #{execution_id} is "
                                     f"sealed in the chain but no longer in the store (deleted)"))
            continue
        for rec in recs:
            if rec.phase == START and _sha(content(session, x, START)) != rec.content_sha256:
                problems.append(_problem(rec.seq, execution_id,
                                         f"chain record {rec.seq}: execution #{execution_id} "
                                         f"({x.step}, run {x.run_id}) no longer matches what was "
                                         f"sealed when it started: the row was edited"))
        full = [r for r in recs if r.phase != START]
        if full:
            last_full[execution_id] = full[-1]
            rec = full[-1]
            if _sha(content(session, x, rec.phase)) != rec.content_sha256:
                problems.append(_problem(rec.seq, execution_id,
                                         f"chain record {rec.seq}: execution #{execution_id} "
                                         f"({x.step}, run {x.run_id}) or its events or their "
                                         f"artifacts no longer match what was sealed when it "
                                         f"ended: a row was edited"))
        elif x.status != RUNNING:
            rec = recs[-1]
            problems.append(_problem(rec.seq, execution_id,
                                     f"chain record {rec.seq}: execution #{execution_id} "
                                     f"({x.step}) is {x.status!r} but the chain only sealed its "
                                     f"start: its end was written outside the recorder"))
    for execution_id in sorted(set(executions) - set(by_execution)):
        x = executions[execution_id]
        problems.append(_problem(None, execution_id,
                                 f"execution #{execution_id} ({x.step}, run {x.run_id}) is not "
                                 f"sealed in the chain: it was inserted outside the recorder"))
    tip = records[-1] if records else None
    if tip is not None and (stored_head is None or stored_head.head_sha256 != tip.record_sha256
                            or stored_head.seq != tip.seq):
        problems.append(_problem(tip.seq, tip.execution_id,
                                 f"the chain's head row says record "
                                 f"{getattr(stored_head, 'seq', None)} but the last record is "
                                 f"{tip.seq}: records were deleted from the end, or the head row "
                                 f"was edited"))
    if head is not None:
        anchor = next((r for r in records if r.record_sha256 == head.lower()), None)
        if anchor is None:
            problems.append(_problem(0, None,
                                     f"the exported head {head} is not in the chain: the chain "
                                     f"up to that export was rewritten (or the head belongs to "
                                     f"another pipeline or store)"))
    problems.sort(key=lambda p: (p["seq"] is None, p["seq"] or 0))
    return {"pipeline": pipeline, "ok": not problems, "records": len(records), "executions": len(executions),
            "head": tip.to_dict() if tip else None,
            "first_broken": problems[0] if problems else None, "problems": problems}


def export_chain(session: Session, pipeline: str) -> dict[str, Any]:
    """The pipeline's chain (every record with the content it seals) and its head hash."""
    records = list(session.scalars(select(ChainRecord).where(ChainRecord.pipeline == pipeline)
                                   .order_by(ChainRecord.seq, ChainRecord.id)))
    executions = {x.id: x for x in session.scalars(
        select(Execution).where(Execution.pipeline == pipeline))}
    out = []
    for rec in records:
        x = executions.get(rec.execution_id)
        out.append({**rec.to_dict(),
                    "content": content(session, x, rec.phase) if x is not None else None})
    tip = records[-1] if records else None
    return {"pipeline": pipeline, "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "head": {"seq": tip.seq, "record_sha256": tip.record_sha256} if tip else None,
            "records": out}
