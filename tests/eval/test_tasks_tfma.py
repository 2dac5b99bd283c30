"""Real TFMA runs per task type on the real Adult snapshot: evaluate, gates, report in Chromium.

Adult relabelled as in tests/model (tests/model/helpers.task_config: relationship, 6 classes;
hours_per_week, regression; trained with tests/model/tiny_transform.py), plus the session's binary
Adult model. Each config slices on a column that makes some slices hold one class (the label
itself, or a bucket of the regression target that holds only 40), so the "undefined, not zero"
rule is checked on TFMA's own output: TFMA reports AUC 0.0 on a one-class slice; we report None
with the reason, and no gate judges it. The multiclass candidate is evaluated against itself as
production (two models, change gates judged at delta 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import parse_config
from pipelines.context import RunContext
from pipelines.store import read_json
from tests.eval.test_report import dump_dom, needs_chromium
from tests.model.helpers import RELATIONSHIPS, task_config

pytestmark = pytest.mark.slow
CTX = RunContext(run_id="pytest-eval-tasks", triggered_by="test")
EVALUATION = {
    "multiclass": {
        "min_slice_size": 100,
        "slices": [[], ["sex"], ["relationship"], ["age_bucket"]],
        "slice_features": {"age_bucket": {"column": "age", "boundaries": [25, 35, 45, 55, 65]}},
        # a slice of the label holds one class: its accuracy is that class's recall, near 0 for
        # the rarest classes, so the slice floor here is only a sanity bound
        "thresholds": {"overall_accuracy_min": 0.5, "slice_accuracy_min": 0.0,
                       "overall_macro_auc_min": 0.6, "accuracy_max_drop": 0.01},
        "fairness": {"feature": "sex", "metric": "macro_recall", "max_gap": 1.0},
    },
    "regression": {
        "min_slice_size": 100,
        "slices": [[], ["sex"], ["hours_bucket"]],
        "slice_features": {"hours_bucket": {"column": "hours_per_week", "boundaries": [40, 41]}},
        "thresholds": {"overall_rmse_max": 20.0, "slice_rmse_max": 30.0, "overall_r2_min": 0.0,
                       "rmse_max_increase": 0.5},
        "fairness": {"feature": "sex", "metric": "mae", "max_gap": 10.0},
    },
}


def _config(adult_cfg, task: str):
    # Adult's monitoring section has binary live gates: the relabelled configs use the default
    base = adult_cfg.model_copy(update={"monitoring": type(adult_cfg.monitoring)()})
    raw = task_config(base, task).model_dump(mode="json")
    raw["evaluation"] = EVALUATION[task]
    return parse_config(raw, f"<adult_{task} evaluation>")


@pytest.fixture(scope="module")
def evaluated(adult_cfg, pipeline_home, snapshot, tmp_path_factory):
    """evaluate(task) -> (cfg, home, evaluate result, record), each task built and evaluated once."""
    from pipelines import registry
    from pipelines.evaluate import evaluate
    from pipelines.train import train
    from pipelines.transform import transform

    done: dict[str, tuple] = {}

    def _evaluate(task: str):
        if task not in done:
            cfg = _config(adult_cfg, task)
            xf = transform(cfg, pipeline_home, CTX, snapshot_uris=[snapshot["uri"]])
            model = train(cfg, pipeline_home, CTX, transform_uri=xf["transform_uri"])
            home = tmp_path_factory.mktemp(f"eval_{task}")
            if task == "multiclass":
                registry.push(cfg, home, CTX, model["model_uri"], None, {"by": "test"})
            ev = evaluate(cfg, home, CTX, model_uri=model["model_uri"],
                          snapshot_uris=[snapshot["uri"]], golden_uri=None)
            done[task] = (cfg, home, ev, read_json(Path(ev["evaluation_uri"]) / "evaluation.json"))
        return done[task]

    return _evaluate


def _rows(record, spec):
    return [r for r in record["rows"] if r["spec"] == spec]


def test_multiclass_metrics_gates_and_one_class_slices(evaluated):
    cfg, _, ev, record = evaluated("multiclass")
    overall = _rows(record, [])[0]
    cand, base = overall["candidate"], overall["baseline"]
    assert cand["example_count"] > 6000
    # a rare class the small model never predicts has no precision: undefined, with the reason
    for metric, why in overall["undefined"].get("candidate", {}).items():
        assert metric.startswith("precision[") and "no example predicted" in why, (metric, why)
        assert cand[metric] is None
    assert 0.5 < cand["accuracy"] <= 1 and 0.6 < cand["macro_auc"] <= 1
    for c in RELATIONSHIPS:
        assert 0 <= cand[f"recall[{c}]"] <= 1 and 0.5 < cand[f"auc[{c}]"] <= 1
    assert cand["log_loss"] > 0 and 0 < cand["macro_recall"] <= 1
    assert cand == base  # the candidate is production: same rows, same numbers
    matrix = record["curves"]["eval"]["candidate"]["confusion_matrix"]
    assert matrix["classes"] == RELATIONSHIPS
    assert sum(map(sum, matrix["matrix"])) == cand["example_count"]
    # slicing on the label: every slice holds one class; AUC is undefined there, not 0
    for r in _rows(record, ["relationship"]):
        assert r["candidate"]["macro_auc"] is None
        assert "one class only" in r["undefined"]["candidate"]["macro_auc"]
        assert r["candidate"]["accuracy"] is not None
    assert ev["blessed"], ev["reasons"]
    change = [c for c in ev["checks"] if c["threshold"] == "accuracy_max_drop"]
    assert change and change[0]["value"] == 0 and change[0]["passed"] is True
    fair = [c for c in ev["checks"] if c["threshold"] == "fairness_max_gap"]
    assert fair and fair[0]["passed"] is True and "sex=" in fair[0]["slice"]


def test_regression_metrics_and_constant_label_slice(evaluated):
    cfg, _, ev, record = evaluated("regression")
    overall = _rows(record, [])[0]["candidate"]
    assert overall["example_count"] > 6000
    assert 0 < overall["mae"] < overall["rmse"] < 20 and 0 < overall["r2"] < 1
    assert abs(overall["mean_label"] - 40.4) < 2
    assert abs(overall["mean_residual"] - (overall["mean_label"] - overall["mean_prediction"])) \
        < 1e-6
    forty = next(r for r in _rows(record, ["hours_bucket"]) if r["slice"]["hours_bucket"] == "40")
    assert forty["candidate"]["r2"] is None and "constant" in forty["undefined"]["candidate"]["r2"]
    assert forty["candidate"]["rmse"] is not None
    curves = record["curves"]["eval"]["candidate"]
    assert sum(b["count"] for b in curves["calibration"]) == overall["example_count"]
    assert sum(b["count"] for b in curves["residuals"]) == overall["example_count"]
    assert ev["blessed"], ev["reasons"]


def test_binary_one_class_slice_is_undefined_not_zero(adult_cfg, ctx, trained, snapshot,
                                                      tmp_path):
    """Slicing the Adult model's audit on its own label: TFMA's AUC 0.0 must become undefined."""
    from pipelines.evaluate import evaluate

    raw = adult_cfg.model_dump(mode="json")
    raw["evaluation"]["slices"] = [[], ["sex"], ["income"]]
    raw["evaluation"]["min_slice_size"] = 100
    cfg = parse_config(raw)
    ev = evaluate(cfg, tmp_path, ctx, model_uri=trained["model_uri"],
                  snapshot_uris=[snapshot["uri"]], golden_uri=None,
                  threshold_overrides={"slice_auc_min": 0.80})
    record = read_json(Path(ev["evaluation_uri"]) / "evaluation.json")
    for r in _rows(record, ["income"]):
        assert r["candidate"]["auc"] is None and "one class only" in \
            r["undefined"]["candidate"]["auc"]
        assert r["candidate"]["accuracy"] is not None
    checks = [c for c in ev["checks"] if c["slice"].startswith("income=")]
    assert checks and all(c["passed"] is None and "one class only" in c["note"] for c in checks)
    overall = _rows(record, [])[0]["candidate"]
    assert 0.85 < overall["auc"] < 1 and 0 < overall["positive_rate"] < 1
    assert ev["blessed"], ev["reasons"]


@needs_chromium
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_report_of_a_real_evaluation_in_chromium(evaluated, task, tmp_path):
    from pipelines.report import report

    cfg, home, ev, record = evaluated(task)
    promotion = {"promoted": True, "version": 2} if task == "multiclass" else None
    out = report(cfg, home, CTX, ev["evaluation_uri"], promotion=promotion)
    dom = dump_dom(Path(out["report_html"]), tmp_path)
    answer, details = dom.split('id="details"', 1)
    decision = answer.split('id="decision"', 1)[1].split("</h1>", 1)[0]
    assert ("PROMOTED as version 2" if task == "multiclass" else "BLESSED") in decision
    headline = answer.split('id="headline"', 1)[1].split("</table>", 1)[0]
    metric = "accuracy" if task == "multiclass" else "rmse"
    value = _rows(record, [])[0]["candidate"][metric]
    assert metric in headline and f"{value:.4f}" in headline
    assert 'id="worst"' in answer and 'id="fairness"' in answer
    assert 'id="slices"' in details and "undefined" in details
    assert 'id="undefined-notes"' in details
