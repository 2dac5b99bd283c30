"""End to end, in one process: `airflow dags test retrain_adult <last span>` on the real Adult data.

Real Airflow 3 (SQLite), real Beam/TFT/TF/TFMA/GX steps; a temporary AIRFLOW_HOME and
PIPELINES_HOME per test session.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import END_DATE
from tests.e2e.harness import DAG_ID, airflow_env, corrupt_span, production_alias, run, stage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAIN = ["wait_for_span", "ingest", "validate", "transform", "train", "evaluate", "is_blessed",
         "promote", "report"]


def summary(env: dict[str, str]) -> dict:
    out = run([sys.executable, "scripts/airflow_run_summary.py", DAG_ID, "--json"], env,
              check=False)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def dags_test_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dags_test")
    env = airflow_env(root / "airflow", root / "pipelines")
    stage(env, END_DATE)
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    log = root / "dags-test.log"
    proc = run(["airflow", "dags", "test", DAG_ID, END_DATE.isoformat()], env, check=False,
               timeout=900, log=log)
    return {"env": env, "home": root / "pipelines", "log": log, "rc": proc.returncode,
            "summary": summary(env)}


def test_every_task_succeeded(dags_test_run):
    s = dags_test_run["summary"]
    assert dags_test_run["rc"] == 0, Path(dags_test_run["log"]).read_text()[-3000:]
    assert s["state"] == "success"
    assert s["tasks"] == {t: "success" for t in CHAIN}


def test_a_model_was_promoted_and_the_report_exists(dags_test_run):
    x = dags_test_run["summary"]["xcom"]
    assert x["evaluate"]["blessed"] is True
    assert x["promote"]["promoted"] is True and x["promote"]["version"] is not None
    assert Path(x["promote"]["registry_uri"]).exists()
    assert production_alias(dags_test_run["home"]) is not None
    report = Path(x["report"]["report_html"])
    assert report.is_file() and report.stat().st_size > 1000


def test_span_and_window_follow_the_logical_date(dags_test_run):
    ingested = dags_test_run["summary"]["xcom"]["ingest"]
    assert ingested["params"]["span"] == END_DATE.isoformat()
    assert ingested["spans"][-1] == END_DATE.isoformat() and len(ingested["spans"]) == 7
    assert ingested["golden_uri"]


def test_assets_carry_provenance(dags_test_run):
    s = dags_test_run["summary"]
    events = {e["asset"]: e["extra"] for e in s["asset_events"]}
    assert events["adult.snapshot"]["sha256"] == s["xcom"]["ingest"]["sha256"]
    assert events["adult.model"]["model_uri"] == s["xcom"]["train"]["model_uri"]
    assert events["adult.production"]["version"] == s["xcom"]["promote"]["version"]


def test_pipelines_run_exit_codes(dags_test_run):
    """`pipelines run`, the same chain without Airflow: 2 on a bad param, 4 on rejected data."""
    env, home = dags_test_run["env"], dags_test_run["home"]
    bad = run(["pipelines", "run", "configs/adult.yaml", "--span", END_DATE.isoformat(),
               "--threshold", "overall_auc_min=0.2"], env, check=False)
    assert bad.returncode == 2 and "threshold_overall_auc_min" in bad.stderr
    day = END_DATE + dt.timedelta(days=1)
    corrupt_span(home, END_DATE, day)
    rejected = run(["pipelines", "run", "configs/adult.yaml", "--span", day.isoformat(),
                    "--window", "1"], env, check=False)
    assert rejected.returncode == 4, rejected.stderr[-2000:]
    progress = [line.split()[1:3] for line in rejected.stderr.splitlines()
                if line[:8].count(":") == 2 and line[8:10] == "  "]  # "HH:MM:SS  task  state"
    assert ["ingest", "success"] in progress and ["validate", "started"] in progress, progress
    assert ["validate", "success"] not in progress and ["transform", "started"] not in progress
