"""DAG structure and policy: parse hygiene, retries, timeouts, tags, task order, params.

Fast tests: they parse dags/ with a real DagBag (Airflow 3) but run no task.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import pytest

from pipelines.config import REPO_ROOT, load_config

DAGS_DIR = REPO_ROOT / "dags"
CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
CHAIN = ["wait_for_span", "ingest", "validate", "transform", "train", "evaluate", "is_blessed",
         "promote", "report"]
HEAVY = ("tensorflow", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis",
         "great_expectations", "pandas", "sklearn", "tfx_bsl", "pipelines.ingest",
         "pipelines.validate", "pipelines.transform", "pipelines.train", "pipelines.evaluate")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return home


@pytest.fixture(scope="module")
def parsed(airflow_home):
    """(DagBag, parse CPU seconds, number of SQL statements run while parsing).

    CPU seconds of this process, not wall seconds: the suite runs on a loaded machine (two xdist
    workers, Airflow services), and the scheduler's parse loop pays CPU, not wall time."""
    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        start = time.process_time()
        bag = DagBag(dag_folder=str(DAGS_DIR))
        seconds = time.process_time() - start
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    return bag, seconds, statements


@pytest.fixture(scope="module")
def dag(parsed):
    return parsed[0].dags["retrain_adult"]


def test_dagbag_loads_fast_without_errors_or_queries(parsed):
    bag, seconds, statements = parsed
    assert bag.import_errors == {}
    assert seconds < 2.0, f"parsing dags/ took {seconds:.2f}s of CPU"
    assert statements == [], f"parsing ran SQL: {statements[:3]}"


def test_one_dag_per_config(parsed):
    names = {load_config(p).name for p in CONFIGS}
    assert set(parsed[0].dags) == ({f"retrain_{n}" for n in names}
                                   | {f"monitor_{n}" for n in names})


def test_parse_imports_nothing_heavy(airflow_home):
    """In a fresh interpreter, parsing the DAG file imports none of the heavy stack."""
    code = (
        "import runpy, sys, json; runpy.run_path(sys.argv[1]);"
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(DAGS_DIR / "retrain.py")],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []


def test_every_task_has_retries_timeout_owner(parsed):
    for dag in parsed[0].dags.values():
        cfg_owner = {load_config(p).owner for p in CONFIGS}
        for t in dag.tasks:
            assert t.retries >= 1, t.task_id
            assert t.execution_timeout is not None, t.task_id
            assert t.on_failure_callback, t.task_id
            assert t.owner in cfg_owner


def test_backoff_on_ingest_and_transform(dag):
    for task_id in ("ingest", "transform"):
        t = dag.get_task(task_id)
        assert t.retries >= 2 and t.retry_exponential_backoff > 0 and t.max_retry_delay


def test_dag_policy_from_config(parsed):
    for path in CONFIGS:
        cfg = load_config(path)
        dag = parsed[0].dags[f"retrain_{cfg.name}"]
        assert dag.max_active_runs == 1
        assert dag.catchup == cfg.schedule.catchup
        assert dag.start_date.date().isoformat() == cfg.schedule.start_date
        assert set(cfg.tags) <= set(dag.tags) and "retrain" in dag.tags
        assert dag.doc_md.strip() == cfg.description.strip()
        assert dag.dagrun_timeout is not None


def test_task_order(dag):
    assert sorted(t.task_id for t in dag.tasks) == sorted(CHAIN)
    for up, down in zip(CHAIN, CHAIN[1:], strict=False):
        assert down in dag.get_task(up).downstream_task_ids, f"{up} >> {down} missing"
    assert dag.get_task("promote").upstream_task_ids == {"evaluate", "is_blessed"}
    assert dag.get_task("report").trigger_rule == "none_failed_min_one_success"
    assert not dag.get_task("is_blessed").ignore_downstream_trigger_rules


def test_assets(dag):
    outlets = {t: {a.name for a in dag.get_task(t).outlets} for t in CHAIN}
    assert outlets["ingest"] == {"adult.snapshot"}
    assert outlets["train"] == {"adult.model"}
    assert outlets["promote"] == {"adult.production"}
    assert {a.name for a in dag.get_task("evaluate").inlets} == {"adult.model", "adult.snapshot"}


def _validate(dag, conf):
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def test_params_defaults_are_valid(dag):
    resolved = _validate(dag, {})
    assert resolved["span"] is None and resolved["window"] is None and resolved["force"] is False


def test_params_accept_a_manual_trigger(dag):
    resolved = _validate(dag, {"span": "2026-11-20", "window": 3, "force": True,
                               "threshold_overall_auc_min": 0.88})
    assert resolved["window"] == 3 and resolved["threshold_overall_auc_min"] == 0.88


@pytest.mark.parametrize("conf,param", [
    ({"span": "20-11-2026"}, "span"),
    ({"span": "2026-02-30"}, "span"),  # shaped like a date, but no such day
    ({"span": "2026-13-01"}, "span"),
    ({"window": 0}, "window"),
    ({"window": 7.0}, "window"),  # JSON 7.0 is a number, not a count of days
    ({"window": "seven"}, "window"),
    ({"force": "yes"}, "force"),
    ({"threshold_overall_auc_min": 0.5}, "threshold_overall_auc_min"),
    ({"threshold_auc_max_drop": 0.5}, "threshold_auc_max_drop"),
])
def test_invalid_params_name_the_param(dag, conf, param):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"param {param}"):
        _validate(dag, conf)


@pytest.mark.parametrize("conf", [{"window": 7.0}, {"span": "2026-02-30"}])
def test_the_serialized_dag_refuses_bad_params_before_any_task(dag, conf):
    """What the scheduler and the API server hold (the serialized DAG) refuses the trigger's conf
    when the run is created, so no task starts; a good conf still creates the params."""
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    with pytest.raises(ParamValidationError):
        served.params.deep_merge(conf).validate()
    assert served.params.deep_merge({"window": 7, "span": "2028-02-29"}).validate()["window"] == 7
