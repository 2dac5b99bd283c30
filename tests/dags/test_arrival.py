"""Data arrival and alarm-triggered retraining (issue 12), our logic only: fast, no task runs.

- which files make a span "landed" (pipelines/arrival.py), checked against ingest's own listing;
- the span and reasons a run takes from the monitor's ``<name>.retrain_requested`` Asset events,
  read through Airflow's own TriggeringAssetEventsAccessor (what a task's context holds);
- the lineage record of a run that ended with no data and its outcome in ``lineage runs``.
The real triggerer and scheduler paths are in tests/e2e/test_retrain_triggers.py.
"""

from __future__ import annotations

import datetime as dt
import sys
from types import SimpleNamespace

import pytest

from pipelines import arrival
from pipelines.config import REPO_ROOT, load_config
from pipelines.context import RunContext
from pipelines.errors import PipelineError

sys.path.insert(0, str(REPO_ROOT / "dags"))

import dag_support  # noqa: E402

CONFIG = REPO_ROOT / "configs" / "adult.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture
def landing(tmp_path):
    """A landing area holding what a real one may: spans, a golden set, strays."""
    root = tmp_path / "landing"
    for day in ("2026-11-18", "2026-11-20"):
        (root / "adult" / day).mkdir(parents=True)
        (root / "adult" / day / "part-00000.csv").write_text("a,b\n1,2\n")
    (root / "adult" / "2026-11-20" / "part-00001.csv").write_text("a,b\n3,4\n")
    (root / "adult" / "2026-11-19").mkdir()  # the folder exists, the file is still on its way
    (root / "adult" / "2026-11-19" / "part-00000.csv.tmp").write_text("a,b\n")
    (root / "adult" / "2026-11-21" / "fake.csv").mkdir(parents=True)  # a folder named like a file
    (root / "adult" / "golden").mkdir()
    (root / "adult" / "golden" / "golden.csv").write_text("a,b\n")
    (root / "adult" / "notes").mkdir()
    (root / "adult" / "notes" / "x.csv").write_text("a,b\n")
    return root


def test_span_files_are_the_files_ingest_would_read(cfg, landing):
    from pipelines.ingest import available_spans

    listed = available_spans(cfg, landing)
    for offset in range(-3, 5):
        day = dt.date(2026, 11, 20) + dt.timedelta(days=offset)
        expected = [f for f in listed.get(day, []) if (landing / f).is_file()]
        assert arrival.span_files(cfg, landing, day) == expected, day
    assert [len(arrival.span_files(cfg, landing, dt.date(2026, 11, d))) for d in (18, 19, 20, 21)] \
        == [1, 0, 2, 0]


def test_span_glob_names_the_landing_and_the_formatted_span(cfg, landing):
    assert arrival.span_glob(cfg, landing, dt.date(2026, 1, 2)) == f"{landing}/adult/2026-01-02/*.csv"
    other = cfg.model_copy(update={"source": cfg.source.model_copy(update={
        "uri_pattern": "{landing}/x/day={span}/part-*.csv", "span_format": "%Y%m%d"})})
    assert arrival.span_glob(other, landing, dt.date(2026, 1, 2)) == \
        f"{landing}/x/day=20260102/part-*.csv"


ALARM = {"span": "2026-11-19", "reasons": ["drift age: 0.31 > 0.1", "live AUC 0.71 < 0.85"],
         "production_version": 3, "monitoring_uri": "/h/monitoring/adult/m1"}


def test_alarm_request_of_one_event():
    got = arrival.alarm_request([ALARM])
    assert got == {"span": "2026-11-19", "spans": ["2026-11-19"],
                   "reasons": ["span 2026-11-19: drift age: 0.31 > 0.1",
                               "span 2026-11-19: live AUC 0.71 < 0.85"],
                   "monitoring_uris": ["/h/monitoring/adult/m1"], "production_versions": [3]}
    assert arrival.describe_trigger(got).startswith(
        "triggered by monitor alarm: span 2026-11-19: drift age: 0.31 > 0.1; ")
    assert arrival.describe_trigger(got).endswith("(training on span 2026-11-19)")


def test_batched_alarms_train_on_the_newest_span_and_keep_every_reason():
    later = {**ALARM, "span": "2026-11-20", "reasons": ["missing workclass: 0.4 > 0.1"]}
    got = arrival.alarm_request([later, ALARM])
    assert got["span"] == "2026-11-20" and got["spans"] == ["2026-11-19", "2026-11-20"]
    assert len(got["reasons"]) == 3 and "span 2026-11-20: missing workclass: 0.4 > 0.1" in \
        got["reasons"]


def test_no_event_is_no_request_and_a_bad_event_is_an_error():
    assert arrival.alarm_request([]) is None
    with pytest.raises(PipelineError, match="names no span.*`span` param"):
        arrival.alarm_request([{"reasons": ["x"]}])
    with pytest.raises(PipelineError, match="yesterday.*extra was"):
        arrival.alarm_request([{"span": "yesterday"}])


