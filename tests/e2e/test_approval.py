"""Promotion policy ``approval`` under the real scheduler (the session's Airflow, ``scheduler``).

A variant of Adult with ``promotion.policy: approval`` (and a small, quick model: two spans, three
epochs, no golden set) runs twice on the same data. The first run waits at ``approve`` in Airflow's
``awaiting_input`` state with the pre-decision audit report written; an approval through the REST
API (PATCH .../hitlDetails, as the admin user of the JWT) promotes it: production is that version
and lineage names the approver. The second run (same snapshot, transform and model: reused) is
rejected through the REST API: promote is skipped, the run is green, production is unchanged and
the report and lineage say who rejected it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
from pathlib import Path

import pytest

from pipelines.lineage.audit import list_runs
from pipelines.lineage.query import model_lineage
from tests.e2e.harness import USER, production_alias

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "adult_approval"
PARKED_SECONDS = 20  # let the scheduler see the parking worker exit before answering
WINDOW = 2
OVERRIDES = {
    "promotion": {"policy": "approval", "approval_timeout_hours": 1,
                  "infra_check_source": "eval", "infra_check_examples": 20},
    "source": {"golden_pattern": None},
    "model": {"epochs": 3, "hidden_units": [32]},
    "evaluation": {"slices": [[], ["sex"]],
                   "thresholds": {"overall_auc_min": 0.85, "slice_auc_min": 0.80,
                                  "auc_max_drop": 0.02},
                   "fairness": {"feature": "sex", "metric": "fnr", "max_gap": 0.30}},
    "schedule": {"cron": None},
    "monitoring": {"retrain_on_alarm": False},
}


@pytest.fixture(scope="module")
def approval_dag(scheduler):
    dag_id = scheduler.add_config(NAME, overrides=OVERRIDES)
    scheduler.unpause(dag_id)
    try:
        yield dag_id
    finally:
        scheduler.pause(dag_id)


def _patient(call, *args, tries: int = 5, **kwargs):
    """An API call retried when the API server, starved of CPU on a loaded machine, takes longer
    than the client's 30 s timeout (a timeout, not an HTTP error: those fail at once)."""
    for attempt in range(tries):
        try:
            return call(*args, **kwargs)
        except (TimeoutError, urllib.error.URLError):
            if attempt == tries - 1:
                raise
            time.sleep(5)


