"""What every DAG file here shares: the run context of a task, failure alerts, one DAG per config.

Imported by dags/retrain.py and dags/monitor.py (from this folder; they put it on ``sys.path``, as
Airflow does with its DAGs folder). Defines no DAG. Parse-light: ``airflow.sdk`` and
``pipelines.config``; the notifier and the OpenLineage macros are imported when a task runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from airflow.sdk import Asset, BaseSensorOperator, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferralTimeout

from pipelines.config import REPO_ROOT, ConfigError
from pipelines.context import RunContext

log = logging.getLogger("pipelines.dag")

CONFIG_DIR = Path(os.environ.get("PIPELINES_CONFIG_DIR") or REPO_ROOT / "configs")
NOTIFY_CONN_ENV = "PIPELINES_NOTIFY_CONN_ID"  # Airflow connection id of a webhook or SMTP server
TRIGGERED_BY = {"scheduled": "schedule", "manual": "manual", "backfill": "backfill",
                "asset_triggered": "asset"}
MONITOR_ALARM = "monitor_alarm"  # triggered_by of a run a monitor alarm's Asset event started
RETRAIN_REQUESTED = "retrain_requested"
ALERT_MAX_CHARS = 4000  # a whole list of reasons, not a whole log


def reasons(exc: BaseException | None) -> str:
    """Every line of the error (the reasons of a refusal or rejection), at most ALERT_MAX_CHARS."""
    if exc is None:
        return "unknown error (see the task log above)"
    cause = exc.__cause__ if isinstance(exc, AirflowFailException) and exc.__cause__ else exc
    text = str(exc).strip()
    message = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    if len(message) > ALERT_MAX_CHARS:
        cut = f"… [{len(message)} characters; the rest is in the task log]"
        message = message[:ALERT_MAX_CHARS - len(cut)] + cut
    return message


def notify_target() -> dict[str, Any] | None:
    """The notifier's connection (``PIPELINES_NOTIFY_CONN_ID``), or None: log only."""
    conn_id = os.environ.get(NOTIFY_CONN_ENV)
    if not conn_id:
        return None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        return {"conn_type": conn.conn_type, "host": conn.host, "port": conn.port,
                "login": conn.login, "password": conn.password, "schema": conn.schema,
                "extra": conn.extra_dejson}
    except Exception as exc:  # noqa: BLE001 - the failure itself is still logged
        log.warning("notifier connection %r unusable: %s", conn_id, exc)
        return None


def notify_failure(context) -> None:
    """on_failure_callback: the log says why, and the same full reasons reach the notifier."""
    from pipelines import notify

    ti = context["ti"]
    notify.notify(f"{ti.dag_id}.{ti.task_id} failed (run {ti.run_id}, try {ti.try_number}): "
                  f"{reasons(context.get('exception'))}", notify_target())


def run_context() -> RunContext:
    """The lineage context of the running task, from the Airflow task context."""
    c = get_current_context()
    dag_run, ti = c["dag_run"], c["ti"]
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    triggered_by, trigger = TRIGGERED_BY.get(run_type, run_type), None
    requested = [a for a in (c.get("triggering_asset_events") or {})
                 if a.name.endswith(f".{RETRAIN_REQUESTED}")]
    if requested:
        trigger = alarm_request(c, requested[0].name.removesuffix(f".{RETRAIN_REQUESTED}"))
        triggered_by = MONITOR_ALARM
    return RunContext(run_id=dag_run.run_id, dag_id=dag_run.dag_id, dag_run_id=dag_run.run_id,
                      try_number=ti.try_number, triggered_by=triggered_by,
                      params=dict(c["params"]), trigger=trigger, **_openlineage_parents(ti))


def retrain_requested_asset(name: str) -> Asset:
    """The Asset whose events ask retrain_<name> to run: the monitor's alarm task emits it (extra:
    span, reasons, production_version, monitoring_uri) and retrain_<name> is scheduled on it when
    ``monitoring.retrain_on_alarm`` is set."""
    return Asset(name=f"{name}.{RETRAIN_REQUESTED}",
                 uri=f"x-pipelines://{name}/{RETRAIN_REQUESTED}")


def alarm_request(context, name: str) -> dict[str, Any] | None:
    """The monitor alarms that triggered this run (:func:`pipelines.arrival.alarm_request`)."""
    from pipelines.arrival import alarm_request as from_events

    try:
        events = list((context.get("triggering_asset_events") or {})[
            retrain_requested_asset(name)])
    except KeyError:  # not triggered by this Asset
        return None
    request = from_events(e.extra for e in events)
    if request is not None:
        request["source_runs"] = sorted({f"{e.source_dag_id}/{e.source_run_id}"
                                         for e in events if e.source_run_id})
    return request


def run_span(context, name: str) -> tuple[dt.date, dict[str, Any] | None]:
    """(span, alarm request) of a retrain run: the ``span`` param wins, then the span of the
    triggering monitor alarm, then the run's logical date (a cron run), then its run-after date."""
    from pipelines.dates import parse_date

    request = alarm_request(context, name)
    if span := parse_date(context["params"].get("span"), "param span"):
        return span, request
    if request is not None:
        return dt.date.fromisoformat(request["span"]), request
    dag_run = context["dag_run"]
    return (dag_run.logical_date or dag_run.run_after).date(), request


