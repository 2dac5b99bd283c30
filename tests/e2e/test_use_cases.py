"""End to end, one use case of each task type: `airflow dags test retrain_<name> <last span>`.

compas (binary, integer label, fairness gate on race), penguins (multiclass, nullable columns) and
seattle_weather (regression) each run their whole DAG once, under real Airflow 3 (SQLite) with the
real steps, on their real sample data staged by `pipelines demo-data configs/<name>.yaml`. The
tests then check what a user checks after a run: every task succeeded, version 1 is in production
in the registry, the audit report leads with the task's headline metrics, and the lineage of
version 1 verifies. Adult, the fourth use case, is covered the same way by test_dags_test.py.

One Airflow home (one `airflow db migrate`) and one artifact store serve the three runs; the first
test of the module is fast (no Airflow) and not marked e2e.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import yaml

from pipelines.config import REPO_ROOT
from tests.conftest import END_DATE
from tests.e2e.harness import airflow_env, dag_run_summary, run, stage

E2E = [pytest.mark.e2e, pytest.mark.slow]
CHAIN = ["wait_for_span", "ingest", "validate", "transform", "train", "evaluate", "is_blessed",
         "promote", "report"]
# The use cases run here, their task type, and the metrics their report's headline must show
# with a number on the golden set (README, "Your own data"). Adult runs in test_dags_test.py.
USE_CASES = {
    "compas": ("binary", ["auc", "auc_pr", "accuracy", "log_loss"]),
    "penguins": ("multiclass", ["accuracy", "macro_auc", "macro_recall", "log_loss"]),
    "seattle_weather": ("regression", ["rmse", "mae", "r2", "mean_residual"]),
}
SHIPPED = ["adult", *USE_CASES]


def test_every_shipped_use_case_runs_end_to_end():
    """The configs are exactly Adult and the use cases above, one of each task type.

    With tests/dags/test_config_isolation.py (the DagBag's retrain_* ids are the configs' names)
    this pins the DAGs Airflow shows to these four, and a config added without an e2e run fails.
    """
    configs = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
    assert configs == sorted(SHIPPED)
    tasks = {name: yaml.safe_load((REPO_ROOT / "configs" / f"{name}.yaml").read_text())
             ["label"]["task"] for name in USE_CASES}
    assert tasks == {name: task for name, (task, _) in USE_CASES.items()}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("use_cases")
    env = airflow_env(root / "airflow", root / "pipelines")
    run(["airflow", "db", "migrate"], env, log=root / "db-migrate.log")
    return {"root": root, "env": env, "home": root / "pipelines"}


@pytest.fixture(scope="module", params=list(USE_CASES))
def dag_run(request, airflow_home):
    """Stages the use case's sample data and runs its whole DAG once with `airflow dags test`."""
    name = request.param
    env, root = airflow_home["env"], airflow_home["root"]
    stage(env, END_DATE, config=name)
    log = root / f"dags-test-{name}.log"
    proc = run(["airflow", "dags", "test", f"retrain_{name}", END_DATE.isoformat()], env,
               check=False, timeout=900, log=log)
    return {"name": name, "env": env, "home": airflow_home["home"], "log": log,
            "rc": proc.returncode, "summary": dag_run_summary(env, f"retrain_{name}")}


@pytest.mark.e2e
@pytest.mark.slow
def test_airflow_lists_the_four_dags(airflow_home):
    """`airflow dags list`, the issue's check, on the checkout's dags/ and configs/.

    ``--local`` parses dags/ here: without it Airflow 3 lists what a DAG processor has already
    serialized into the metadata DB, which is nothing in a fresh home.
    """
    out = run(["airflow", "dags", "list", "--local", "--output", "json"], airflow_home["env"],
              timeout=300)
    # Airflow may print warnings on stdout before the JSON list (one line).
    listed = next(line for line in out.stdout.splitlines() if line.startswith(("[{", "[]")))
    dag_ids = sorted(d["dag_id"] for d in json.loads(listed))
    assert [d for d in dag_ids if d.startswith("retrain_")] == [f"retrain_{n}" for n in SHIPPED]


