"""End to end: `airflow dags test monitor_adult <span>` on three spans of real Adult rows.

Real Airflow 3 (SQLite), real TensorFlow, TFMA, Beam and GX. The production model is the session's
trained model (tests/conftest.py `trained`) pushed into a registry of this test's own home; the spans
are rows of adult.test it never saw (tests/monitor/spans.py): clean, drifted ages, and one slice's
labels flipped. One DAG run per scenario.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from pipelines import registry, serving_config
from pipelines.context import RunContext
from pipelines.hashing import sha256_file
from tests.conftest import END_DATE
from tests.e2e.harness import airflow_env, dag_run_summary, run, stage
from tests.monitor import spans

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "monitor_adult"
CLEAN, DRIFTED, FLIPPED = (END_DATE + dt.timedelta(days=d) for d in (1, 2, 3))
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, adult_cfg, trained):
    root = tmp_path_factory.mktemp("monitor_dag")
    home = root / "pipelines"
    env = airflow_env(root / "airflow", home)
    stage(env, END_DATE)
    registry.push(adult_cfg, home, RunContext(run_id="monitor-e2e-push"), trained["model_uri"],
                  None, {"model_uri": trained["model_uri"]})
    spans.clean(home, CLEAN)
    spans.drifted(home, DRIFTED)
    spans.flipped(home, FLIPPED)
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    out = {"home": home, "env": env, "root": root}
    for day in (CLEAN, DRIFTED, FLIPPED):
        log = root / f"dags-test-{day}.log"
        proc = run(["airflow", "dags", "test", DAG_ID, day.isoformat()], env, check=False,
                   timeout=900, log=log)
        out[day] = {"rc": proc.returncode, "log": log, "summary": dag_run_summary(env, DAG_ID)}
    return out


def _ok(r) -> dict:
    assert r["rc"] == 0, Path(r["log"]).read_text()[-4000:]
    assert r["summary"]["state"] == "success"
    return r["summary"]


def _record(summary) -> dict:
    return json.loads((Path(summary["xcom"]["monitor_span"]["monitoring_uri"])
                       / "monitoring.json").read_text())


def _events(summary) -> dict:
    return {e["asset"]: e["extra"] for e in summary["asset_events"]}


def test_clean_span_raises_no_alarm(runs):
    s = _ok(runs[CLEAN])
    assert s["tasks"] == {"monitor_span": "success", "shadow_decision": "success",
                          "dashboard": "success", "alarm": "skipped"}
    assert s["xcom"]["shadow_decision"]["decision"] is None  # no shadow pending
    assert s["xcom"]["monitor_span"]["alarms"] == []
    assert "adult.retrain_requested" not in _events(s)
    rec = _record(s)
    assert rec["span"] == CLEAN.isoformat() and rec["production"]["version"] == 1
    assert rec["live"]["headline"] >= 0.88  # unseen rows, the model's real performance
    drifts = {n: c["drift"]["value"] for n, c in rec["inputs"]["columns"].items()}
    assert max(drifts.values()) <= 0.1, drifts
    assert rec["production"]["training_snapshots"]  # compared with what the model trained on


def test_drifted_span_alarm_names_the_feature_and_requests_retraining(runs):
    s = _ok(runs[DRIFTED])
    assert s["tasks"]["alarm"] == "success"
    alarms = s["xcom"]["monitor_span"]["alarms"]
    drift = [a for a in alarms if a.startswith("input drift")]
    assert drift and "(age)" in drift[0], alarms
    event = _events(s)["adult.retrain_requested"]
    assert event["span"] == DRIFTED.isoformat() and event["reasons"] == alarms
    assert event["production_version"] == 1
    assert "ALARM on span " + DRIFTED.isoformat() in Path(runs[DRIFTED]["log"]).read_text()


def test_flipped_labels_drop_the_live_auc(runs):
    s = _ok(runs[FLIPPED])
    alarms = s["xcom"]["monitor_span"]["alarms"]
    assert any(a.startswith("live auc overall:") for a in alarms), alarms
    assert any(a.startswith("live auc drop") or "sex=Female" in a for a in alarms), alarms
    assert not any(a.startswith("input drift") for a in alarms)  # the inputs did not move
    clean, flipped = _record(runs[CLEAN]["summary"]), _record(s)
    assert flipped["live"]["headline"] < clean["live"]["headline"] - 0.1
    female = [r for r in flipped["live"]["rows"] if r["slice"] == {"sex": "Female"}]
    assert female and female[0]["candidate"]["auc"] < 0.5
    assert "adult.retrain_requested" in _events(s)


def test_predictions_are_an_artifact_with_lineage(runs):
    s = _ok(runs[CLEAN])
    x = s["xcom"]["monitor_span"]
    preds = pd.read_parquet(x["predictions_uri"])
    assert len(preds) == x["rows"] and "production_v1" in preds.columns
    assert preds["production_v1"].between(0, 1).all()
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{runs['home'] / 'lineage.db'}")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "select a.kind, a.uri, a.sha256 from artifacts a join events e on e.artifact_id = a.id "
            "join executions x on x.id = e.execution_id where x.step = 'monitor' "
            "and e.type = 'output'")).all()
    recorded = {kind: (uri, sha) for kind, uri, sha in rows}
    uri, sha = recorded["Predictions"]
    assert sha == sha256_file(uri) and "MonitoringResult" in recorded


def test_serving_config_follows_the_registry(runs, adult_cfg):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text_ = serving_config.path(adult_cfg, runs["home"]).read_text()
    cfg = text_format.Parse(text_, model_server_config_pb2.ModelServerConfig())
    assert dict(cfg.model_config_list.config[0].version_labels) == {"stable": 1}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing: run "
                    "scripts/install-system-deps.sh")
def test_dashboard_in_chromium(runs, tmp_path):
    s = _ok(runs[FLIPPED])
    page = Path(s["xcom"]["dashboard"]["dashboard_html"])
    assert page == runs["home"] / "reports" / "adult" / "monitoring.html"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
                          "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"ALARM on span {FLIPPED.isoformat()}" in dom
    for day, cls in ((CLEAN, "ok"), (DRIFTED, "alarm"), (FLIPPED, "alarm")):
        assert f"<tr class=\"{cls}\" data-span=\"{day.isoformat()}\">" in dom
    assert dom.count("<td class=\"version\">1</td>") == 3  # the production version at each span
    age = dom.split('data-metric="drift age"')[1].split("</figure>")[0]
    assert age.count('class="alarm"') == 1 and 'class="bound"' in age  # marked on one span
    auc = dom.split('data-metric="live auc overall"')[1].split("</figure>")[0]
    assert auc.count('class="alarm"') == 1 and "polyline" in auc
    assert "record</a>" in dom
