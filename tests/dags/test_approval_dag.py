"""DAG structure of the ``approval`` promotion policy: an ``approve`` task only where configured.

Parses dags/ with a real Airflow DagBag in a subprocess over a configs folder holding adult.yaml
and an approval-policy variant of it (the DAG files read PIPELINES_CONFIG_DIR when imported). Fast:
no task runs; the waiting, the REST approval and the rejection run in tests/e2e/test_approval.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from pipelines.config import REPO_ROOT

PARSE = """
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["DAGS"])
out = {"errors": {os.path.basename(k): v for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    tasks = {}
    for t in dag.tasks:
        info = {"downstream": sorted(t.downstream_task_ids), "type": type(t).__name__,
                "trigger_rule": str(t.trigger_rule)}
        if t.task_id == "approve":
            info.update(options=t.options, defaults=t.defaults, multiple=t.multiple,
                        response_timeout=t.response_timeout.total_seconds(),
                        execution_timeout=t.execution_timeout.total_seconds(),
                        params=sorted(t.serialized_params), fail_on_reject=t.fail_on_reject,
                        ignore_downstream_trigger_rules=t.ignore_downstream_trigger_rules,
                        bases=[c.__name__ for c in type(t).__mro__])
        tasks[t.task_id] = info
    out["dags"][dag_id] = tasks
print("PARSED " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("approval_dag")
    configs = root / "configs"
    configs.mkdir()
    base = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
    (configs / "adult.yaml").write_text(yaml.safe_dump(base))
    variant = {**base, "name": "adult_approval",
               "promotion": {**(base.get("promotion") or {}), "policy": "approval",
                             "approval_timeout_hours": 2.5}}
    (configs / "adult_approval.yaml").write_text(yaml.safe_dump(variant))
    env = {**os.environ, "PIPELINES_CONFIG_DIR": str(configs), "DAGS": str(REPO_ROOT / "dags"),
           "AIRFLOW_HOME": str(root / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([sys.executable, "-c", PARSE], env=env, capture_output=True, text=True,
                          timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("PARSED ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(line[len("PARSED "):])


def test_approval_config_parses_without_error(parsed):
    assert parsed["errors"] == {}
    assert {"retrain_adult", "retrain_adult_approval"} <= set(parsed["dags"])


def test_approve_sits_between_is_blessed_and_promote(parsed):
    tasks = parsed["dags"]["retrain_adult_approval"]
    assert tasks["is_blessed"]["downstream"] == ["approve"]
    # the operator skips its direct downstream on reject: promote only, never the report
    assert tasks["approve"]["downstream"] == ["promote"]
    assert "report" in tasks["promote"]["downstream"]
    assert "approve" not in [t for t, info in tasks.items() if "report" in info["downstream"]]


def test_approve_is_airflows_approval_operator_with_reject_on_timeout(parsed):
    approve = parsed["dags"]["retrain_adult_approval"]["approve"]
    assert "ApprovalOperator" in approve["bases"]
    assert approve["options"] == ["Approve", "Reject"] and approve["multiple"] is False
    assert approve["defaults"] == ["Reject"]  # no answer in time: rejected, never approved
    assert approve["response_timeout"] == 2.5 * 3600  # promotion.approval_timeout_hours
    assert approve["execution_timeout"] == 15 * 60  # rendering the report, not the wait
    assert approve["fail_on_reject"] is False  # a rejection is an outcome, not a failure
    assert approve["ignore_downstream_trigger_rules"] is False
    assert approve["params"] == ["comment"]  # the form has the comment, not the DAG's params


def test_auto_policy_has_no_approve_task(parsed):
    tasks = parsed["dags"]["retrain_adult"]
    assert "approve" not in tasks
    assert tasks["is_blessed"]["downstream"] == ["promote"]
