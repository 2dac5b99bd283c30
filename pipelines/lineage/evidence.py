"""Evidence for the gates: what the lineage store says an artifact is, read-only.

Called by :mod:`pipelines.promote` (is this evaluation folder the one a completed ``evaluate``
execution wrote, about which model, data and baseline?) and :mod:`pipelines.registry` (was a
prepared registry change recorded, so the next writer completes it, or not, so it undoes it).
A file on disk is never trusted on its own word: these questions are asked by (uri, sha256) of the
bytes as they are now.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipelines.lineage.store import COMPLETED, Artifact, Event, Execution, get_engine, iso


def _outputs_of(session: Session, uri: str, sha256: str, step: str | None,
                pipeline: str) -> list[Execution]:
    query = (select(Execution).join(Event, Event.execution_id == Execution.id)
             .join(Artifact, Artifact.id == Event.artifact_id)
             .where(Artifact.uri == uri, Artifact.sha256 == sha256, Event.type == "output",
                    Execution.status == COMPLETED, Execution.pipeline == pipeline)
             .order_by(Execution.started, Execution.id))
    if step is not None:
        query = query.where(Execution.step == step)
    return list(session.scalars(query))


def _io(session: Session, execution_id: int, type_: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(Artifact).join(Event, Event.artifact_id == Artifact.id)
                           .where(Event.execution_id == execution_id, Event.type == type_)
                           .order_by(Artifact.id))
    return [a.to_dict() for a in rows]


def evaluation(home: Path, pipeline: str, uri: str, sha256: str) -> dict[str, Any] | None:
    """The completed ``evaluate`` execution that wrote exactly these bytes at ``uri``, or None.

    Returns ``{"execution": {...}, "inputs": [...], "outputs": [...], "ended": datetime}``;
    ``other_hashes`` lists the hashes recorded for that URI when none matches (an edited folder).
    """
    with Session(get_engine(home, readonly=True)) as session:
        found = _outputs_of(session, uri, sha256, "evaluate", pipeline)
        if not found:
            others = sorted({a.sha256 or "" for a in session.scalars(
                select(Artifact).where(Artifact.uri == uri))})
            return {"execution": None, "other_hashes": others} if others else None
        x = found[-1]
        ended = x.ended if x.ended is None or x.ended.tzinfo else x.ended.replace(tzinfo=dt.UTC)
        return {"execution": x.to_dict(), "ended": ended, "inputs": _io(session, x.id, "input"),
                "outputs": _io(session, x.id, "output"), "other_hashes": []}


def accepted_validation(home: Path, pipeline: str, snapshot_uri: str,
                        sha256: str) -> dict[str, Any] | None:
    """The newest completed ``validate`` execution that read these snapshot bytes and accepted
    them (summary status ``accepted``), as a dict, or None."""
    with Session(get_engine(home, readonly=True)) as session:
        rows = session.scalars(
            select(Execution).join(Event, Event.execution_id == Execution.id)
            .join(Artifact, Artifact.id == Event.artifact_id)
            .where(Artifact.uri == snapshot_uri, Artifact.sha256 == sha256,
                   Event.type == "input", Execution.step == "validate",
                   Execution.status == COMPLETED, Execution.pipeline == pipeline)
            .order_by(Execution.started.desc(), Execution.id.desc()))
        for x in rows:
            if (x.summary or {}).get("status") == "accepted":
                return x.to_dict()
    return None


def change_recorded(home: Path, pipeline: str, uri: str, sha256: str) -> dict[str, Any] | None:
    """The completed execution that recorded the artifact (uri, sha256) as an output, or None."""
    with Session(get_engine(home, readonly=True)) as session:
        found = _outputs_of(session, uri, sha256, None, pipeline)
        return found[0].to_dict() if found else None


__all__ = ["accepted_validation", "change_recorded", "evaluation", "iso"]
