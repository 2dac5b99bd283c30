"""The real DAG under a real Airflow 3 `dag.test()`, with stand-in steps (tests/dags/fake_steps.py).

Checks what the DAG itself decides: the promotion short-circuit, the hard validation gate (no
retry, nothing downstream), a blessed model refused at promote failing the run with an alert that
carries every reason, the failure notice, params reaching the steps, and the lineage context built
from the Airflow context. The real steps run in tests/e2e.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT
from tests.e2e.harness import airflow_env, run

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
sys.path[:0] = [{repo!r}, {scripts!r}]
from pipelines import runner
for step in list(runner.STEPS):
    runner.STEPS[step] = "tests.dags.fake_steps:" + step
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow_run_summary import run_summary
dag = DagBag(dag_folder={dags!r}).dags["retrain_adult"]
dr = dag.test(logical_date=pendulum.datetime(2026, 11, 20, tz="UTC"), run_conf={conf!r})
print("SUMMARY " + json.dumps(run_summary("retrain_adult", dr.run_id), default=str))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("dag_behaviour")
    env = airflow_env(root / "airflow", root / "pipelines")
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    # the run's span has landed, so wait_for_span passes at once (the fake ingest reads nothing)
    span = Path(env["PIPELINES_HOME"]) / "landing" / "adult" / "2026-11-20"
    span.mkdir(parents=True)
    (span / "part-00000.csv").write_text("stand-in: the fake steps read no landing file\n")
    return env


def dag_test(env, mode: str, conf: dict | None = None, **extra_env: str) -> tuple[dict, str]:
    code = SCRIPT.format(repo=str(REPO_ROOT), scripts=str(REPO_ROOT / "scripts"),
                         dags=str(REPO_ROOT / "dags"), conf=conf or {})
    proc = subprocess.run([sys.executable, "-c", code],
                          env={**env, "FAKE_MODE": mode, **extra_env},
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SUMMARY ")), None)
    assert line, out[-4000:]
    return json.loads(line[len("SUMMARY "):]), out


def test_blessed_model_is_promoted_and_reported(env):
    s, _ = dag_test(env, "blessed", {"window": 3, "threshold_overall_auc_min": 0.88})
    assert s["state"] == "success"
    assert set(s["tasks"].values()) == {"success"}
    ingested = s["xcom"]["ingest"]
    assert ingested["params"] == {"span": "2026-11-20", "window": 3, "force": False,
                                  "threshold_overrides": {"overall_auc_min": 0.88}}
    assert s["xcom"]["report"]["report_html"].endswith("r.html")
    assert s["xcom"]["promote"]["version"] == 7
    events = {e["asset"]: e["extra"] for e in s["asset_events"]}
    assert set(events) == {"adult.snapshot", "adult.model", "adult.production"}
    assert events["adult.snapshot"]["sha256"] == "s" * 64
    assert events["adult.production"]["version"] == 7
    ctx = json.loads((Path(env["PIPELINES_HOME"]) / "ingest-ctx.json").read_text())
    assert ctx["dag_id"] == "retrain_adult" and ctx["dag_run_id"] == s["run_id"]
    assert ctx["try_number"] == 1 and ctx["triggered_by"] == "manual"
    assert ctx["params"]["window"] == 3


def test_not_blessed_skips_promote_but_reports(env):
    s, out = dag_test(env, "not_blessed")
    assert s["state"] == "success"
    assert s["tasks"]["is_blessed"] == "success"
    assert s["tasks"]["promote"] == "skipped"
    assert s["tasks"]["report"] == "success"
    assert "not promoted: overall auc 0.80 < 0.90" in out
    assert "adult.production" not in {e["asset"] for e in s["asset_events"]}


def test_rejected_data_fails_validate_once_and_stops(env):
    s, out = dag_test(env, "rejected")
    assert s["state"] == "failed"
    assert s["tasks"]["validate"] == "failed" and s["tries"]["validate"] == 1
    downstream = ("transform", "train", "evaluate", "is_blessed", "promote", "report")
    assert {t: s["tasks"][t] for t in downstream} == dict.fromkeys(downstream, "upstream_failed")
    notice = out[out.rindex("retrain_adult.validate failed (run"):]
    assert "age out of [17, 90]" in notice and "sex not in set" in notice


@pytest.fixture
def webhook():
    """A real HTTP endpoint on loopback that keeps every notice posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's spelling
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": server.server_port})
    yield received, {"AIRFLOW_CONN_PIPELINES_NOTIFY": conn,
                     "PIPELINES_NOTIFY_CONN_ID": "pipelines_notify"}
    server.shutdown()


def test_blessed_but_refused_fails_the_run_with_every_reason(env, webhook):
    from tests.dags.fake_steps import REFUSAL_REASONS

    received, notify_env = webhook
    s, out = dag_test(env, "refused", **notify_env)
    assert s["state"] == "failed", "a blessed model that did not ship is not a green run"
    assert s["tasks"]["is_blessed"] == "success"
    assert s["tasks"]["promote"] == "skipped"  # no production asset event
    assert s["tasks"]["report"] == "failed" and s["tries"]["report"] == 1
    assert "adult.production" not in {e["asset"] for e in s["asset_events"]}
    # the report tells the true decision, with the reasons
    shown = json.loads((Path(env["PIPELINES_HOME"]) / "report-promotion.json").read_text())
    assert shown["promoted"] is False and shown["reasons"] == REFUSAL_REASONS
    # one alert, carrying every reason (not only the first line)
    [notice] = [n["text"] for n in received]
    assert notice.startswith("retrain_adult.report failed (run ")
    assert "REFUSED at promotion" in notice
    assert all(reason in notice for reason in REFUSAL_REASONS), notice
    assert "report: " in notice


def test_not_blessed_is_a_green_run_without_alert(env, webhook):
    received, notify_env = webhook
    s, _ = dag_test(env, "not_blessed", **notify_env)
    assert s["state"] == "success" and s["tasks"]["report"] == "success"
    shown = json.loads((Path(env["PIPELINES_HOME"]) / "report-promotion.json").read_text())
    assert shown is None  # the report's own decision: NOT PROMOTED: not blessed
    assert received == []


def test_rejection_alert_carries_every_failure(env, webhook):
    received, notify_env = webhook
    s, _ = dag_test(env, "rejected", **notify_env)
    assert s["state"] == "failed"
    [notice] = [n["text"] for n in received]
    assert "age out of [17, 90]" in notice and "sex not in set" in notice
