"""dags/monitor.py parses cheaply, alone, and never re-registers the retrain DAGs."""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.config import REPO_ROOT

PARSE = """
import json, runpy, sys
g = runpy.run_path(sys.argv[1])
dags = {k: v for k, v in g.items() if k.startswith(("monitor_", "retrain_")) and hasattr(v, "dag_id")}
heavy = [m for m in ("tensorflow", "apache_beam", "tensorflow_model_analysis", "great_expectations",
                     "pandas") if m in sys.modules]
d = dags["monitor_adult"]
print(json.dumps({"dags": sorted(dags), "heavy": heavy, "tasks": sorted(d.task_ids),
                  "assets": [d.timetable.asset_condition.name],
                  "alarm_outlets": [o.name for o in d.get_task("alarm").outlets],
                  "decision_outlets": [(type(o).__name__, o.name)
                                       for o in d.get_task("shadow_decision").outlets]}))
"""


def test_parse_is_light_and_builds_one_monitor_dag_per_config():
    out = subprocess.run([sys.executable, "-c", PARSE, str(REPO_ROOT / "dags" / "monitor.py")],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    configs = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
    assert got["dags"] == [f"monitor_{c}" for c in configs]  # no retrain_* built here
    assert got["heavy"] == []
    assert got["tasks"] == ["alarm", "dashboard", "monitor_span", "shadow_decision"]
    assert got["assets"] == ["adult.snapshot"]
    assert got["alarm_outlets"] == ["adult.retrain_requested"]
    # a shadow promoted to production emits adult.production through this alias, and only then
    assert got["decision_outlets"] == [["AssetAlias", "adult.production_changes"]]


RETRAIN = """
import json, runpy, sys
g = runpy.run_path(sys.argv[1])
d = g["build_dag"](__import__("pathlib").Path(sys.argv[2]))
print(json.dumps([(type(o).__name__, o.name) for o in d.get_task("promote").outlets]))
"""


def test_retrain_under_shadow_emits_production_only_through_the_alias(tmp_path):
    """Under policy shadow, promote usually sets the shadow alias: no production event then."""
    import yaml

    raw = yaml.safe_load((REPO_ROOT / "configs" / "adult.yaml").read_text())
    raw["promotion"]["policy"] = "shadow"
    path = tmp_path / "adult.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-c", RETRAIN, str(REPO_ROOT / "dags" / "retrain.py"),
                          str(path)], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["AssetAlias", "adult.production_changes"]]
