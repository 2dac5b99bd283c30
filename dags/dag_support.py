"""What every DAG file here shares: the run context of a task, failure alerts, one DAG per config.

Imported by dags/retrain.py and dags/monitor.py (from this folder; they put it on ``sys.path``, as
Airflow does with its DAGs folder). Defines no DAG. Parse-light: ``airflow.sdk`` and
``pipelines.config``; the notifier and the OpenLineage macros are imported when a task runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context
from airflow.sdk.exceptions import AirflowFailException

from pipelines.config import REPO_ROOT, ConfigError
from pipelines.context import RunContext

log = logging.getLogger("pipelines.dag")

CONFIG_DIR = Path(os.environ.get("PIPELINES_CONFIG_DIR") or REPO_ROOT / "configs")
NOTIFY_CONN_ENV = "PIPELINES_NOTIFY_CONN_ID"  # Airflow connection id of a webhook or SMTP server
TRIGGERED_BY = {"scheduled": "schedule", "manual": "manual", "backfill": "backfill",
                "asset_triggered": "asset"}
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
    return RunContext(run_id=dag_run.run_id, dag_id=dag_run.dag_id, dag_run_id=dag_run.run_id,
                      try_number=ti.try_number, triggered_by=TRIGGERED_BY.get(run_type, run_type),
                      params=dict(c["params"]), **_openlineage_parents(ti))


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