def _accessor(*extras, asset=None):
    """What Airflow puts in a task context: TriggeringAssetEventsAccessor of real event models."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    asset = asset or dag_support.retrain_requested_asset("adult")
    return TriggeringAssetEventsAccessor.build([AssetEventDagRunReferenceResult(
        asset={"name": asset.name, "uri": asset.uri, "extra": {}}, extra=extra,
        source_task_id="alarm", source_dag_id="monitor_adult", source_run_id=f"run-{i}",
        source_map_index=-1, source_aliases=[], timestamp=dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
        for i, extra in enumerate(extras)])


def _context(params=None, events=None, logical=dt.datetime(2026, 11, 22, tzinfo=dt.UTC)):
    run = SimpleNamespace(logical_date=logical, run_after=dt.datetime(2026, 11, 23, 5,
                                                                      tzinfo=dt.UTC))
    return {"params": params or {"span": None}, "triggering_asset_events": events or {},
            "dag_run": run}


def test_run_span_of_an_alarm_triggered_run_is_the_monitored_span():
    span, request = dag_support.run_span(_context(events=_accessor(ALARM), logical=None), "adult")
    assert span == dt.date(2026, 11, 19)
    assert request["source_runs"] == ["monitor_adult/run-0"]
    assert request["reasons"][0] == "span 2026-11-19: drift age: 0.31 > 0.1"


def test_run_span_param_wins_then_logical_date_then_run_after():
    ctx = _context(params={"span": "2026-11-02"}, events=_accessor(ALARM))
    span, request = dag_support.run_span(ctx, "adult")
    assert span == dt.date(2026, 11, 2) and request is not None  # the reasons are still recorded
    assert dag_support.run_span(_context(), "adult") == (dt.date(2026, 11, 22), None)
    assert dag_support.run_span(_context(logical=None), "adult") == (dt.date(2026, 11, 23), None)


def test_events_of_another_asset_are_not_an_alarm():
    from airflow.sdk import Asset

    snapshot = Asset(name="adult.snapshot", uri="x-pipelines://adult/snapshots")
    ctx = _context(events=_accessor({"spans": ["2026-11-01"]}, asset=snapshot))
    assert dag_support.run_span(ctx, "adult") == (dt.date(2026, 11, 22), None)
    other = _accessor(ALARM, asset=dag_support.retrain_requested_asset("compas"))
    assert dag_support.alarm_request(_context(events=other), "adult") is None


def test_the_retrain_requested_asset_is_the_one_the_monitor_emits():
    import monitor

    assert monitor.retrain_requested_asset is dag_support.retrain_requested_asset
    asset = dag_support.retrain_requested_asset("adult")
    assert (asset.name, asset.uri) == ("adult.retrain_requested",
                                       "x-pipelines://adult/retrain_requested")


def test_no_data_is_recorded_in_lineage_and_is_the_run_outcome(tmp_path):
    from pipelines.lineage.audit import list_runs

    ctx = RunContext(run_id="scheduled__2026-11-24", dag_id="retrain_adult",
                     dag_run_id="scheduled__2026-11-24", triggered_by="schedule")
    message = arrival.record_no_data(CONFIG, ctx, "2026-11-24", "/l/adult/2026-11-24/*.csv", 90,
                                     home=tmp_path)
    assert message.startswith("no data for span 2026-11-24 after 90 min: no file matches "
                              "/l/adult/2026-11-24/*.csv")
    ok = RunContext(run_id="asset_triggered__1", triggered_by=dag_support.MONITOR_ALARM)
    request = arrival.alarm_request([ALARM])
    arrival.record_arrival(CONFIG, ok, "2026-11-19", ["a.csv"], request, home=tmp_path)
    runs = {r["run_id"]: r for r in list_runs(tmp_path, "adult")["runs"]}
    assert runs["scheduled__2026-11-24"]["outcome"] == "no_data"
    assert runs["scheduled__2026-11-24"]["why"] == [message]
    assert runs["asset_triggered__1"]["triggered_by"] == "monitor_alarm"
    assert runs["asset_triggered__1"]["outcome"] == "incomplete"  # only arrival recorded so far
    assert [s["step"] for s in runs["asset_triggered__1"]["steps"]] == ["arrival"]


def test_run_context_of_an_alarm_triggered_run_carries_the_alarm(monkeypatch):
    run = SimpleNamespace(run_type="asset_triggered", dag_id="retrain_adult", run_id="a1",
                          logical_date=None, run_after=dt.datetime(2026, 11, 23, tzinfo=dt.UTC))
    ctx = {**_context(events=_accessor(ALARM), logical=None), "dag_run": run,
           "ti": SimpleNamespace(try_number=1)}
    monkeypatch.setattr(dag_support, "get_current_context", lambda: ctx)
    got = dag_support.run_context()
    assert got.triggered_by == "monitor_alarm" and got.trigger["span"] == "2026-11-19"
    assert got.trigger["source_runs"] == ["monitor_adult/run-0"]
    ctx["triggering_asset_events"] = {}
    run.run_type = "scheduled"
    plain = dag_support.run_context()
    assert (plain.triggered_by, plain.trigger) == ("schedule", None)


def test_the_audit_report_says_which_alarm_started_the_run(adult_cfg, monkeypatch):
    from pipelines import report
    from tests.eval.test_report import _binary_rows, _curves, _record

    monkeypatch.setattr(report, "_figures", lambda record: [])  # plots: tests/eval/test_report.py
    record = _record(adult_cfg, _binary_rows(), True, _curves("binary"))
    request = {**arrival.alarm_request([ALARM]), "source_runs": ["monitor_adult/m<1>"]}
    answer = report.render(record, None, request).split("id='details'", 1)[0]
    assert "Triggered by monitor alarm (monitor run monitor_adult/m&lt;1&gt;); trained on span " \
        "2026-11-19:" in answer
    assert "<li>span 2026-11-19: live AUC 0.71 &lt; 0.85</li>" in answer
    assert "Why this run" not in report.render(record, None, None)
