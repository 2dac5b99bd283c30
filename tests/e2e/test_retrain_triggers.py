"""When retrain runs (issue 12), under the session's real Airflow (tests/e2e/conftest.py):

1. a monitor alarm on a drifted span emits ``<name>.retrain_requested``; the scheduler starts
   ``retrain_<name>`` from that Asset event and the run trains on the monitored span;
2. a run whose span never lands waits in the triggerer, and at the (1-minute) timeout ends as
   "no data": green, everything after ``wait_for_span`` skipped, the alert in the task log, the
   lineage outcome ``no_data``, nothing written in the registry.

One variant, ``adult_trig``: no cron (runs only when asked or alarmed), window 1, a 1-minute wait.
Its production model is the session's trained model (tests/conftest.py ``trained``), so the monitor
has a model to judge without a training run of its own. The no-data run waits while the monitor
runs; the alarm's retrain queues behind it (max_active_runs=1).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.config import load_config
from pipelines.context import RunContext
from pipelines.lineage.audit import list_runs
from tests.monitor import spans

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "adult_trig"
RETRAIN, MONITOR = f"retrain_{NAME}", f"monitor_{NAME}"
TODAY = dt.datetime.now(dt.UTC).date()
DRIFTED = TODAY - dt.timedelta(days=40)  # days no other module stages (see SCHEDULER.md)
NEVER = TODAY - dt.timedelta(days=50)    # a span that never lands
AFTER_SENSOR = ["ingest", "validate", "transform", "train", "evaluate", "is_blessed", "promote",
                "report"]


@pytest.fixture(scope="module")
def trig(scheduler, trained):
    dag_id = scheduler.add_config(NAME, overrides={
        "window": 1,
        "schedule": {"cron": None, "arrival_timeout_minutes": 1, "arrival_poke_seconds": 10},
        "monitoring": {"schedule": None}})
    assert dag_id == RETRAIN
    cfg = load_config(scheduler.configs / f"{NAME}.yaml")
    registry.push(cfg, scheduler.home, RunContext(run_id="retrain-triggers-push"),
                  trained["model_uri"], None, {"model_uri": trained["model_uri"]})
    spans.drifted(scheduler.home, DRIFTED)
    scheduler.unpause(RETRAIN)
    try:
        yield scheduler
    finally:
        scheduler.pause(MONITOR)
        scheduler.pause(RETRAIN)


def _versions(home) -> list[str]:
    root = home / "registry" / NAME
    return sorted(p.name for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []


def _runs(api, run_type: str) -> list[dict]:
    return api.get(f"/api/v2/dags/{RETRAIN}/dagRuns?run_type={run_type}&limit=10")["dag_runs"]


def _log(api, run_id: str, task_id: str) -> str:
    body = api.get(f"/api/v2/dags/{RETRAIN}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
                   "?full_content=true")
    content = body.get("content")
    if isinstance(content, list):
        return "\n".join(str(x.get("event", x)) if isinstance(x, dict) else str(x)
                         for x in content)
    return str(content)


def test_alarm_triggers_retraining_and_a_missing_span_ends_as_no_data(trig):
    s, api = trig, trig.api
    versions = _versions(s.home)
    assert len(versions) == 1  # the pushed production model

    # (2) starts first: it waits in the triggerer while the monitor runs
    waiting = api.trigger(TODAY - dt.timedelta(days=20), {"span": NEVER.isoformat()},
                          dag_id=RETRAIN)
    s.unpause(MONITOR)
    monitored = api.trigger(DRIFTED, {"span": DRIFTED.isoformat()}, dag_id=MONITOR)
    assert api.wait_run(monitored, dag_id=MONITOR, timeout=600) == "success", s.explain()
    s.pause(MONITOR)  # the retrain's own snapshot event must not start another monitor run
    alarm = api.xcom(monitored, "alarm", dag_id=MONITOR)
    assert alarm["retrain_requested"] and alarm["span"] == DRIFTED.isoformat()
    assert any("drift" in r and "age" in r for r in alarm["reasons"]), alarm

    # (2) no data: the deferral timed out, the run is green and did nothing
    assert api.wait_run(waiting, dag_id=RETRAIN, timeout=300) == "success", s.explain()
    states = api.task_states(waiting, dag_id=RETRAIN)
    assert states["wait_for_span"] == "skipped"
    assert {t: states[t] for t in AFTER_SENSOR} == dict.fromkeys(AFTER_SENSOR, "skipped")
    pattern = f"{s.home}/landing/adult/{NEVER.isoformat()}/*.csv"
    log = _log(api, waiting, "wait_for_span")
    assert "waiting up to 1 min in the triggerer" in log, log[-3000:]
    assert f"{RETRAIN}: NO DATA: no data for span {NEVER.isoformat()} after 1 min: no file " \
        f"matches {pattern}" in log, log[-3000:]
    by_run = {r["dag_run_id"]: r for r in list_runs(s.home, NAME)["runs"]}
    assert by_run[waiting]["outcome"] == "no_data"
    assert [x["step"] for x in by_run[waiting]["steps"]] == ["arrival"]
    assert _versions(s.home) == versions

    # (1) the alarm's Asset event started a retrain run, which trained on the monitored span
    deadline = time.monotonic() + 120
    while not (triggered := _runs(api, "asset_triggered")):
        assert time.monotonic() < deadline, f"no asset-triggered {RETRAIN} run\n{s.explain()}"
        time.sleep(3)
    assert len(triggered) == 1, triggered
    run_id = triggered[0]["dag_run_id"]
    assert api.wait_run(run_id, dag_id=RETRAIN, timeout=900) == "success", s.explain()
    events = api.get(f"/api/v2/dags/{RETRAIN}/dagRuns/{run_id}/upstreamAssetEvents")[
        "asset_events"]
    assert [(e["name"], e["source_dag_id"], e["source_run_id"]) for e in events] == [
        (f"{NAME}.retrain_requested", MONITOR, monitored)]
    assert events[0]["extra"]["span"] == DRIFTED.isoformat()
    assert api.xcom(run_id, "ingest", dag_id=RETRAIN)["spans"] == [DRIFTED.isoformat()]
    waited = api.xcom(run_id, "wait_for_span", dag_id=RETRAIN)
    assert waited["span"] == DRIFTED.isoformat() and waited["trigger"]["reasons"] == [
        f"span {DRIFTED.isoformat()}: {r}" for r in alarm["reasons"]]
    assert "triggered by monitor alarm: " in _log(api, run_id, "ingest")
    page = Path(api.xcom(run_id, "report", dag_id=RETRAIN)["report_html"]).read_text()
    assert f"Triggered by monitor alarm (monitor run {MONITOR}/{monitored})" in page
    record = {r["dag_run_id"]: r for r in list_runs(s.home, NAME)["runs"]}[run_id]
    assert record["triggered_by"] == "monitor_alarm"
    assert record["steps"][0]["step"] == "arrival"
    assert _runs(api, "scheduled") == []  # no cron: only asked-for and alarmed runs
