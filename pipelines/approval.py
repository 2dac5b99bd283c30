"""Promotion policy ``approval``: what the reviewer is shown, and the decision on record.

Called by the ``approve`` task of dags/retrain.py (only for configs with ``promotion.policy:
approval``), by :mod:`pipelines.promote` (which refuses an approval-policy model that no person
approved) and by :mod:`pipelines.report` (the decision in the audit page). The DAG task reads
Airflow's human-in-the-loop response and hands this module a plain dict; nothing here imports
Airflow.

The flow of one run::

    evaluate -> is_blessed -> approve: renders the pre-decision audit report (report step),
                              asks a person with request(), waits up to approval_timeout_hours
              approve      -> record() the decision (lineage step ``approval``) -> promote, which
                              checks required() and lists the decision among its inputs
              reject/timeout -> record() the decision; promote is skipped; the report says why

A decision is a dict (:class:`Decision`): ``outcome`` (approved, rejected, timed_out), ``by``
(the user name Airflow authenticated, None on timeout), ``by_id``, ``at`` (ISO time of the answer
or of the timeout), ``comment``, ``timeout_hours`` and ``reason`` (one line: "approved by X at T").
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, TypedDict

from pipelines import store
from pipelines.config import PipelineConfig, load_config
from pipelines.context import RunContext
from pipelines.hashing import sha256_file
from pipelines.results import Artifact, ArtifactKind, Evaluated, Promoted, artifact

APPROVED, REJECTED, TIMED_OUT, PENDING = "approved", "rejected", "timed_out", "pending"
STEP = "approval"  # the lineage step name (runner.STEPS)
MAX_COMMENT = 2000


class Decision(TypedDict):
    outcome: str  # approved | rejected | timed_out | pending (the pre-decision report only)
    by: str | None
    by_id: str | None
    at: str | None
    comment: str | None
    timeout_hours: float
    reason: str


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="seconds")
    return str(value)


def pending(timeout_hours: float, requested_at: str | None = None) -> Decision:
    """The state shown in the pre-decision report: waiting for a person."""
    until = ""
    if requested_at:
        deadline = dt.datetime.fromisoformat(requested_at) + dt.timedelta(hours=timeout_hours)
        until = f" (until {_iso(deadline)})"
    return Decision(outcome=PENDING, by=None, by_id=None, at=requested_at, comment=None,
                    timeout_hours=timeout_hours,
                    reason=f"awaiting approval in Airflow, task `approve`, for up to "
                           f"{timeout_hours:g} h{until}; no decision by then: not promoted")


def decide(response: dict[str, Any], timeout_hours: float) -> Decision:
    """The decision from a human-in-the-loop response, as the DAG hands it over.

    Args:
        response: ``approved`` (bool: the person chose to approve), ``timed_out`` (bool: nobody
            answered in time and the default, reject, was applied), ``user`` (``{"id", "name"}``
            of the authenticated responder, None on timeout), ``at`` (time of the answer or the
            timeout), ``comment`` (optional free text of the reviewer).
        timeout_hours: the configured ``promotion.approval_timeout_hours``.

    Raises:
        ValueError: a response that is both approved and timed out, or approved by nobody.
    """
    user = response.get("user") or None
    at = _iso(response.get("at"))
    comment = (str(response.get("comment") or "").strip() or None)
    if comment and len(comment) > MAX_COMMENT:
        comment = comment[:MAX_COMMENT] + "…"
    approved, timed_out = bool(response.get("approved")), bool(response.get("timed_out"))
    if approved and (timed_out or not user):
        raise ValueError(f"an approval needs an authenticated person and no timeout: {response!r}")
    name = (user or {}).get("name") or (user or {}).get("id")
    if timed_out or not user:
        outcome = TIMED_OUT
        reason = f"no decision within {timeout_hours:g} h (timed out at {at}): not promoted"
    elif approved:
        outcome, reason = APPROVED, f"approved by {name} at {at}"
    else:
        outcome, reason = REJECTED, f"rejected by {name} at {at}: not promoted"
    if comment and outcome != TIMED_OUT:
        reason += f" ({comment})"
    return Decision(outcome=outcome, by=name if outcome != TIMED_OUT else None,
                    by_id=str((user or {}).get("id")) if user and outcome != TIMED_OUT else None,
                    at=at, comment=comment, timeout_hours=timeout_hours, reason=reason)


def _fmt(v: Any) -> str:
    return "undefined" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def request(cfg: PipelineConfig, record: dict[str, Any], report_html: str,
            timeout_hours: float) -> tuple[str, str]:
    """(subject, Markdown body) of the approval request, from the evaluation record.

    The body leads with the evaluation's verdict and its reasons, then the gated overall metrics,
    candidate against production per dataset, the failed and passed gates, and the path of the
    pre-decision audit report.
    """
    base = record.get("baseline")
    verdict = "BLESSED" if record.get("blessed") else "NOT BLESSED"
    subject = (f"Promote {cfg.name} model {record['model']['sha256'][:12]} "
               f"({verdict.lower()}) to production?")
    lines = [f"**Evaluation: {verdict}** (evaluation {record['evaluation_id']}, run "
             f"{record.get('run_id')}), against "
             + (f"production version {base['version']}" if base else
                "no production model (first model: absolute thresholds only)") + ".", ""]
    reasons = list(record.get("reasons") or [])
    lines += ["**Reasons:** " + ("; ".join(reasons) if reasons else "every gate passed"), ""]
    gated = sorted({g["metric"] for g in record.get("gates") or [] if g["scope"] == "overall"})
    if gated:
        lines += ["| dataset | metric | candidate | production |", "|---|---|---|---|"]
        for dataset, models in sorted((record.get("metrics") or {}).items()):
            for metric in gated:
                cand = (models.get("candidate") or {}).get(metric)
                prod = (models.get("baseline") or {}).get(metric) if base else "none"
                lines.append(f"| {dataset} | {metric} | {_fmt(cand)} | {_fmt(prod)} |")
        lines.append("")
    checks = record.get("checks") or []
    failed = [c for c in checks if c["passed"] is False]
    passed = [c for c in checks if c["passed"] is True]
    lines.append(f"**Gates:** {len(passed)} passed, {len(failed)} failed, "
                 f"{len(checks) - len(passed) - len(failed)} not gated.")
    lines += [f"- FAILED {c['threshold']} on {c['dataset']}/{c['slice']}: {c['metric']} "
              f"{_fmt(c['value'])} {c['op']} {c['bound']}" for c in failed]
    lines += ["", f"**Audit report:** `{report_html}`", "",
              f"Approve promotes this model to production; Reject, or no answer within "
              f"{timeout_hours:g} h, leaves production as it is. Optional comment: recorded in "
              f"lineage and the report."]
    return subject, "\n".join(lines)


def ask(config_path: str | Path, ctx: RunContext, evaluated: Evaluated,
        requested_at: str | None = None, home: str | Path | None = None) -> tuple[str, str, str]:
    """(subject, body, report path) for the approve task: renders the pre-decision audit report
    (the report step, titled "BLESSED, AWAITING APPROVAL") and the request that points at it."""
    from pipelines import evaluate as evaluation_lib
    from pipelines import flow

    cfg = load_config(config_path)
    hours = cfg.promotion.approval_timeout_hours
    waiting = Promoted(promoted=False, version=None, registry_uri=None, previous_version=None,
                       reasons=[], approval=dict(pending(hours, requested_at)))
    reported = flow.report(config_path, ctx, evaluated, waiting, home=home)
    record = evaluation_lib.load(evaluated["evaluation_uri"])
    subject, body = request(cfg, record, reported["report_html"], hours)
    return subject, body, reported["report_html"]


def declined(decision: dict[str, Any] | None) -> bool:
    """True when a person rejected or nobody decided in time (promote was skipped for that)."""
    return bool(decision) and decision["outcome"] in (REJECTED, TIMED_OUT)  # type: ignore[index]


def for_report(promotion: dict[str, Any] | None, decision: dict[str, Any] | None
               ) -> dict[str, Any] | None:
    """What the final report is given: the promotion (or refusal) with the decision attached;
    a declined decision stands for the promotion that did not run."""
    if not decision:
        return promotion
    if declined(decision) or promotion is None:
        promotion = {"promoted": False, "version": None, "registry_uri": None,
                     "previous_version": None, "reasons": [decision["reason"]]}
    return {**promotion, "approval": decision}


def decision_path(home: Path, pipeline: str, run_id: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("._") or "run"
    return store.root(home, store.Kind.APPROVAL, pipeline) / f"{name}.json"


def record_decision(cfg: PipelineConfig, home: Path, ctx: RunContext, evaluation_uri: str,
                    model_uri: str, decision: Decision) -> dict[str, Any]:
    """Step ``approval``: writes the decision file; the runner records it in lineage.

    Inputs: the evaluation the person judged and the candidate; output: the decision file
    (kind ``ApprovalDecision``, with outcome, by and at as properties), which promote lists among
    its inputs, so the decision is upstream of the registry version it let through.
    """
    path = decision_path(home, cfg.name, ctx.run_id)
    body = {"pipeline": cfg.name, "run_id": ctx.run_id, "dag_run_id": ctx.dag_run_id,
            "evaluation_uri": str(evaluation_uri), "model_uri": str(model_uri), **decision}
    store.write_json_atomic(path, body)
    return {**body, "decision_uri": str(path),
            "inputs": [artifact(ArtifactKind.MODEL_EVALUATION, evaluation_uri, None, None),
                       artifact(ArtifactKind.MODEL, model_uri, None, None)],
            "outputs": [artifact(ArtifactKind.APPROVAL_DECISION, path, sha256_file(path),
                                 path.stat().st_size, outcome=decision["outcome"],
                                 by=decision["by"], at=decision["at"])]}


def record(config_path: str | Path, ctx: RunContext, evaluated: Evaluated, decision: Decision,
           home: str | Path | None = None) -> dict[str, Any]:
    """Records ``decision`` for the evaluated candidate in lineage; returns it with its file."""
    from pipelines import runner

    cfg, root = load_config(config_path), store.resolve_home(home)
    res = runner.run_step(STEP, cfg, root, ctx, evaluation_uri=evaluated["evaluation_uri"],
                          model_uri=evaluated["model_uri"], decision=decision)
    return {k: v for k, v in res.items() if k not in ("inputs", "outputs")}


def required(cfg: PipelineConfig, home: Path, evaluation_uri: str | Path
             ) -> tuple[Artifact | None, str | None]:
    """(the decision artifact, None) when a person approved this evaluation, else (None, why).

    Read from the lineage store: the newest completed ``approval`` execution of the pipeline
    whose input is this evaluation. A file someone wrote by hand is not an approval.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from pipelines.lineage.store import (
        COMPLETED,
        Artifact,
        Event,
        Execution,
        LineageError,
        get_engine,
    )

    target = str(Path(evaluation_uri).resolve())
    how = (f"promotion.policy of {cfg.name} is approval: a person approves in Airflow (task "
           f"`approve` of retrain_{cfg.name}) before promote")
    try:
        engine = get_engine(home, readonly=True)
    except LineageError as exc:
        return None, f"{how}; no decision can be read: {exc}"
    with Session(engine) as session:
        rows = session.scalars(select(Execution).where(
            Execution.pipeline == cfg.name, Execution.step == STEP,
            Execution.status == COMPLETED).order_by(Execution.started.desc(), Execution.id.desc()))
        for row in rows:
            inputs = session.scalars(select(Artifact).join(Event, Event.artifact_id == Artifact.id)
                                     .where(Event.execution_id == row.id, Event.type == "input",
                                            Artifact.kind == ArtifactKind.MODEL_EVALUATION))
            if not any(str(Path(a.uri).resolve()) == target for a in inputs):
                continue
            summary = row.summary or {}
            if summary.get("outcome") != APPROVED:
                return None, f"{how}; this evaluation was not approved: {summary.get('reason')}"
            out = session.scalars(select(Artifact).join(Event, Event.artifact_id == Artifact.id)
                                  .where(Event.execution_id == row.id, Event.type == "output")
                                  ).first()
            if out is None:
                return None, f"{how}; approval execution #{row.id} recorded no decision file"
            return artifact(ArtifactKind.APPROVAL_DECISION, out.uri, out.sha256, out.size,
                            **(out.properties or {})), None
    return None, f"{how}; no decision is recorded for evaluation {target}"


