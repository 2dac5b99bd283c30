"""One real Airflow for every real-scheduler test of the session (``scheduler`` fixture).

Started once per session, on first use: API server, scheduler, DAG processor and triggerer on a
free loopback port, SQLite + LocalExecutor (scripts/airflow-env.sh), with ``PIPELINES_CONFIG_DIR``
on a temporary configs folder that starts with a copy of configs/adult.yaml. A test module gets
its own pipeline with ``scheduler.add_config("adult_approval", overrides={...})`` instead of a
scheduler of its own (an Airflow start costs about a minute of CPU). /work/notes/SCHEDULER.md and
the ``Scheduler`` docstring say how to share it.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import REPO_ROOT, ConfigError, load_config
from tests.e2e.harness import AirflowServices, Api, airflow_env, run, stage

TODAY = dt.datetime.now(dt.UTC).date()
STAGED_END = TODAY - dt.timedelta(days=3)  # the session stages Adult spans END-6 .. END
STAGED_DAYS = 7
DAG_FILES = ("retrain_{}", "monitor_{}")  # the DAGs one config makes (dags/retrain.py, monitor.py)

# Settings of the session's Airflow beyond scripts/airflow-env.sh. A new config is parsed at once
# on request (Scheduler.reparse: the REST API's parseDagFile); the periodic re-parse is only the
# fallback, so it stays cheap (each parse of dags/retrain.py loads every config).
TEST_SETTINGS = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "120",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
}

SQLITE_BUSY_TIMEOUT_S = 60


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Scheduler:
    """The session's Airflow: ``api`` (Api), ``home`` (PIPELINES_HOME), ``env``, ``configs``.

    Shared by every module that uses it, in one pytest process: add your own pipeline with
    ``add_config`` (retrain_adult and monitor_adult belong to tests/e2e/test_scheduler.py), unpause
    only your DAGs, wait for every run you start, and leave nothing running at the end of your
    module (``pause`` your DAGs). Landing data is shared: ``source.uri_pattern`` of an Adult
    variant still reads ``landing/adult``, where Adult spans STAGED_END-6 .. STAGED_END are staged.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.configs = self.root / "configs"
        self.home = self.root / "pipelines"
        self.configs.mkdir(parents=True, exist_ok=True)
        # issue 12: a cron run of a day that is not staged (today's, on unpause) ends at once as
        # "no data" instead of waiting for its span and holding max_active_runs=1 for hours
        base = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
        base["schedule"]["arrival_timeout_minutes"] = 0
        (self.configs / "adult.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        self.env = airflow_env(self.root / "airflow", self.home,
                               PIPELINES_CONFIG_DIR=str(self.configs))
        self.env.update(TEST_SETTINGS)
        # Four services and the tasks share one SQLite file: under load a writer can hold it
        # longer than sqlite3's default 5 s busy timeout, and "database is locked" then kills
        # the scheduler or the triggerer. Wait up to SQLITE_BUSY_TIMEOUT_S for the lock instead.
        self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] += f"?timeout={SQLITE_BUSY_TIMEOUT_S}"
        self.services = AirflowServices(self.env, self.root / "logs", triggerer=True)
        self.api: Api
        self.staged_end, self.staged_days = STAGED_END, STAGED_DAYS
        self._file_tokens: dict[str, str] = {}

    def start(self) -> Scheduler:
        stage(self.env, self.staged_end, self.staged_days)
        run(["airflow", "db", "migrate"], self.env, log=self.root / "db-migrate.log")
        self.services.start()
        self.api = Api(self.services.port)
        for pattern in DAG_FILES:
            dag = self.api.wait_for_dag(pattern.format("adult"))
            self._file_tokens[dag["fileloc"]] = dag["file_token"]
        return self

    def stop(self) -> None:
        self.services.stop()

    def explain(self, lines: int = 15) -> str:
        """The tail of every service's log: add it to the message of a failed run's assertion."""
        return self.services.explain(lines)

    def stage(self, end: dt.date, days: int = 7, config: str = "adult") -> None:
        """Stages more sample spans (overwrites those days in the shared landing folder)."""
        stage(self.env, end, days, config)

    def add_config(self, name: str, base: str = "adult", overrides: dict[str, Any] | None = None,
                   timeout: float = 120) -> str:
        """Writes configs/<name>.yaml (``base`` deep-merged with ``overrides``, ``name`` replaced),
        has the DAG processor parse it now and waits for its DAGs; returns ``retrain_<name>``.

        A config that does not load fails here with pydantic's reasons, before Airflow sees it.
        Its DAGs start paused (``unpause`` what you run).
        """
        source = self.configs / f"{base}.yaml"
        if not source.is_file():
            source = REPO_ROOT / "configs" / f"{base}.yaml"
        raw = deep_merge(yaml.safe_load(source.read_text()), overrides or {})
        raw["name"] = name
        path = self.configs / f"{name}.yaml"
        if path.exists():
            raise AssertionError(f"{path.name} exists already: each module adds its own name")
        staging = self.configs / f".{name}.yaml.tmp"  # not *.yaml: never parsed half-written
        staging.write_text(yaml.safe_dump(raw, sort_keys=False))
        try:
            load_config(staging)
        except ConfigError as exc:
            staging.unlink()
            raise AssertionError(f"config variant {name!r} does not load: {exc}") from exc
        os.replace(staging, path)
        self.reparse()
        dag_ids = [pattern.format(name) for pattern in DAG_FILES]
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            try:
                self.api.wait_for_dag(dag_id, timeout=max(1.0, deadline - time.monotonic()))
            except AssertionError as exc:
                errors = self.api.get("/api/v2/importErrors")["import_errors"]
                raise AssertionError(f"{dag_id} not parsed within {timeout:.0f}s; import errors: "
                                     f"{errors}\n{self.explain()}") from exc
        return dag_ids[0]

    def reparse(self) -> None:
        """Asks the DAG processor to parse the DAG files now (it checks every second)."""
        for token in self._file_tokens.values():
            self.api._call("PUT", f"/api/v2/parseDagFile/{token}")

    def unpause(self, dag_id: str) -> None:
        self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": True})


@pytest.fixture(scope="session")
def scheduler(tmp_path_factory) -> Iterator[Scheduler]:
    """The session's real Airflow (see ``Scheduler``); started on first use, stopped at the end."""
    shared = Scheduler(tmp_path_factory.mktemp("scheduler"))
    procs = shared.services.procs
    try:
        yield shared.start()
    finally:
        started = dict(procs)
        shared.stop()
        for name, proc in started.items():
            assert proc.poll() is not None, f"airflow {name} still running"