@pytest.mark.e2e
@pytest.mark.slow
def test_every_task_succeeded(dag_run):
    s = dag_run["summary"]
    assert dag_run["rc"] == 0, Path(dag_run["log"]).read_text(errors="replace")[-4000:]
    assert s["state"] == "success"
    assert s["tasks"] == {t: "success" for t in CHAIN}
    ingested = s["xcom"]["ingest"]
    assert ingested["spans"][-1] == END_DATE.isoformat() and ingested["golden_uri"]
    assert ingested["malformed_rows"] == 0


@pytest.mark.e2e
@pytest.mark.slow
def test_version_1_is_in_production(dag_run):
    name, x = dag_run["name"], dag_run["summary"]["xcom"]
    assert x["evaluate"]["blessed"] is True, x["evaluate"]["reasons"]
    assert x["promote"]["promoted"] is True and x["promote"]["version"] == 1
    out = run(["pipelines", "registry", "list", f"configs/{name}.yaml", "--json"], dag_run["env"])
    versions = json.loads(out.stdout)["versions"]
    assert [(v["version"], v["aliases"]) for v in versions] == [(1, ["production"])]
    assert versions[0]["model_uri"] == x["train"]["model_uri"]  # the model this run trained
    assert (Path(versions[0]["uri"]) / "saved_model.pb").is_file()


def headline_rows(report: str) -> dict[tuple[str, str], str]:
    """(dataset, metric) -> candidate cell of the report's headline table."""
    table = re.search(r"<table id='headline'>(.*?)</table>", report, re.S)
    assert table, "the report has no headline table"
    rows = re.findall(r"<tr><td class='l'>([^<]*)</td><td class='l'>([^<]*)</td><td>(.*?)</td>",
                      table.group(1))
    return {(html.unescape(d), html.unescape(m)): re.sub(r"<[^>]+>", "", c).strip()
            for d, m, c in rows}


def split_interval(cell: str) -> tuple[str, tuple[float, float] | None]:
    """'0.7260 [0.701, 0.757]' -> ('0.7260', (0.701, 0.757)); a cell without an interval -> None."""
    m = re.fullmatch(r"(\S+)(?:\s+\[(-?[\d.]+), (-?[\d.]+)\])?", cell)
    assert m, cell
    return m.group(1), (float(m.group(2)), float(m.group(3))) if m.group(2) else None


@pytest.mark.e2e
@pytest.mark.slow
def test_the_report_leads_with_the_decision_and_the_task_headline(dag_run):
    name, (task, headline) = dag_run["name"], USE_CASES[dag_run["name"]]
    report_path = Path(dag_run["summary"]["xcom"]["report"]["report_html"])
    assert report_path.is_file()
    report = report_path.read_text()
    assert f"pipeline <b>{name}</b> ({task})" in report
    decision = report.index("PROMOTED as version 1")
    rows = headline_rows(report)
    assert decision < report.index("<table id='headline'>")
    for metric in headline:
        value, interval = split_interval(rows[("golden", metric)])
        assert re.fullmatch(r"-?\d+\.\d{4}", value), (metric, value)
        if interval is not None:  # binary metrics carry their 95% bootstrap interval; a
            # percentile interval may sit a little off its point value, never far
            lo, hi = interval
            assert lo <= hi and lo - 0.01 <= float(value) <= hi + 0.01, (metric, value, interval)
    golden = dag_run["summary"]["xcom"]["evaluate"]["metrics"]["golden"]["candidate"]
    assert split_interval(rows[("golden", headline[0])])[0] == f"{golden[headline[0]]:.4f}"


@pytest.mark.e2e
@pytest.mark.slow
def test_lineage_of_version_1_verifies(dag_run):
    out = run(["pipelines", "lineage", "verify", dag_run["name"], "1"], dag_run["env"],
              check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{dag_run['name']} version 1: all artifacts match" in out.stdout
