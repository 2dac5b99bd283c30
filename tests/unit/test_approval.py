"""Promotion policy ``approval`` without Airflow: the decision, its record, the request, the report.

The decision a person (or the timeout) takes becomes a lineage execution ``approval`` in a real
SQLite lineage store; promote's check (:func:`pipelines.approval.required`) reads it back. The
request text and the audit page are rendered from the evaluation records tests/eval builds.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipelines import approval, report
from pipelines.config import load_config, parse_config
from pipelines.context import RunContext
from pipelines.lineage.audit import list_runs
from pipelines.results import Evaluated
from tests.eval.conftest import adult_raw
from tests.eval.test_report import _binary_rows, _curves, _record

ADMIN = {"id": "admin", "name": "admin"}
AT = dt.datetime(2026, 11, 23, 18, 30, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cfg():
    raw = adult_raw()
    raw["promotion"] = {**raw["promotion"], "policy": "approval", "approval_timeout_hours": 6}
    return parse_config(raw)


def test_the_approval_policy_loads_with_its_timeout(cfg):
    assert cfg.promotion.policy == "approval" and cfg.promotion.approval_timeout_hours == 6


def test_decide_approved_names_who_and_when():
    d = approval.decide({"approved": True, "timed_out": False, "user": ADMIN, "at": AT,
                         "comment": "  looks fine  "}, 6)
    assert d == {"outcome": "approved", "by": "admin", "by_id": "admin",
                 "at": "2026-11-23T18:30:05+00:00", "comment": "looks fine", "timeout_hours": 6,
                 "reason": "approved by admin at 2026-11-23T18:30:05+00:00 (looks fine)"}


def test_decide_rejected_and_timed_out_are_not_promoted():
    rejected = approval.decide({"approved": False, "user": {"id": "7", "name": "ana"}, "at": AT,
                                "comment": ""}, 6)
    assert rejected["outcome"] == "rejected" and rejected["by"] == "ana"
    assert rejected["by_id"] == "7" and rejected["comment"] is None
    assert rejected["reason"] == "rejected by ana at 2026-11-23T18:30:05+00:00: not promoted"
    # the scheduler applied the default (Reject) with nobody as responder
    timed_out = approval.decide({"approved": False, "timed_out": True, "user": None,
                                 "at": AT.isoformat()}, 1.5)
    assert timed_out["outcome"] == "timed_out" and timed_out["by"] is None
    assert timed_out["reason"].startswith("no decision within 1.5 h (timed out at 2026-11-23T18:3")
    assert approval.declined(rejected) and approval.declined(timed_out)
    assert not approval.declined(None) and not approval.declined(approval.pending(6))


def test_an_approval_needs_a_person():
    with pytest.raises(ValueError, match="authenticated person"):
        approval.decide({"approved": True, "timed_out": False, "user": None, "at": AT}, 6)
    with pytest.raises(ValueError, match="authenticated person"):
        approval.decide({"approved": True, "timed_out": True, "user": ADMIN, "at": AT}, 6)


def _evaluated(tmp_path, name: str) -> Evaluated:
    folder = tmp_path / "evaluations" / name
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text("{}")
    return Evaluated(evaluation_uri=str(folder), blessed=True, reasons=[], baseline=None,
                     metrics={}, model_uri=str(tmp_path / "models" / name))


def test_decisions_are_recorded_and_only_an_approval_lets_promote_through(cfg, tmp_path):
    home = tmp_path / "home"
    config = tmp_path / "adult.yaml"
    raw = adult_raw()
    raw["promotion"] = {**raw["promotion"], "policy": "approval", "approval_timeout_hours": 6}
    config.write_text(json.dumps(raw))  # YAML is a superset of JSON
    assert load_config(config).promotion.policy == "approval"
    first, second, third = (_evaluated(tmp_path, n) for n in ("e1", "e2", "e3"))
    ctx = RunContext(run_id="manual__1", dag_id="retrain_adult", dag_run_id="manual__1",
                     triggered_by="manual")

    _, why = approval.required(cfg, home, first["evaluation_uri"])
    assert "task `approve` of retrain_adult" in why and "no lineage store" in why

    ok = approval.record(config, ctx, first, approval.decide(
        {"approved": True, "user": ADMIN, "at": AT, "comment": "ship it"}, 6), home=home)
    assert ok["outcome"] == "approved" and ok["by"] == "admin"
    on_file = json.loads((home / "approvals" / "adult" / "manual__1.json").read_text())
    assert on_file["by"] == "admin" and on_file["evaluation_uri"] == first["evaluation_uri"]
    assert ok["decision_uri"] == str(home / "approvals" / "adult" / "manual__1.json")

    found, why = approval.required(cfg, home, first["evaluation_uri"])
    assert why is None and found["kind"] == "ApprovalDecision"
    assert found["properties"]["by"] == "admin" and found["properties"]["outcome"] == "approved"
    assert found["uri"] == ok["decision_uri"] and len(found["sha256"]) == 64

    ctx2 = RunContext(run_id="manual__2", dag_id="retrain_adult", dag_run_id="manual__2",
                      triggered_by="manual")
    approval.record(config, ctx2, second, approval.decide(
        {"approved": False, "user": ADMIN, "at": AT}, 6), home=home)
    found, why = approval.required(cfg, home, second["evaluation_uri"])
    assert found is None and "not approved: rejected by admin at 2026-11-23T18:30:05" in why
    # an approval of another evaluation approves nothing else
    found, why = approval.required(cfg, home, third["evaluation_uri"])
    assert found is None and f"no decision is recorded for evaluation {third['evaluation_uri']}" in why

    runs = {r["run_id"]: r for r in list_runs(home, "adult")["runs"]}
    steps = [s["step"] for s in runs["manual__2"]["steps"]]
    assert steps == ["approval"] and runs["manual__2"]["steps"][0]["status"] == "completed"
    # `pipelines lineage runs`: a rejected run is not promoted, with who and when
    assert runs["manual__2"]["outcome"] == "not_promoted"
    assert runs["manual__2"]["why"] == ["rejected by admin at 2026-11-23T18:30:05+00:00: "
                                        "not promoted"]
    assert runs["manual__1"]["approval"]["by"] == "admin"
    assert runs["manual__1"]["approval"]["comment"] == "ship it"
    # a retried approve task finds the decision of its run and evaluation, and only that
    again = approval.recorded(config, "manual__2", second, home=home)
    assert again["outcome"] == "rejected" and again["by"] == "admin"
    assert approval.declined(again)
    assert approval.recorded(config, "manual__2", first, home=home) is None
    assert approval.recorded(config, "manual__3", second, home=home) is None
    assert approval.recorded(config, "manual__1", first, home=tmp_path / "empty") is None


def test_request_shows_verdict_reasons_metrics_gates_and_report_path(adult_cfg):
    record = _record(adult_cfg, _binary_rows(), True, _curves("binary"))
    record["metrics"] = {"golden": {"candidate": {"auc": 0.9123}, "baseline": {"auc": 0.9301}}}
    subject, body = approval.request(adult_cfg, record, "/home/reports/adult/r1.html", 24)
    assert subject == f"Promote adult model {'a' * 12} (not blessed) to production?"
    assert "**Evaluation: NOT BLESSED**" in body and "production version 1" in body
    assert "auc_max_drop" in body and "age_bucket=65+" in body  # the reasons
    assert "| golden | auc | 0.9123 | 0.9301 |" in body
    failed = [c for c in record["checks"] if c["passed"] is False]
    assert f"{len(failed)} failed" in body and body.count("- FAILED ") == len(failed)
    assert "`/home/reports/adult/r1.html`" in body and "24 h" in body


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """The plots are tested in tests/eval/test_report.py; here only the text matters."""
    monkeypatch.setattr(report, "_figures", lambda record: [])


def _page(adult_cfg, promotion) -> tuple[str, str]:
    rows = [r for r in _binary_rows() if r["name"] != "age_bucket=65+"]
    for r in rows:
        r["candidate"]["fnr"] = 0.3
        if "baseline" in r:
            r["baseline"]["auc"] = r["candidate"]["auc"]
    record = _record(adult_cfg, rows, True, _curves("binary"))
    assert record["blessed"], record["reasons"]
    page = report.render(record, promotion)
    answer = page.split("id='details'", 1)[0]
    return page.split("id='decision'", 1)[1].split("</h1>", 1)[0], answer


def test_report_before_the_decision_says_it_awaits_approval(adult_cfg):
    title, answer = _page(adult_cfg, approval.for_report(None, dict(approval.pending(
        6, "2026-11-23T18:00:00+00:00"))))
    assert "BLESSED, AWAITING APPROVAL" in title
    assert "until 2026-11-24T00:00:00+00:00" in answer and "id='approval'" in answer


def test_report_of_a_rejection_names_who_and_when(adult_cfg):
    decision = {**approval.decide({"approved": False, "user": ADMIN, "at": AT,
                                   "comment": "<b>too risky</b>"}, 6),
                "decision_uri": "/h/approvals/adult/r.json"}
    title, answer = _page(adult_cfg, approval.for_report(None, decision))
    assert "NOT PROMOTED: rejected by admin" in title
    reasons = answer.split("id='reasons'", 1)[1].split("</ul>", 1)[0]
    assert "rejected by admin at 2026-11-23T18:30:05+00:00" in reasons
    table = answer.split("id='approval'", 1)[1].split("</table>", 1)[0]
    assert "rejected" in table and "/h/approvals/adult/r.json" in table
    assert "<b>too risky</b>" not in answer and "&lt;b&gt;too risky&lt;/b&gt;" in table


def test_report_of_a_timeout_and_of_an_approved_promotion(adult_cfg):
    timed_out = approval.decide({"approved": False, "timed_out": True, "at": AT}, 6)
    title, _ = _page(adult_cfg, approval.for_report(None, timed_out))
    assert "NOT PROMOTED: no decision within 6 h" in title
    approved = approval.decide({"approved": True, "user": ADMIN, "at": AT}, 6)
    promoted = {"promoted": True, "version": 4, "registry_uri": "/r/4", "previous_version": 3,
                "reasons": []}
    title, answer = _page(adult_cfg, approval.for_report(promoted, approved))
    assert "PROMOTED as version 4" in title
    assert "approved by admin at 2026-11-23T18:30:05+00:00" in answer
    # approved, then refused at promote (say, the infra check): still a refusal
    refused = {"promoted": False, "reasons": ["infra check failed: timeout"]}
    title, answer = _page(adult_cfg, approval.for_report(refused, approved))
    assert "BLESSED BUT REFUSED AT PROMOTION" in title and "infra check failed" in answer
