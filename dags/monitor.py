"""DAG factory: one DAG ``monitor_<pipeline>`` per config file in configs/ (issue 12).

Parsed by the Airflow DAG processor (and by ``airflow dags test``); as cheap to parse as
dags/retrain.py, whose task helpers it reuses: ``airflow.sdk`` and ``pipelines.config`` only. The
heavy stack (TensorFlow, TFMA, GX) is imported by :mod:`pipelines.monitor` inside the task.

Scheduled on the ``<name>.snapshot`` Asset that retrain's ingest emits (a new span landed) and on
``monitoring.schedule``. Which span: the ``span`` param, else the newest span of the triggering
snapshot event, else the run's logical date (as retrain). An alarm notifies with its reasons and
emits the ``<name>.retrain_requested`` Asset event, which retrain_<name> can be scheduled on.
Under ``promotion.policy: shadow``, ``shadow_decision`` counts the spans the pending shadow was
scored on and, at ``promotion.shadow_spans``, promotes it (emitting the ``<name>.production`` Asset
event) or drops it, alerting either way (pipelines/shadow.py)::

    monitor_span >> shadow_decision >> dashboard
    monitor_span >> alarm
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    Param,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

# dag_support.py sits beside this file: importable under any DAGs folder, in `airflow dags test`
# and in a DagBag pointed here (Airflow itself only puts its configured DAGs folder on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_support import (  # noqa: E402
    build_all,
    notify_failure,
    notify_target,
    retrain_requested_asset,
    run_context,
)

from pipelines.config import PipelineConfig, load_config
from pipelines.errors import PipelineError

log = logging.getLogger("pipelines.dag.monitor")


def snapshot_asset(name: str) -> Asset:
    return Asset(name=f"{name}.snapshot", uri=f"x-pipelines://{name}/snapshots")


def _span() -> str:
    c = get_current_context()
    if c["params"].get("span"):
        return str(c["params"]["span"])
    from pipelines.monitor import latest_span

    for events in (c.get("triggering_asset_events") or {}).values():
        for event in reversed(list(events)):
            if span := latest_span(event.extra):
                return span
    dag_run = c["dag_run"]
    return (dag_run.logical_date or dag_run.run_after).date().isoformat()


def build_dag(config_path: Path):
    """Builds the monitoring DAG of one pipeline config."""
    cfg: PipelineConfig = load_config(config_path)
    cfg_file, name = str(config_path), cfg.name
    snapshot, requested = snapshot_asset(name), retrain_requested_asset(name)
    if cfg.monitoring.schedule:
        from airflow.timetables.trigger import CronTriggerTimetable

        schedule: Any = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(
                cfg.monitoring.schedule, timezone="UTC"),
            assets=snapshot)
    else:
        schedule = snapshot

    @dag(
        dag_id=f"monitor_{name}",
        schedule=schedule,
        start_date=dt.datetime.fromisoformat(cfg.schedule.start_date).replace(tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=dt.timedelta(hours=1),
        doc_md=f"Monitoring of the production model of {name} on each new span (issue 12).",
        description=f"Monitoring of {name}: drift, outputs, live metrics, alarms",
        tags=sorted({"monitor", *cfg.tags}),
        params={"span": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                              description="span to monitor (YYYY-MM-DD); default: the newest "
                                          "span of the triggering snapshot, else the run date")},
        default_args={"owner": cfg.owner, "execution_timeout": dt.timedelta(minutes=30),
                      "on_failure_callback": notify_failure, "retries": 1,
                      "retry_delay": dt.timedelta(seconds=20)},
    )
    def monitor():
        @task(inlets=[snapshot])
        def monitor_span() -> dict:
            from pipelines import monitor as monitor_lib

            try:
                return monitor_lib.run(cfg_file, run_context(), _span())
            except monitor_lib.NothingToMonitor as exc:
                raise AirflowSkipException(str(exc)) from exc
            except PipelineError as exc:
                raise AirflowFailException(str(exc)) from exc

        production = Asset(name=f"{name}.production",
                           uri=f"x-pipelines://{name}/registry/production")
        changes = AssetAlias(name=f"{name}.production_changes")

        @task(outlets=[changes], execution_timeout=dt.timedelta(minutes=10))
        def shadow_decision(monitored: dict, *, outlet_events=None) -> dict:
            from pipelines import shadow

            try:
                decided = shadow.run(cfg_file, run_context(), target=notify_target())
            except PipelineError as exc:
                raise AirflowFailException(str(exc)) from exc
            if decided["decision"] == "promote":  # production changed: the same event as retrain's
                outlet_events[changes].add(production, extra={
                    "version": decided["shadow_version"], "from_shadow": True,
                    "previous_version": decided["production_version"],
                    "spans": decided["spans_judged"]})
            log.info("shadow: %s", decided.get("message") or decided.get("why") or
                     f"{decided['decision']}: {len(decided.get('counted') or [])} of "
                     f"{decided.get('needed')} spans counted")
            return decided

        @task(execution_timeout=dt.timedelta(minutes=5))
        def dashboard(monitored: dict, decided: dict | None = None) -> dict:
            from pipelines import monitor_report

            path = monitor_report.write(load_config(cfg_file), None)
            log.info("monitoring dashboard: %s", path)
            return {"dashboard_html": str(path), "span": monitored["span"]}

        @task(outlets=[requested] if cfg.monitoring.retrain_on_alarm else [],
              execution_timeout=dt.timedelta(minutes=5))
        def alarm(monitored: dict, *, outlet_events=None) -> dict:
            from pipelines import notify

            if not monitored["alarms"]:
                raise AirflowSkipException(f"span {monitored['span']}: no alarm")
            message = (f"monitor_{name}: ALARM on span {monitored['span']} (production version "
                       f"{monitored['production_version']}): " + "; ".join(monitored["alarms"]))
            notified = notify.notify(message, notify_target())
            extra = {"span": monitored["span"], "reasons": monitored["alarms"],
                     "production_version": monitored["production_version"],
                     "monitoring_uri": monitored["monitoring_uri"]}
            if cfg.monitoring.retrain_on_alarm:
                outlet_events[requested].extra = extra
            return {**extra, "notified": notified,
                    "retrain_requested": cfg.monitoring.retrain_on_alarm}

        monitored = monitor_span()
        dashboard(monitored, shadow_decision(monitored))
        alarm(monitored)

    return monitor()


for _dag_id, _dag in build_all(build_dag).items():
    globals()[_dag_id] = _dag
