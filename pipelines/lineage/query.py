"""The auditor's questions, answered from the lineage store (read-only).

Called by :mod:`pipelines.cli.lineage` (``pipelines lineage model|data|verify|runs``) and by
tests. Every function opens the store read-only and returns plain JSON-serialisable dicts.

Walks: upstream from a registry version through the producing executions' inputs down to the
landing files; validations hang off the snapshots they checked. Downstream from a source file
through the consuming executions' outputs to every snapshot, model, evaluation and promotion. A
registry version is a boundary both ways: the production baseline an evaluation compared against
is listed, but the baseline's own history is not followed (it did not train this model).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pipelines.lineage.store import (
    COMPLETED,
    Artifact,
    Event,
    Execution,
    LineageError,
    database_url,
    describe,
    get_engine,
)

BOUNDARY_KINDS = ("ModelVersion",)


class Graph:
    """Cached reads of the event graph inside one read-only session."""

    def __init__(self, session: Session):
        self.session = session
        self.artifacts: dict[int, Artifact] = {}
        self.executions: dict[int, Execution] = {}
        self.edges: set[tuple[int, int, str]] = set()  # (execution, artifact, type)
        self.gaps: list[dict[str, Any]] = []

    def _events(self, column, value: int, type_: str) -> list[Event]:
        return list(self.session.scalars(select(Event).where(column == value, Event.type == type_)))

    def producers(self, artifact_id: int) -> list[Execution]:
        """Executions that wrote the artifact, the one that created it first."""
        events = self._events(Event.artifact_id, artifact_id, "output")
        rows = [x for e in events if (x := self.session.get(Execution, e.execution_id))]
        return sorted(rows, key=lambda x: (x.status != COMPLETED, x.started, x.id))

    def consumers(self, artifact_id: int) -> list[Execution]:
        events = self._events(Event.artifact_id, artifact_id, "input")
        rows = {e.execution_id: x for e in events
                if (x := self.session.get(Execution, e.execution_id))}
        return sorted(rows.values(), key=lambda x: (x.started, x.id))

    def io(self, execution: Execution, type_: str) -> list[Artifact]:
        found = []
        for e in self._events(Event.execution_id, execution.id, type_):
            if (art := self.session.get(Artifact, e.artifact_id)) is not None:
                found.append(art)
        return found

    def add(self, execution: Execution) -> None:
        """Adds an execution with all its inputs and outputs and their edges."""
        self.executions[execution.id] = execution
        for type_ in ("input", "output"):
            for art in self.io(execution, type_):
                self.artifacts[art.id] = art
                self.edges.add((execution.id, art.id, type_))

    def to_dict(self) -> dict[str, Any]:
        execs = sorted(self.executions.values(), key=lambda x: (x.started, x.id))
        out = []
        for x in execs:
            d = x.to_dict()
            d["inputs"] = sorted(a for e, a, t in self.edges if e == x.id and t == "input")
            d["outputs"] = sorted(a for e, a, t in self.edges if e == x.id and t == "output")
            out.append(d)
        return {"executions": out,
                "artifacts": [self.artifacts[i].to_dict() for i in sorted(self.artifacts)]}


def _session(home: Path) -> Session:
    return Session(get_engine(home, readonly=True))


def find_model_version(session: Session, pipeline: str, version: str, home: Path) -> Artifact:
    rows = session.execute(
        select(Artifact, Execution).join(Event, Event.artifact_id == Artifact.id)
        .join(Execution, Execution.id == Event.execution_id)
        .where(Artifact.kind == "ModelVersion", Event.type == "output",
               Execution.pipeline == pipeline)
        .order_by(Artifact.id.desc())).all()
    for art, _ in rows:
        props = art.properties or {}
        if str(props.get("version")) == str(version) or Path(art.uri).name == str(version):
            return art
    known = sorted({str((a.properties or {}).get("version", Path(a.uri).name)) for a, _ in rows})
    raise LineageError(
        f"no promotion of {pipeline} version {version} in the lineage store "
        f"{describe(database_url(home))}; versions recorded: {known or 'none'}. "
        f"`pipelines lineage runs {pipeline}` lists the runs and their outcomes")


def walk_upstream(graph: Graph, root: Artifact) -> set[int]:
    """Adds everything upstream of ``root``; returns the ids of the artifacts reached."""
    graph.artifacts[root.id] = root
    queue, seen = [root], {root.id}
    while queue:
        art = queue.pop()
        if art.kind in BOUNDARY_KINDS and art.id != root.id:
            continue
        producers = graph.producers(art.id)
        if not producers:
            gap = find_gap(graph, art)
            if gap:
                graph.gaps.append(gap)
            continue
        graph.add(producers[0])
        for upstream in graph.io(producers[0], "input"):
            if upstream.id not in seen:
                seen.add(upstream.id)
                queue.append(upstream)
    return seen


def find_gap(graph: Graph, art: Artifact) -> dict[str, Any] | None:
    """An input nobody produced although a step wrote other bytes at the same URI: the chain is
    broken there (the bytes changed in between, or the two steps hash differently)."""
    others = graph.session.scalars(select(Artifact).where(Artifact.uri == art.uri,
                                                          Artifact.id != art.id)).all()
    written = [(o, x) for o in others for x in graph.producers(o.id)[:1]]
    if not written:
        return None
    readers = sorted({x.step for x in graph.consumers(art.id)})
    return {"uri": art.uri, "kind": art.kind, "sha256": art.sha256, "read_by": readers,
            "written": [{"step": x.step, "execution": x.id, "kind": o.kind, "sha256": o.sha256}
                        for o, x in written],
            "message": f"{'/'.join(readers)} read {art.kind} {art.uri} with sha256 "
                       f"{art.sha256}, but {', '.join(sorted({x.step for _, x in written}))} "
                       f"wrote it with sha256 {', '.join(sorted({o.sha256 or '?' for o, _ in written}))}"}


def model_lineage(home: Path, pipeline: str, version: str) -> dict[str, Any]:
    """The whole upstream chain of a registry version (see the module docstring)."""
    with _session(home) as session:
        root = find_model_version(session, pipeline, str(version), home)
        graph = Graph(session)
        walk_upstream(graph, root)
        for art in [a for a in graph.artifacts.values() if a.kind == "Snapshot"]:
            for x in graph.consumers(art.id):
                if x.step == "validate":
                    graph.add(x)
        models = [a for a in graph.artifacts.values() if a.kind == "Model"]
        training: set[int] = set()
        for model in models:
            sub = Graph(session)
            training |= walk_upstream(sub, model)
        body = graph.to_dict()
        by_step = defaultdict(list)
        for x in body["executions"]:
            by_step[x["step"]].append(x)
        sources = []
        for a in body["artifacts"]:
            if a["kind"] == "SourceFile":
                sources.append({**a, "role": "training" if a["id"] in training else "evaluation"})
        return {
            "pipeline": pipeline, "version": str(version), "model_version": root.to_dict(),
            "source_files": sources,
            "validation": [_validation(x) for x in by_step["validate"]],
            "training": [x["summary"] for x in by_step["train"]],
            "blessing": [_blessing(x) for x in by_step["evaluate"]],
            "promotion": [_promotion(x) for x in by_step["promote"]],
            "gaps": graph.gaps,
            **body,
        }


def _pick(summary: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: summary.get(k) for k in keys if k in summary}


def _validation(x: dict[str, Any]) -> dict[str, Any]:
    s = x["summary"]
    return {"execution": x["id"], "status": s.get("status", x["status"]),
            "snapshot_uri": s.get("snapshot_uri"), "error": x["error"],
            **_pick(s, ("expectations", "failures", "drift", "baseline_uri", "report_html"))}


def _blessing(x: dict[str, Any]) -> dict[str, Any]:
    s = x["summary"]
    return {"execution": x["id"], "status": x["status"],
            **_pick(s, ("blessed", "reasons", "baseline", "metrics", "checks", "evaluation_uri"))}


def _promotion(x: dict[str, Any]) -> dict[str, Any]:
    s = x["summary"]
    return {"execution": x["id"], "status": x["status"], "time": x["ended"],
            "triggered_by": x["triggered_by"], "run_id": x["run_id"],
            **_pick(s, ("promoted", "version", "previous_version", "registry_uri", "reasons",
                        "infra_check"))}


def data_lineage(home: Path, ref: str) -> dict[str, Any]:
    """Everything downstream of the artifacts whose URI or sha256 is ``ref``."""
    with _session(home) as session:
        conds = [Artifact.uri == ref, Artifact.sha256 == ref.lower()]
        if Path(ref).exists():
            conds.append(Artifact.uri == str(Path(ref).resolve()))
        if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref.lower()):
            conds.append(Artifact.sha256.startswith(ref.lower()))
        matches = list(session.scalars(select(Artifact).where(or_(*conds)).order_by(Artifact.id)))
        if not matches:
            raise LineageError(
                f"no artifact with URI or sha256 {ref!r} in the lineage store; give a landing "
                f"file's path as ingest recorded it (absolute) or its sha256")
        graph = Graph(session)
        queue = list(matches)
        seen = {a.id for a in matches}
        for a in matches:
            graph.artifacts[a.id] = a
        while queue:
            art = queue.pop()
            if art.kind in BOUNDARY_KINDS:
                continue
            for x in graph.consumers(art.id):
                graph.add(x)
                for out in graph.io(x, "output"):
                    if out.id not in seen:
                        seen.add(out.id)
                        queue.append(out)
        body = graph.to_dict()
        down = [a for a in body["artifacts"] if a["id"] in seen and a["id"] not in
                {m.id for m in matches}]
        kinds = defaultdict(list)
        for a in down:
            kinds[a["kind"]].append(a)
        evaluations = {x["id"]: x for x in body["executions"] if x["step"] == "evaluate"}
        return {
            "query": ref, "matches": [m.to_dict() for m in matches],
            "snapshots": kinds["Snapshot"], "models": kinds["Model"],
            "evaluations": [_blessing(x) for x in evaluations.values()],
            "promotions": [_promotion(x) for x in body["executions"] if x["step"] == "promote"],
            "downstream": dict(kinds), **body,
        }
