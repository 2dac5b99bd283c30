"""The alarm rules and metrics of pipelines/monitor.py on hand-made values (pure, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import monitor
from pipelines.config import parse_config
from tests.eval.conftest import adult_raw, task_config


def cfg_with(**alarms):
    raw = adult_raw()
    raw["monitoring"] = {"alarms": alarms}
    return parse_config(raw)


def record(columns=None, output=None, live=None):
    cols = {"age": {"missing_fraction": 0.0, "drift": None},
            "workclass": {"missing_fraction": 0.0, "drift": None}}
    cols.update(columns or {})
    return {"inputs": {"columns": cols}, "output": output or {"rows": 100}, "live": live}


def drift_entry(value, limit=0.1, numeric=True):
    if numeric:
        return {"metric": "jensen_shannon", "value": value, "threshold": limit,
                "passed": value <= limit, "baseline_mean": 38.6, "current_mean": 57.1}
    return {"metric": "l_infinity", "value": value, "threshold": limit, "passed": value <= limit,
            "category": "Private", "baseline_frequency": 0.7, "current_frequency": 0.4}


def test_clean_record_raises_no_alarm(adult_cfg):
    rec = record(columns={"age": {"missing_fraction": 0.0, "drift": drift_entry(0.02),
                                  "out_of_contract_fraction": 0.0}})
    assert monitor.alarm_reasons(adult_cfg, monitor.checks(adult_cfg, rec)) == []


def test_drifted_feature_alarm_names_the_feature():
    cfg = cfg_with(max_drifted_features=0)
    rec = record(columns={"age": {"missing_fraction": 0.0, "drift": drift_entry(0.31)},
                          "workclass": {"missing_fraction": 0.0,
                                        "drift": drift_entry(0.05, numeric=False)}})
    reasons = monitor.alarm_reasons(cfg, monitor.checks(cfg, rec))
    assert len(reasons) == 1 and "1 feature(s)" in reasons[0] and "(age)" in reasons[0]
    assert "Jensen-Shannon distance 0.310 > limit 0.1" in reasons[0]


def test_drift_tolerance_and_label_drift_do_not_count_as_features():
    cfg = cfg_with(max_drifted_features=1)
    rec = record(columns={"age": {"missing_fraction": 0.0, "drift": drift_entry(0.31)},
                          "income": {"missing_fraction": 0.0,
                                     "drift": drift_entry(0.4, numeric=False)}})
    assert monitor.alarm_reasons(cfg, monitor.checks(cfg, rec)) == []  # one feature <= 1 allowed
    rec["inputs"]["columns"]["workclass"]["drift"] = drift_entry(0.5, numeric=False)
    reasons = monitor.alarm_reasons(cfg, monitor.checks(cfg, rec))
    assert len(reasons) == 1 and "(age, workclass)" in reasons[0] and "income" not in reasons[0]


def test_off_rules_report_but_never_alarm():
    cfg = cfg_with(max_drifted_features=None, missing_fraction_max=None,
                   out_of_contract_fraction_max=None, output_max_change=None, live_thresholds={})
    rec = record(columns={"age": {"missing_fraction": 0.9, "drift": drift_entry(0.9),
                                  "out_of_contract_fraction": 0.5}},
                 output={"rows": 10, "change": 0.4})
    checks = monitor.checks(cfg, rec)
    assert {c["metric"] for c in checks} >= {"missing age", "out of contract age", "output change"}
    assert monitor.alarm_reasons(cfg, checks) == []
    assert all(c["passed"] is None for c in checks if c["group"] != "drift")


def test_missing_contract_and_output_rules():
    cfg = cfg_with(missing_fraction_max=0.1, out_of_contract_fraction_max=0.001,
                   output_max_change=0.05)
    rec = record(columns={"workclass": {"missing_fraction": 0.25, "drift": None,
                                        "out_of_contract_fraction": 0.02,
                                        "out_of_contract_examples": ["Unknown"]}},
                 output={"rows": 10, "change": 0.06, "change_of": "positive rate"})
    reasons = monitor.alarm_reasons(cfg, monitor.checks(cfg, rec))
    assert reasons == ["missing workclass: 0.2500 > 0.1000",
                       "out of contract workclass: 0.0200 > 0.0010 (e.g. ['Unknown'])",
                       "output change: 0.0600 > 0.0500 (positive rate)"]


def test_live_gates_and_drop_vs_evaluation():
    cfg = cfg_with(live_max_drop=0.03)
    live = {"checks": [
        {"threshold": "overall_auc_min", "slice": "overall", "metric": "auc", "value": 0.71,
         "bound": 0.9, "op": ">=", "passed": False, "note": ""},
        {"threshold": "slice_auc_min", "slice": "sex=Male", "metric": "auc", "value": 0.88,
         "bound": 0.84, "op": ">=", "passed": True, "note": ""},
        {"threshold": "slice_auc_min", "slice": "race=Other", "metric": "auc", "value": 0.5,
         "bound": 0.84, "op": ">=", "passed": None, "note": "40 examples < min_slice_size 200"}],
        "headline": 0.71, "reference": 0.91}
    reasons = monitor.alarm_reasons(cfg, monitor.checks(cfg, record(live=live)))
    assert reasons == ["live auc overall: 0.7100 < 0.9000", "live auc drop vs evaluation: 0.2000 > 0.0300"]


def test_live_thresholds_default_to_the_promotion_gates():
    cfg = cfg_with()  # no live_thresholds
    t = monitor.live_thresholds(cfg)
    assert t["overall_auc_min"] == cfg.evaluation.thresholds["overall_auc_min"]
    assert t["fairness_max_gap"] == cfg.evaluation.fairness.max_gap
    assert monitor.live_thresholds(cfg_with(live_thresholds={})) is None
    assert monitor.live_thresholds(cfg_with(live_thresholds={"overall_auc_min": 0.8})) == {
        "overall_auc_min": 0.8}


def test_live_thresholds_must_be_gates_of_the_task():
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="monitoring.alarms.live_thresholds.overall_rmse_max"):
        cfg_with(live_thresholds={"overall_rmse_max": 3.0})


def test_output_metrics_per_task():
    binary = cfg_with()
    out = monitor.output_metrics(binary, np.array([0.1, 0.2, 0.6, 0.9]), None,
                                 {"positive_rate": 0.25})
    assert out["positive_rate"] == 0.5 and out["change"] == 0.25 and sum(out["histogram"]) == 4
    multi = task_config("multiclass")
    probs = np.array([[0.9, 0.1, 0, 0, 0], [0.2, 0.8, 0, 0, 0], [0.7, 0.3, 0, 0, 0]])
    out = monitor.output_metrics(multi, probs, {"White": 0.9, "Black": 0.1}, {})
    assert out["class_mix"]["White"] == pytest.approx(2 / 3)
    assert out["change"] == pytest.approx(abs(2 / 3 - 0.9), abs=1e-5)
    reg = task_config("regression")
    out = monitor.output_metrics(reg, np.array([38.0, 42.0]), None, {"mean_prediction": 41.0})
    assert (out["min"], out["max"], out["change"]) == (38.0, 42.0, 1.0)


def test_missing_fraction_counts_the_marker_and_nulls(adult_cfg):
    frame = pd.DataFrame({c: [] for c in adult_cfg.column_names})
    frame = pd.DataFrame({**{c.name: ["x", "y", "z", "w"] if c.type == "string" else [1, 2, 3, 4]
                             for c in adult_cfg.columns},
                          "workclass": ["Private", "?", "", "Private"]})
    missing = monitor.missing_fraction(adult_cfg, frame)
    assert missing["workclass"] == 0.5 and missing["age"] == 0.0


def test_agreement():
    cfg = cfg_with()
    assert monitor.agreement(cfg, np.array([0.1, 0.6, 0.7]), np.array([0.2, 0.4, 0.9])) == {
        "agreement_rate": pytest.approx(2 / 3, abs=1e-6)}


def test_latest_span_of_a_snapshot_event():
    assert monitor.latest_span({"spans": ["2026-11-19", "2026-11-20"]}) == "2026-11-20"
    assert monitor.latest_span({}) is None and monitor.latest_span(None) is None


@pytest.mark.parametrize("policy", ["shadow"])  # approval: tests/unit/test_approval.py
def test_enforced_policies_load(policy):
    raw = adult_raw()
    raw["promotion"]["policy"] = policy
    assert parse_config(raw).promotion.policy == policy
