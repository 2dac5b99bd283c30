"""One broken config breaks one DAG: the others load, the broken one is an import error naming it.

Parses dags/ with a real Airflow DagBag in a subprocess (the DAG files read PIPELINES_CONFIG_DIR
when they are imported).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import yaml

from pipelines.config import REPO_ROOT

PARSE = """
import json, os
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=os.environ["DAGS"])
print(json.dumps({"dags": sorted(bag.dags), "errors": {os.path.basename(k): v
                  for k, v in bag.import_errors.items()}}))
"""


def parse(config_dir, tmp_path) -> dict:
    env = {**os.environ, "PIPELINES_CONFIG_DIR": str(config_dir), "DAGS": str(REPO_ROOT / "dags"),
           "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-c", PARSE], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_broken_config_hides_no_other_dag(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(REPO_ROOT / "configs" / "adult.yaml", configs / "adult.yaml")
    broken = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
    broken["name"] = "broken"
    broken["evaluation"]["slices"].append(["no_such_column"])
    (configs / "broken.yaml").write_text(yaml.safe_dump(broken))

    parsed = parse(configs, tmp_path)

    assert "retrain_adult" in parsed["dags"]
    assert not any("broken" in d for d in parsed["dags"])
    assert set(parsed["errors"]) == {"config_errors.py"}
    message = parsed["errors"]["config_errors.py"]
    assert "broken.yaml" in message and "evaluation.slices" in message
    assert "no_such_column" in message and "adult.yaml" not in message


def test_valid_configs_give_no_import_error(tmp_path):
    parsed = parse(REPO_ROOT / "configs", tmp_path)
    assert parsed["errors"] == {}
    names = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
    assert [d for d in parsed["dags"] if d.startswith("retrain_")] == [f"retrain_{n}" for n in names]
