"""The retrain DAG's data arrival under a real Airflow 3 ``dag.test()`` with stand-in steps.

``wait_for_span`` is the real sensor and Airflow's real FileTrigger (run in line by dag.test, as the
triggerer would run it); the steps after it are tests/dags/fake_steps.py. The span lands while the
run waits: the sensor defers, the trigger sees the file, the run goes on. A span that never lands
(the scheduler ends the deferral at the timeout: "no data") is in
tests/e2e/test_retrain_triggers.py; the lineage outcome in tests/dags/test_arrival.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.config import REPO_ROOT
from tests.e2e.harness import airflow_env, run

pytestmark = pytest.mark.slow

SPAN = "2026-11-20"
SCRIPT = """
import json, logging, pathlib, sys
sys.path[:0] = [{repo!r}, {scripts!r}]
from pipelines import runner
for step in list(runner.STEPS):
    runner.STEPS[step] = "tests.dags.fake_steps:" + step
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow_run_summary import run_summary

LAND = {land!r}

class Land(logging.Handler):  # lands the span's file once the sensor has said it will wait
    def emit(self, record):
        if LAND and "has not landed" in record.getMessage():
            path = pathlib.Path(LAND)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("stand-in: the fake steps read no landing file\\n")
            print("LANDED " + LAND, flush=True)

logging.getLogger("pipelines.dag").addHandler(Land())
dag = DagBag(dag_folder={dags!r}).dags["retrain_adult"]
dr = dag.test(logical_date=pendulum.datetime(2026, 11, 20, tz="UTC"))
print("SUMMARY " + json.dumps(run_summary("retrain_adult", dr.run_id), default=str))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """An Airflow home, and configs/ holding adult.yaml with a 5-minute wait, looking every 5 s."""
    root = tmp_path_factory.mktemp("arrival_dag")
    configs = root / "configs"
    configs.mkdir()
    raw = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
    raw["schedule"].update(arrival_timeout_minutes=5, arrival_poke_seconds=5)
    (configs / "adult.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = airflow_env(root / "airflow", root / "pipelines", PIPELINES_CONFIG_DIR=str(configs))
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    return env


def dag_test(env, land: str = "", **extra_env: str) -> tuple[dict, str]:
    code = SCRIPT.format(repo=str(REPO_ROOT), scripts=str(REPO_ROOT / "scripts"),
                         dags=str(REPO_ROOT / "dags"), land=land)
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "FAKE_MODE": "blessed",
                                                             **extra_env},
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SUMMARY ")), None)
    assert line, out[-4000:]
    return json.loads(line[len("SUMMARY "):]), out


def _runs(env) -> dict:
    from pipelines.lineage.audit import list_runs

    return {r["dag_run_id"]: r for r in list_runs(Path(env["PIPELINES_HOME"]), "adult")["runs"]}


def test_the_run_waits_in_the_trigger_until_the_span_lands(env):
    """The sensor defers, the FileTrigger fires when the file lands, the run goes on."""
    target = f"{env['PIPELINES_HOME']}/landing/adult/{SPAN}/part-00000.csv"
    s, out = dag_test(env, land=target)
    assert f"LANDED {target}" in out
    assert "running trigger in line" in out  # dag.test's stand-in for the triggerer
    assert s["state"] == "success", out[-3000:]
    assert set(s["tasks"].values()) == {"success"}
    assert s["xcom"]["wait_for_span"] == {"span": SPAN, "files": 1, "trigger": None}
    run_ = _runs(env)[s["run_id"]]
    assert run_["steps"][0]["step"] == "arrival" and run_["steps"][0]["status"] == "completed"
