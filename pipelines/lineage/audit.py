"""Auditor checks over the lineage store: re-hash a model's chain, check the store's hash chain,
export it, and list runs with their outcome.

Called by :mod:`pipelines.cli.lineage` (``pipelines lineage verify``, ``export`` and ``runs``) and
by tests. Read-only, like every lineage query.

Hashes are recomputed the way the producers computed them (``pipelines.hashing``): a file is the
sha256 of its bytes, a folder is :func:`~pipelines.sha256_tree` (relative paths and file
hashes in sorted order). Verification passes only when every artifact of the model's chain is
there with its recorded bytes: an artifact that is ``missing`` (deleted, retired, a landing file
cleaned up), ``unchecked`` (recorded without a sha256, or on a store we cannot read from here) or
``mismatch`` (other bytes) fails it, since none of them can be proven. The store's own rows are
checked against the pipeline's hash chain (:mod:`pipelines.lineage.chain`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from pipelines.hashing import sha256_file, sha256_tree
from pipelines.lineage.chain import export_chain, verify_chain
from pipelines.lineage.query import model_lineage
from pipelines.lineage.store import (
    COMPLETED,
    FAILED,
    NOT_PROMOTED,
    REJECTED,
    RUNNING,
    Execution,
    LineageError,
    get_engine,
)

FAILING = ("mismatch", "missing", "unchecked")


def local_path(uri: str) -> Path | None:
    """The local path of a URI, or None for an object store we cannot hash from here."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or len(parsed.scheme) == 1:
        return Path(uri)
    return None


def rehash(uri: str) -> tuple[str, str | None]:
    """(status, sha256) of what is at ``uri`` now: ``present``, ``missing`` or ``unchecked``."""
    path = local_path(uri)
    if path is None:
        return "unchecked", None
    if path.is_file():
        return "present", sha256_file(path)
    if path.is_dir():
        return "present", sha256_tree(path)
    return "missing", None


def check_chain(home: Path, pipeline: str, head: str | None = None) -> dict[str, Any]:
    """The pipeline's hash chain re-computed from the store (:func:`~.chain.verify_chain`)."""
    with Session(get_engine(home, readonly=True)) as session:
        try:
            return verify_chain(session, pipeline, head)
        except (OperationalError, ProgrammingError) as exc:
            if "chain_" not in str(exc):
                raise
    problem = {"seq": None, "execution": None,
               "message": "the store has no hash chain: it was written by an older version of "
                          "pipelines. The next step run (any writer) seals its history as found; "
                          "until then nothing in it can be verified"}
    return {"pipeline": pipeline, "ok": False, "records": 0, "executions": None, "head": None,
            "first_broken": problem, "problems": [problem]}


def export(home: Path, pipeline: str) -> dict[str, Any]:
    """The pipeline's chain with its head hash, for an auditor to keep away from the store.

    Raises:
        LineageError: the chain is broken now (an export is a trust anchor: it is refused rather
            than anchoring rewritten records), naming the first broken record.
    """
    checked = check_chain(home, pipeline)
    if not checked["ok"]:
        raise LineageError(
            f"the {pipeline} chain is broken, nothing exported: {checked['first_broken']['message']}"
            f" (`pipelines lineage verify {pipeline}` lists every problem)")
    if not checked["records"]:
        raise LineageError(f"no record of pipeline {pipeline!r} in the lineage store: nothing to "
                           f"export")
    with Session(get_engine(home, readonly=True)) as session:
        return export_chain(session, pipeline)


def verify_model(home: Path, pipeline: str, version: str | None = None,
                 head: str | None = None) -> dict[str, Any]:
    """Re-hashes every artifact of a registry version's chain and checks the store's hash chain.

    ``ok`` only if every artifact is present with its recorded bytes (none ``missing``,
    ``unchecked`` or ``mismatch``) and the hash chain is unbroken (and holds ``head``, when given).
    Without ``version``, only the hash chain is checked.
    """
    chain = check_chain(home, pipeline, head)
    checks = []
    if version is not None:
        for art in model_lineage(home, pipeline, version)["artifacts"]:
            check = {"id": art["id"], "kind": art["kind"], "uri": art["uri"],
                     "recorded": art["sha256"], "actual": None}
            if not art["sha256"]:
                check["status"] = "unchecked"
            else:
                state, actual = rehash(art["uri"])
                check["actual"] = actual
                if state != "present":
                    check["status"] = state
                else:
                    check["status"] = "ok" if actual == art["sha256"] else "mismatch"
            checks.append(check)
    by_status = defaultdict(list)
    for c in checks:
        by_status[c["status"]].append(c)
    counts = {k: len(v) for k, v in sorted(by_status.items())}
    failed = [c for c in checks if c["status"] in FAILING]
    return {"pipeline": pipeline, "version": None if version is None else str(version),
            "ok": not failed and chain["ok"], "counts": counts,
            "failed": failed, "mismatched": by_status["mismatch"],
            "missing": by_status["missing"], "unchecked": by_status["unchecked"],
            "artifacts": checks, "chain": chain}