def recorded(config_path: str | Path, run_id: str, evaluated: Evaluated,
             home: str | Path | None = None) -> dict[str, Any] | None:
    """The decision already recorded for this run and evaluation, else None.

    A retried approve task acts on it instead of asking again (Airflow starts a retry as a new
    task instance with a new, unanswered request; the person decided once).
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from pipelines.lineage.store import COMPLETED, Execution, LineageError, get_engine

    cfg, root = load_config(config_path), store.resolve_home(home)
    target = str(Path(evaluated["evaluation_uri"]).resolve())
    try:
        engine = get_engine(root, readonly=True)
    except LineageError:
        return None  # no store yet: nothing was decided
    with Session(engine) as session:
        rows = session.scalars(select(Execution).where(
            Execution.pipeline == cfg.name, Execution.step == STEP, Execution.run_id == run_id,
            Execution.status == COMPLETED).order_by(Execution.started.desc(), Execution.id.desc()))
        for row in rows:
            summary = dict(row.summary or {})
            if str(Path(str(summary.get("evaluation_uri"))).resolve()) == target:
                return summary
    return None


def shown(promotion: dict[str, Any] | None) -> tuple[str, str, list[str]] | None:
    """The report's (css class, title, reasons) when the approval decides the outcome, else None.

    Pending: the pre-decision report. Rejected or timed out: not promoted, with the reason. An
    approved model is titled by its promotion (promoted, or refused at promote).
    """
    decision = (promotion or {}).get("approval")
    if not decision:
        return None
    if decision["outcome"] == PENDING:
        return "warn", "BLESSED, AWAITING APPROVAL", [decision["reason"]]
    if decision["outcome"] in (REJECTED, TIMED_OUT):
        title = ("NOT PROMOTED: rejected by " + str(decision["by"])
                 if decision["outcome"] == REJECTED
                 else f"NOT PROMOTED: no decision within {decision['timeout_hours']:g} h")
        return "no", title, [decision["reason"]]
    return None


def section(promotion: dict[str, Any] | None) -> list[str]:
    """The report's "Approval" table (empty without an approval); values HTML-escaped."""
    import html

    decision = (promotion or {}).get("approval")
    if not decision:
        return []
    rows = [("outcome", decision["outcome"]), ("by", decision.get("by") or "–"),
            ("at", decision.get("at") or "–"), ("comment", decision.get("comment") or "–"),
            ("timeout", f"{decision['timeout_hours']:g} h"), ("reason", decision["reason"])]
    if decision.get("decision_uri"):
        rows.append(("recorded in", decision["decision_uri"]))
    return (["<h2>Approval</h2><table id='approval'>"]
            + [f"<tr><td class='l'>{html.escape(k)}</td><td class='l'>{html.escape(str(v))}</td>"
               "</tr>" for k, v in rows] + ["</table>"])
