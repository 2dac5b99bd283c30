"""End to end with the real scheduler: the session's Airflow (tests/e2e/conftest.py, ``scheduler``).

Triggers retrain_adult through the REST API (/api/v2, JWT from the simple auth manager) with params,
then a run whose span holds corrupt data, then a 2-day backfill. Dates are relative to today so the
runs are in the past whatever the clock says. retrain_adult belongs to this module; it is paused
again at the end.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from pipelines.config import load_config
from tests.e2e.harness import DAG_ID, corrupt_span, production_alias

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TODAY = dt.datetime.now(dt.UTC).date()
END = TODAY - dt.timedelta(days=3)      # last good span; the session stages spans END-6 .. END
CORRUPT = TODAY - dt.timedelta(days=2)  # a span whose rows break the data contract
BACKFILL = [END - dt.timedelta(days=d) for d in (2, 1)]
BACKFILL_WINDOW = 2  # each backfilled day trains on its own 2-span window: distinct snapshots
DOWNSTREAM_OF_VALIDATE = ["transform", "train", "evaluate", "is_blessed", "promote", "report"]


@pytest.fixture(scope="module")
def airflow(scheduler):
    assert scheduler.staged_end == END
    corrupt_span(scheduler.home, END, CORRUPT)
    scheduler.unpause(DAG_ID)
    _fail_the_catch_up_run(scheduler.api)
    try:
        yield {"api": scheduler.api, "home": scheduler.home, "scheduler": scheduler}
    finally:
        scheduler.pause(DAG_ID)


def _fail_the_catch_up_run(api, timeout: float = 30) -> None:
    """Unpaused, a @daily DAG without catchup starts today's run at once. Today's span is not
    staged (the run would fail at ingest or wait for data) and, with max_active_runs=1, it would
    hold up the runs this module triggers: it is marked failed as soon as it shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=scheduled")["dag_runs"]
        if runs:
            for r in runs:
                api.patch(f"/api/v2/dags/{DAG_ID}/dagRuns/{r['dag_run_id']}", {"state": "failed"})
            return
        time.sleep(1)


def _explain(airflow) -> str:
    return airflow["scheduler"].explain()


def test_backfill_of_two_days(airflow):
    """Runs first, before any model is in production: evaluations without a baseline are cheaper."""
    api = airflow["api"]
    before = production_alias(airflow["home"])
    api.post("/api/v2/backfills", {
        "dag_id": DAG_ID, "max_active_runs": 1, "dag_run_conf": {"window": BACKFILL_WINDOW},
        "from_date": f"{BACKFILL[0].isoformat()}T00:00:00Z",
        "to_date": f"{BACKFILL[-1].isoformat()}T00:00:00Z",
    })
    runs = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=10")["dag_runs"]
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in BACKFILL]
    snapshots, promoted = set(), 0
    for r in sorted(runs, key=lambda r: r["logical_date"]):
        assert api.wait_run(r["dag_run_id"]) == "success", _explain(airflow)
        ingested = api.xcom(r["dag_run_id"], "ingest")
        assert ingested["spans"][-1] == r["logical_date"][:10]
        assert len(ingested["spans"]) == BACKFILL_WINDOW
        snapshots.add(ingested["uri"])
        evaluated = api.xcom(r["dag_run_id"], "evaluate")
        promote_state = api.task_states(r["dag_run_id"])["promote"]
        assert promote_state == ("success" if evaluated["blessed"] else "skipped")
        promoted += promote_state == "success"
    assert len(snapshots) == len(BACKFILL)
    if not promoted:
        assert production_alias(airflow["home"]) == before


def test_rest_trigger_with_params_succeeds(airflow):
    api = airflow["api"]
    run_id = api.trigger(END, {"span": END.isoformat(), "window": 7,
                               "threshold_slice_auc_min": 0.84})
    assert api.wait_run(run_id) == "success", _explain(airflow)
    states = api.task_states(run_id)
    assert {t: states[t] for t in ("ingest", "validate", "transform", "train", "evaluate",
                                   "report")} == dict.fromkeys(
        ("ingest", "validate", "transform", "train", "evaluate", "report"), "success")
    ingested = api.xcom(run_id, "ingest")
    assert ingested["params"]["threshold_overrides"] == {"slice_auc_min": 0.84}
    assert ingested["spans"][-1] == END.isoformat()
    evaluated = api.xcom(run_id, "evaluate")
    assert states["promote"] == ("success" if evaluated["blessed"] else "skipped")
    assert evaluated["blessed"] and production_alias(airflow["home"]) is not None


def test_invalid_params_are_refused_naming_the_param(airflow):
    with pytest.raises(AssertionError, match="window"):
        airflow["api"].trigger(END, {"window": 0})


def test_corrupt_span_stops_at_validate(airflow):
    api = airflow["api"]
    before = production_alias(airflow["home"])
    run_id = api.trigger(CORRUPT, {"window": 1})
    assert api.wait_run(run_id) == "failed"
    states = api.task_states(run_id)
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert all(states[t] in ("upstream_failed", None) for t in DOWNSTREAM_OF_VALIDATE), states
    assert production_alias(airflow["home"]) == before


def test_add_config_parses_a_variant_and_the_triggerer_runs(airflow):
    """The session fixture's own contract: a variant is parsed on request, paused, deep-merged."""
    scheduler, api = airflow["scheduler"], airflow["api"]
    dag_id = scheduler.add_config("adult_variant", timeout=60, overrides={
        "promotion": {"policy": "shadow"}, "evaluation": {"thresholds": {"slice_auc_min": 0.83}}})
    assert dag_id == "retrain_adult_variant"
    assert api.get("/api/v2/dags/monitor_adult_variant")["is_paused"] is True
    assert api.get(f"/api/v2/dags/{dag_id}")["is_paused"] is True
    written = scheduler.configs / "adult_variant.yaml"
    merged = load_config(written)
    assert merged.name == "adult_variant" and merged.promotion.policy == "shadow"
    base = load_config(scheduler.configs / "adult.yaml")
    assert merged.evaluation.thresholds == {**base.evaluation.thresholds, "slice_auc_min": 0.83}
    assert merged.promotion.shadow_spans == base.promotion.shadow_spans
    assert merged.model == base.model
    health = api.get("/api/v2/monitor/health")
    assert health["triggerer"]["status"] == "healthy", health
    with pytest.raises(AssertionError, match="policy"):
        scheduler.add_config("adult_bad", overrides={"promotion": {"policy": "sometimes"}})
    assert not (scheduler.configs / "adult_bad.yaml").exists()