class WaitForSpan(BaseSensorOperator):
    """First task of a retrain run: waits until the run's span has landed (issue 12).

    Already there (the usual case): returns at once, no deferral. Not yet: defers to the triggerer
    (Airflow's ``FileTrigger`` on the span's glob, as ingest expands it; a trigger of ours could not
    be imported by the triggerer: pipelines/ may not import Airflow and dags/ is not on its path),
    for ``schedule.arrival_timeout_minutes``. When the files land it succeeds. On timeout the run
    ends as "no data": the lineage store records it (step ``arrival``, outcome ``no_data`` in
    ``pipelines lineage runs``), the notifier sends ``NO DATA: no data for span X after N min``,
    and the task is SKIPPED with that message, so every task after it is skipped and the run ends
    green with nothing trained or written. A trigger that fails (not a timeout) fails the task.
    Returns ``{"span", "files", "trigger"}``; ``trigger`` is the monitor alarm request or None.
    """

    def __init__(self, *, config_path: str, pipeline: str, timeout_minutes: int,
                 poke_seconds: int, **kwargs):
        super().__init__(poke_interval=poke_seconds, timeout=timeout_minutes * 60,
                         mode="poke", **kwargs)
        self.config_path, self.pipeline = config_path, pipeline
        self.timeout_minutes, self.poke_seconds = timeout_minutes, poke_seconds

    def _look(self, context) -> tuple[str, str, list[str], dict[str, Any] | None]:
        from pipelines import arrival
        from pipelines.config import load_config
        from pipelines.store import resolve_home, resolve_landing

        span, request = run_span(context, self.pipeline)
        cfg = load_config(self.config_path)
        landing = resolve_landing(resolve_home())
        return (span.isoformat(), arrival.span_glob(cfg, landing, span),
                arrival.span_files(cfg, landing, span), request)

    def poke(self, context) -> bool:
        return bool(self._look(context)[2])

    def execute(self, context) -> dict[str, Any]:
        span, pattern, files, request = self._look(context)
        if request is not None:
            from pipelines.arrival import describe_trigger

            log.info("%s", describe_trigger(request))
        if files:
            return self._landed(context, span, files, request)
        if self.timeout_minutes <= 0:
            self._no_data(context, span, pattern, request)
        from airflow.providers.standard.triggers.file import FileTrigger

        log.info("span %s has not landed (no file matches %s): waiting up to %d min in the "
                 "triggerer, looking every %d s", span, pattern, self.timeout_minutes,
                 self.poke_seconds)
        self.defer(trigger=FileTrigger(filepath=pattern, poke_interval=float(self.poke_seconds)),
                   method_name="execute_complete",
                   timeout=dt.timedelta(minutes=self.timeout_minutes))

    def execute_complete(self, context, event: Any = None) -> dict[str, Any]:
        span, _, files, request = self._look(context)
        if not files:  # the trigger saw a match that is gone, or a folder of files: wait again
            return self.execute(context)
        return self._landed(context, span, files, request)

    def _landed(self, context, span: str, files: list[str], request) -> dict[str, Any]:
        from pipelines.arrival import record_arrival

        log.info("span %s has landed: %d file(s)", span, len(files))
        record_arrival(self.config_path, run_context(), span, files, request)
        return {"span": span, "files": len(files), "trigger": request}

    def resume_execution(self, next_method, next_kwargs, context):
        try:
            return super(BaseSensorOperator, self).resume_execution(next_method, next_kwargs,
                                                                    context)
        except TaskDeferralTimeout:
            span, pattern, files, request = self._look(context)
            if files:  # landed after the trigger's last look
                return self._landed(context, span, files, request)
            self._no_data(context, span, pattern, request)

    def _no_data(self, context, span: str, pattern: str, request) -> NoReturn:
        """The run ends as "no data": lineage records it, the notifier alerts, the task (and so
        every task after it) is skipped."""
        from pipelines import notify
        from pipelines.arrival import record_no_data

        message = record_no_data(self.config_path, run_context(), span, pattern,
                                 self.timeout_minutes, request)
        notify.notify(f"{context['dag_run'].dag_id}: NO DATA: {message}", notify_target())
        raise AirflowSkipException(f"NO DATA: {message}")


def _openlineage_parents(ti) -> dict:
    """The OpenLineage provider's ids of this task run and its DAG run, so our step events and the
    provider's task events share parents (the provider derives them the same way for its own)."""
    try:
        from airflow.providers.openlineage.plugins.macros import (
            lineage_parent_id,
            lineage_root_parent_id,
        )

        return {"openlineage_parent_id": lineage_parent_id(ti),
                "openlineage_root_parent_id": lineage_root_parent_id(ti)}
    except Exception as exc:  # noqa: BLE001 - lineage ids must never fail a task
        log.warning("OpenLineage parent ids unavailable (%s): events carry no parent", exc)
        return {}


def build_all(build_dag: Callable[[Path], Any], config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """One DAG per valid ``*.yaml`` in ``config_dir``.

    A config that does not load is skipped here, so it never hides the DAGs of the others; it shows
    in Airflow as the import error of ``dags/config_errors.py``, which names the file and the field.
    """
    dags = {}
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            built = build_dag(path)
        except ConfigError as exc:
            log.error("skipping %s: %s", path.name, exc)
            continue
        dags[built.dag_id] = built
    return dags