def run_outcome(steps: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """(outcome, why) of one run from the latest execution of each of its steps."""
    def summary(step: str) -> dict[str, Any]:
        return (steps.get(step) or {}).get("summary") or {}

    statuses = {s: x["status"] for s, x in steps.items()}
    if REJECTED in statuses.values():
        v = summary("validate")
        why = list(v.get("failures") or [])
        for feature, d in (v.get("drift") or {}).items():
            if isinstance(d, dict) and d.get("passed") is False:
                why.append(f"drift {feature}: {d.get('metric')} {d.get('value')} > "
                           f"{d.get('threshold')}")
        rejected = next(x for x in steps.values() if x["status"] == REJECTED)
        return "rejected", why or [rejected.get("error") or "validation rejected the data"]
    if summary("arrival").get("no_data"):  # issue 12: the span never landed (pipelines.arrival)
        return "no_data", [summary("arrival").get("reason") or "the span's files never landed"]
    promote = steps.get("promote")
    if promote and promote["status"] == COMPLETED and summary("promote").get("shadow"):
        return "shadow", [f"version {summary('promote').get('version')} is the shadow candidate",
                          *summary("promote").get("reasons", [])]  # issue 12
    if promote and promote["status"] == COMPLETED and summary("promote").get("promoted"):
        return "promoted", [f"version {summary('promote').get('version')}",
                            *summary("promote").get("reasons", [])]
    if promote and promote["status"] in (NOT_PROMOTED, COMPLETED):
        s = summary("promote")
        return "not_promoted", list(s.get("reasons") or [promote.get("error") or "not promoted"])
    decided = summary("approval")  # issue 12, policy approval: a person's decision (approval.py)
    if decided.get("outcome") in ("rejected", "timed_out"):
        return "not_promoted", [decided.get("reason") or "not approved"]
    evaluate = steps.get("evaluate")
    if evaluate and summary("evaluate").get("blessed") is False:
        return "not_promoted", list(summary("evaluate").get("reasons") or ["not blessed"])
    if FAILED in statuses.values():
        failed = [x for x in steps.values() if x["status"] == FAILED]
        return "failed", [f"{x['step']}: {x['error']}" for x in failed]
    if RUNNING in statuses.values():
        return "running", [f"{s} started {x['started']} and has not ended (still running, or "
                           f"killed)" for s, x in steps.items() if x["status"] == RUNNING]
    return "incomplete", [f"last step: {max(steps.values(), key=lambda x: x['started'])['step']}"]


def list_runs(home: Path, pipeline: str, limit: int | None = None) -> dict[str, Any]:
    """Runs of a pipeline, newest first, with their outcome and why."""
    with Session(get_engine(home, readonly=True)) as session:
        rows = [x.to_dict() for x in session.scalars(
            select(Execution).where(Execution.pipeline == pipeline)
            .order_by(Execution.started, Execution.id))]
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in rows:
        runs[x["run_id"]].append(x)
    out = []
    for run_id, execs in runs.items():
        latest = {x["step"]: x for x in execs}  # ordered by start: the last try of each step wins
        outcome, why = run_outcome(latest)
        first = execs[0]
        out.append({
            "run_id": run_id, "outcome": outcome, "why": why,
            "started": first["started"], "ended": max((x["ended"] or "") for x in execs) or None,
            "triggered_by": first["triggered_by"], "dag_id": first["dag_id"],
            "dag_run_id": first["dag_run_id"],
            "version": (latest.get("promote") or {}).get("summary", {}).get("version"),
            "approval": {k: v for k, v in ((latest.get("approval") or {}).get("summary")
                                           or {}).items()
                         if k in ("outcome", "by", "at", "comment", "reason", "decision_uri")}
                        or None,  # issue 12: who decided, when (policy approval)
            "steps": [{"step": x["step"], "status": x["status"], "execution": x["id"],
                       "try_number": x["try_number"], "started": x["started"],
                       "ended": x["ended"], "error": x["error"]} for x in execs],
        })
    out.sort(key=lambda r: (r["started"] or "", r["steps"][0]["execution"]), reverse=True)
    return {"pipeline": pipeline, "runs": out[:limit] if limit else out}