def _hitl_path(dag_id: str, run_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"


def _wait_for_approve(scheduler, dag_id: str, run_id: str, timeout: float = 1800) -> dict:
    """Waits until the run is parked at `approve`; returns its human-in-the-loop request."""
    api = scheduler.api
    deadline = time.monotonic() + timeout
    while (state := (states := _patient(api.task_states, run_id, dag_id)).get("approve")
           ) != "awaiting_input":
        run_state = _patient(api.run_state, run_id, dag_id)
        assert run_state not in ("success", "failed") and state not in ("skipped", "failed"), (
            f"run {run_id} is {run_state} and approve {state}: {states}\n{scheduler.explain()}")
        assert time.monotonic() < deadline, f"approve still {state} after {timeout:.0f}s: {states}"
        time.sleep(5)
    # Airflow 3.3 race: an answer that lands before the scheduler has processed the parking
    # worker's exit is taken for an externally killed task and retried (a new, unanswered
    # request; the approve task then acts on the decision it recorded). A person takes longer.
    time.sleep(PARKED_SECONDS)
    return _patient(api.get, _hitl_path(dag_id, run_id))


def _respond(scheduler, dag_id: str, run_id: str, option: str, comment: str) -> dict:
    return scheduler.api.patch(_hitl_path(dag_id, run_id),
                               {"chosen_options": [option], "params_input": {"comment": comment}})


def _decision(api, dag_id: str, run_id: str) -> dict:
    entry = _patient(api.get, f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve"
                              "/xcomEntries/decision?deserialize=true")
    return json.loads(entry["value"]) if isinstance(entry["value"], str) else entry["value"]


def _trigger(scheduler, dag_id: str, logical_day, span) -> str:
    return scheduler.api.trigger(logical_day, {"span": span.isoformat(), "window": WINDOW},
                                 dag_id=dag_id)


def test_approval_promotes_and_rejection_does_not(scheduler, approval_dag):
    api, home, dag_id = scheduler.api, scheduler.home, approval_dag
    span = scheduler.staged_end

    # 1. the run waits at approve, with the pre-decision report written and shown
    first = _trigger(scheduler, dag_id, span, span)
    request = _wait_for_approve(scheduler, dag_id, first)
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert request["response_received"] is False
    evaluated = api.xcom(first, "evaluate", dag_id)
    assert evaluated["blessed"], evaluated["reasons"]
    assert request["subject"].startswith(f"Promote {NAME} model ")
    body = request["body"]
    assert "**Evaluation: BLESSED**" in body and "no production model" in body
    report_html = Path(body.split("**Audit report:** `", 1)[1].split("`", 1)[0])
    assert report_html.is_file() and "BLESSED, AWAITING APPROVAL" in report_html.read_text()
    assert api.task_states(first, dag_id)["promote"] in (None, "none")
    assert production_alias(home, NAME) is None

    # 2. approved through the REST API: promoted; production and lineage name the approver
    answer = _respond(scheduler, dag_id, first, "Approve", "e2e: looks good")
    assert answer["responded_by"]["name"] == USER and answer["chosen_options"] == ["Approve"]
    assert _patient(api.wait_run, first, dag_id=dag_id) == "success", scheduler.explain()
    states = api.task_states(first, dag_id)
    assert states["approve"] == "success" and states["promote"] == "success"
    decision = _decision(api, dag_id, first)
    assert decision["outcome"] == "approved" and decision["by"] == USER
    assert decision["comment"] == "e2e: looks good"
    version = api.xcom(first, "promote", dag_id)["version"]
    assert production_alias(home, NAME)["production"] == version
    final = Path(api.xcom(first, "report", dag_id)["report_html"])
    assert final == report_html  # one report per run: the final one replaces the pre-decision one
    page = final.read_text()
    assert f"PROMOTED as version {version}" in page and f"approved by {USER} at" in page
    chain = model_lineage(home, NAME, version)
    approvals = [a for a in chain["artifacts"] if a["kind"] == "ApprovalDecision"]
    assert [a["properties"]["by"] for a in approvals] == [USER], approvals
    runs = {r["run_id"]: r for r in list_runs(home, NAME)["runs"]}
    assert runs[first]["outcome"] == "promoted" and runs[first]["approval"]["by"] == USER

    # 3. the same data again, rejected: not promoted, production unchanged, a green run
    second = _trigger(scheduler, dag_id, span - dt.timedelta(days=1), span)
    request = _wait_for_approve(scheduler, dag_id, second)
    assert f"production version {version}" in request["body"]
    _respond(scheduler, dag_id, second, "Reject", "")
    assert _patient(api.wait_run, second, dag_id=dag_id) == "success", scheduler.explain()
    states = api.task_states(second, dag_id)
    assert states["approve"] == "success" and states["promote"] == "skipped"
    assert states["report"] == "success"
    assert production_alias(home, NAME)["production"] == version
    decision = _decision(api, dag_id, second)
    assert decision["outcome"] == "rejected" and decision["by"] == USER
    page = Path(api.xcom(second, "report", dag_id)["report_html"]).read_text()
    assert f"NOT PROMOTED: rejected by {USER}" in page
    runs = {r["run_id"]: r for r in list_runs(home, NAME)["runs"]}
    assert runs[second]["outcome"] == "not_promoted"
    assert runs[second]["why"][0].startswith(f"rejected by {USER} at ")
    on_file = json.loads(Path(decision["decision_uri"]).read_text())
    assert on_file["outcome"] == "rejected" and on_file["dag_run_id"] == second
